"""Crash-safe file writing.

Every file the tool writes goes to a temporary name in the same directory, is flushed to
disk and renamed into place (``os.replace`` is atomic on POSIX), so a kill at any instant
leaves either the old file or the new one, never a truncated one. Directories are built
beside their final name and swapped in:

* where the kernel and file system support it (Linux ``renameat2(RENAME_EXCHANGE)``:
  ext4, xfs, btrfs, tmpfs, overlayfs...), old and new directory trade places in one
  atomic step, so the final name never goes missing;
* elsewhere (NFS, other systems) the old directory is first renamed to
  ``.<name>.<owner>.old`` and the new one renamed in. A kill between the two renames
  leaves no ``<name>``; :func:`recover` (called by every reader of representation
  directories and before every directory write) renames the old one back.

Temporary names start with ``.`` and carry their owner (a hash of the host name and the
process id): readers skip them, and the leftovers of a killed process are removed the
next time the same name is written (:func:`clean_leftovers`). Errors writing (no space,
read-only file system, no permission) raise :class:`LangTransferError` naming the file;
the previous content is unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from langtransfer.errors import LangTransferError

_HINTS = {
    errno.ENOSPC: "the file system is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file is larger than the system allows",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "no permission to write there",
    errno.EPERM: "no permission to write there",
}


def write_error(path: str | os.PathLike, e: OSError, what: str = "write") -> LangTransferError:
    """A :class:`LangTransferError` for a failed write: the file, the reason, what is kept."""
    reason = e.strerror or str(e)
    hint = _HINTS.get(e.errno or -1)
    hint = f" ({hint}; files written before are unchanged)" if hint else ""
    return LangTransferError(f"cannot {what} {path}: {reason}{hint}")


def os_error_from(e: Exception) -> OSError:
    """An ``OSError`` for a library's wrapped I/O error (safetensors reports ``code: 28``)."""
    if isinstance(e, OSError):
        return e
    code = re.search(r"code: (\d+)", str(e))
    if code:
        return OSError(int(code.group(1)), os.strerror(int(code.group(1))))
    return OSError(str(e))


def _host_hash() -> str:
    return f"{zlib.crc32(socket.gethostname().encode()):08x}"


def owner_token() -> str:
    """``<host hash>-<pid>``: which process a temporary name belongs to (fresh after fork)."""
    return f"{_host_hash()}-{os.getpid()}"


# `.<name>.<host>-<pid>.<random>.tmp` (a file or directory being written) or
# `.<name>.<host>-<pid>.old` (the previous directory, during a non-atomic swap).
_LEFTOVER = re.compile(r"^(?P<host>[0-9a-f]{8})-(?P<pid>\d+)\.(?:(?P<tmp>\w+\.tmp)|(?P<old>old))$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _leftovers(path: Path) -> Iterator[tuple[Path, re.Match]]:
    prefix = f".{path.name}."
    try:
        entries = os.listdir(path.parent)
    except OSError:
        return
    for entry in entries:
        if entry.startswith(prefix):
            match = _LEFTOVER.match(entry[len(prefix) :])
            if match:
                yield path.parent / entry, match


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def clean_leftovers(path: str | os.PathLike) -> int:
    """Remove temporary files/directories of ``path`` left by dead processes of this host.

    Those of live processes and of other hosts (whose processes cannot be checked) stay.
    Returns how many were removed.
    """
    path = Path(path)
    host = _host_hash()
    removed = 0
    for leftover, match in list(_leftovers(path)):
        if match["old"] and not os.path.lexists(path):
            continue  # the only copy: recover() puts it back
        if match["host"] == host and not _pid_alive(int(match["pid"])):
            _remove(leftover)
            removed += 1
    return removed


def recover(path: str | os.PathLike, *, wait: float = 2.0, foreign_age: float = 60.0) -> bool:
    """Put back the previous directory of ``path`` if a kill interrupted a non-atomic swap.

    A swap in progress in a live process of this host is waited for (up to ``wait``
    seconds); one of another host is taken as dead once ``foreign_age`` seconds old.
    Returns whether something was restored.
    """
    path = Path(path)
    deadline = time.monotonic() + wait
    host = _host_hash()
    while not os.path.lexists(path):
        olds = sorted(
            ((p, m) for p, m in _leftovers(path) if m["old"]),
            key=lambda pm: _mtime(pm[0]),
            reverse=True,
        )
        if not olds:
            return False
        candidate, match = olds[0]
        if match["host"] == host:
            owner_dead = not _pid_alive(int(match["pid"])) or int(match["pid"]) == os.getpid()
        else:
            owner_dead = time.time() - _mtime(candidate) > foreign_age
        if owner_dead:
            try:
                os.rename(candidate, path)
            except OSError:  # another reader restored it first, or it vanished
                continue
            _fsync_dir(path.parent)
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return False


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush every file under ``path`` (and the directories) to disk."""
    for root, _dirs, files in os.walk(os.fspath(path)):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))


# --- atomic exchange of two directories (Linux renameat2) -------------------------------

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_UNSUPPORTED = {errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV}
_renameat2: Any
try:
    _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    _renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    _renameat2.restype = ctypes.c_int
except (OSError, AttributeError):  # not Linux, or a libc without it
    _renameat2 = None


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap two existing paths in one atomic step; False where that is not supported."""
    if _renameat2 is None:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in _UNSUPPORTED:
        return False
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(new: str | os.PathLike, path: str | os.PathLike) -> None:
    """Move the complete directory ``new`` to ``path``, replacing what is there.

    Atomic where :func:`exchange` works; otherwise through ``.<name>.<owner>.old`` (see
    :func:`recover`). Raises ``OSError``.
    """
    new, path = Path(new), Path(path)
    if os.path.lexists(path):
        if exchange(new, path):
            _fsync_dir(path.parent)
            _remove(new)  # now the previous content
            return
        old = path.with_name(f".{path.name}.{owner_token()}.old")
        _remove(old)
        os.replace(path, old)
        try:
            os.replace(new, path)
        except OSError:
            with contextlib.suppress(OSError):
                os.rename(old, path)  # put the previous content back
            raise
        _fsync_dir(path.parent)
        _remove(old)
        return
    os.replace(new, path)
    _fsync_dir(path.parent)


# --- writers ------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success flush it and rename it onto ``path``, else remove it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{owner_token()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as e:
        raise write_error(path, e) from e
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise write_error(path, e) from e
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Build a directory under a temporary name and swap it in when the block succeeds.

    An existing directory at ``path`` is kept until the new one is complete; with
    ``overwrite=False`` an existing directory is an error.
    """
    path = Path(path)
    recover(path)
    if path.exists() and not overwrite:
        from langtransfer.errors import OutputExistsError

        raise OutputExistsError(f"{path} already exists; pass overwrite to replace it")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(path)
        tmp = Path(
            tempfile.mkdtemp(
                prefix=f".{path.name}.{owner_token()}.", suffix=".tmp", dir=path.parent
            )
        )
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result should look like mkdir's
    except OSError as e:
        raise write_error(path, e) from e
    try:
        yield tmp
        fsync_tree(tmp)
        replace_dir(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(path, e) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
