"""Data identified by content: what a settings hash holds for a data or corpus value.

A study directory must be resumable from any node and any installation, and an edited
data file must make what read it stale. So a hash holds neither where the package is
installed nor where the user's data lies:

* a name (``fixtures``, ``wikipedia``) stays the name; no value (the hub) stays None;
* a file shipped in the package is named by its path inside the package
  (``langtransfer:data/demo/nli``), the same in every installation;
* any other existing file is ``sha256:<digest of its bytes>``, a directory the digest of
  its files' relative names and digests (hidden files left out): a copy elsewhere has the
  same identity, an edit gives another;
* a path that does not exist stays as written (the data check reports it; nothing is
  built from it).

Digests are cached by the file's identity and stat (inode, size, modification and change
times): in memory, and on disk in ``$LANGTRANSFER_CACHE_DIR`` (default
``$XDG_CACHE_HOME/langtransfer``, i.e. ``~/.cache/langtransfer``), so planning a study
reads a large corpus once per change, not once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langtransfer.io import write_json

#: Data values that are names, not paths.
NAMES = frozenset({"fixtures", "fixture", "wikipedia", "hub"})
PACKAGE = Path(__file__).resolve().parents[1]
PACKAGE_PREFIX = "langtransfer:"
CACHE_FILE = "fingerprints.json"
#: Entries the disk cache keeps (the newest; one per file version, ~150 bytes each).
CACHE_ENTRIES = 20_000
_CHUNK = 1 << 20

_memory: dict[str, str] = {}
_disk: dict[str, str] | None = None
_new: dict[str, str] = {}  # digests computed since the disk cache was last written


def cache_dir() -> Path:
    explicit = os.environ.get("LANGTRANSFER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "langtransfer"


def _stat_key(path: Path, st: os.stat_result) -> str:
    return f"{path}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


def _load_disk() -> dict[str, str]:
    global _disk
    if _disk is None:
        try:
            loaded = json.loads((cache_dir() / CACHE_FILE).read_text(encoding="utf-8"))
            _disk = {k: v for k, v in loaded.items() if isinstance(v, str)} if isinstance(
                loaded, dict) else {}
        except (OSError, ValueError):
            _disk = {}
    return _disk


def _flush() -> None:
    """Write the digests computed since the last flush to the disk cache (best effort: a
    cache that cannot be written is no cache, not an error)."""
    global _disk
    if not _new:
        return
    _disk = None  # another process may have added entries meanwhile
    merged = {**_load_disk(), **_new}
    _disk = dict(list(merged.items())[-CACHE_ENTRIES:])
    _new.clear()
    with contextlib.suppress(Exception):
        write_json(cache_dir() / CACHE_FILE, _disk)


def file_digest(path: Path) -> str:
    """sha256 of the file's bytes, cached by its identity and stat."""
    path = path.resolve()
    key = _stat_key(path, path.stat())
    digest = _memory.get(key) or _load_disk().get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        digest = _new[key] = h.hexdigest()
    _memory[key] = digest
    return digest


def tree_digest(directory: Path) -> str:
    """sha256 over the directory's files (relative name and digest), hidden ones left out."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root, name)
            if path.is_file():
                rel = path.relative_to(directory).as_posix()
                h.update(f"{rel}\0{file_digest(path)}\n".encode())
    return h.hexdigest()


_remembered: dict[tuple[str, str], Any] | None = None


@contextlib.contextmanager
def remembered() -> Iterator[None]:
    """Within the block, each value's identity is worked out once: a plan asks for the
    same data directory thousands of times (a walk and a stat per file each time)."""
    global _remembered
    outer = _remembered
    _remembered = {} if outer is None else outer
    try:
        yield
    finally:
        _remembered = outer


def data_identity(value: Any) -> Any:
    """What a settings hash holds for a data or corpus value: see the module docstring."""
    if not isinstance(value, (str, os.PathLike)) or str(value) in NAMES:
        return value
    if _remembered is None:
        return _identity(value)
    key = (os.getcwd(), str(value))
    if key not in _remembered:
        _remembered[key] = _identity(value)
    return _remembered[key]


def _identity(value: str | os.PathLike) -> str:
    path = Path(value)
    try:
        resolved = path.resolve()
        if resolved.is_relative_to(PACKAGE):
            return PACKAGE_PREFIX + resolved.relative_to(PACKAGE).as_posix()
        if resolved.is_file():
            return f"sha256:{file_digest(resolved)}"
        if resolved.is_dir():
            return f"sha256:{tree_digest(resolved)}"
    except OSError:
        pass  # unreadable: as written, and the data check or the build says why
    finally:
        _flush()
    return str(value)
