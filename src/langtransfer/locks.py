"""Cross-process locks on a shared file system, with stale-lock recovery.

Shards of a study (e.g. a SLURM array) share an output directory; a lock file next to an
artefact makes sure only one process builds it. A lock whose owner died (same host, pid
gone) or that is older than ``stale_after`` seconds is broken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from langtransfer.errors import LangTransferError


def _owner_alive(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # cannot tell; rely on the age limit
    try:
        os.kill(int(info["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError):
        return True
    return True


def _try_acquire(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}, f)
    return True


def _is_stale(path: Path, stale_after: float) -> bool:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        # Unreadable: being written right now, or left half-written by a kill.
        with contextlib.suppress(OSError):
            return time.time() - path.stat().st_mtime > 5.0
        return False
    return not _owner_alive(info) or time.time() - float(info.get("time", 0)) > stale_after


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike,
    *,
    stale_after: float = 24 * 3600,
    poll: float = 0.5,
    timeout: float | None = None,
) -> Iterator[None]:
    """Hold ``path`` (a lock file) exclusively for the block; wait while another holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while not _try_acquire(path):
        if _is_stale(path, stale_after):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        if timeout is not None and time.monotonic() - started > timeout:
            raise LangTransferError(f"timed out after {timeout:.0f}s waiting for lock {path}")
        time.sleep(poll)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
