"""Cross-process locks on a shared file system, with stale-lock recovery.

Shards of a study (e.g. a SLURM array) share an output directory; a lock file next to an
artefact makes sure only one process builds it. The lock file holds its owner (host, pid,
time and a random token) and is created complete in one step: the content is written to a
temporary file that is then hard-linked to the lock name (``link`` fails if the name
exists, on local file systems and NFS alike), so no reader ever sees an empty lock. Where
hard links are not supported the lock is created with ``O_EXCL`` and written after.

A lock whose owner died (same host, and the pid gone, a zombie, or reused by a process that
started later) or that is older than ``stale_after`` seconds is broken. Breaking renames
the lock file away and checks that what was renamed is the very file judged stale; if
another process replaced it in between, it is put back, so two processes breaking the
same stale lock cannot both end up holding it. A holder releases only its own lock (the
token must match).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from langtransfer.errors import LangTransferError
from langtransfer.io import clean_leftovers, owner_token, write_error

#: An unreadable (empty or half-written) lock counts as stale after this many seconds.
UNREADABLE_GRACE = 5.0


def _process_start(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) from ``/proc``; None where unreadable.

    The start time tells the lock's owner from a later process given the same pid (pids
    wrap around, at 32768 by default), and the state tells a killed child not yet reaped
    (a zombie answers ``kill(pid, 0)``) from a live one."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        fields = stat[stat.rindex(")") + 2 :].split()  # the name in (...) may hold spaces
        return fields[0], int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(info: dict) -> bool:
    if info.get("host") != socket.gethostname():
        return True  # cannot tell; rely on the age limit
    try:
        pid = int(info["pid"])
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError, OverflowError):
        return True
    process = _process_start(pid)
    if process is None:
        return True  # no /proc (macOS): the pid answers, so take it as the owner
    state, started = process
    return state != "Z" and info.get("started", started) == started


def _new_info() -> dict:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "time": time.time(),
        "token": secrets.token_hex(8),
    }
    process = _process_start(os.getpid())
    if process is not None:
        info["started"] = process[1]
    return info


def _try_acquire(path: Path, info: dict) -> bool:
    payload = json.dumps(info)
    tmp = path.with_name(f".{path.name}.{owner_token()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here: create exclusively, then write
            pass
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(payload)
    return True


def _read(path: Path) -> tuple[dict | None, os.stat_result | None]:
    """The lock's content (None if unreadable) and its stat (None if it is gone)."""
    try:
        st = path.stat()
    except OSError:
        return None, None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return (info if isinstance(info, dict) else None), st
    except (OSError, ValueError):
        return None, st


def _is_stale(info: dict | None, st: os.stat_result, stale_after: float) -> bool:
    if info is None:  # being written right now (O_EXCL fallback), or left half-written
        return time.time() - st.st_mtime > UNREADABLE_GRACE
    try:
        created = float(info.get("time", 0))
    except (TypeError, ValueError):
        created = 0.0
    return not _owner_alive(info) or time.time() - created > stale_after


def _break(path: Path, st: os.stat_result) -> None:
    """Remove the lock file judged stale (identified by inode), and only that one."""
    aside = path.with_name(f".{path.name}.{owner_token()}.{secrets.token_hex(4)}.tmp")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # someone else broke it
    try:
        moved = aside.stat()
        if (moved.st_ino, moved.st_dev) != (st.st_ino, st.st_dev):
            # Another process replaced the stale lock with its own in between: put it back.
            with contextlib.suppress(OSError):
                os.link(aside, path)
    finally:
        with contextlib.suppress(OSError):
            aside.unlink()


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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
    except OSError as e:
        raise write_error(path, e, "create lock") from e
    info = _new_info()
    started = time.monotonic()
    while True:
        try:
            if _try_acquire(path, info):
                break
        except OSError as e:
            raise write_error(path, e, "create lock") from e
        current, st = _read(path)
        if st is None:
            continue  # released in between: try again at once
        if _is_stale(current, st, stale_after):
            _break(path, st)
            continue
        if timeout is not None and time.monotonic() - started > timeout:
            owner = (
                f" (held by pid {current.get('pid')} on {current.get('host')})" if current else ""
            )
            raise LangTransferError(
                f"timed out after {timeout:.0f}s waiting for lock {path}{owner}"
            )
        time.sleep(poll)
    try:
        yield
    finally:
        current, _ = _read(path)
        if current is not None and current.get("token") == info["token"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
