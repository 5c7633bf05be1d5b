"""Cross-process locks on a shared file system: one holder at a time, a heartbeat while
held, stale locks of dead owners broken by one process only.

Shards of a study (e.g. a Slurm array) share an output directory; a lock file next to an
artefact makes sure only one process builds it. The lock file holds its owner (host, pid,
the time it was acquired and a random token) and is created complete in one step: the
content is written to a temporary file that is then hard-linked to the lock name
(``link`` fails if the name exists, on local file systems and NFS alike), so no reader
ever sees an empty lock. Where hard links are not supported the lock is created with
``O_EXCL`` and written after.

While held, a background thread touches the lock file every ``heartbeat`` seconds (its
modification time is the heartbeat), so a build of any length keeps its lock. A lock is
stale when

* its owner is a process of this host that is gone, a zombie, or whose pid was reused by
  a later process (a live owner of this host is never stale, however old its lock);
* its owner is on another host (whose processes cannot be asked) and its heartbeat is
  older than ``stale_after`` seconds (minutes: a dead node's lock does not stall the
  other shards for long; clocks of the hosts must agree to well within that);
* it is unreadable (half-written by a killed process) and older than a few seconds.

Breaking a stale lock and releasing one both happen under a second lock, the *breaker*
(``.<name>.breaker.lock``, a symbolic link holding its owner, made in one step and held
for milliseconds), and the breaker checks
again, under it, that the lock is still the very file judged stale. Since nothing removes
a lock except under the breaker, two processes that judged one lock stale cannot both
remove it, and neither can remove a lock taken meanwhile: however many wait, at most one
holds the lock. (A breaker left by a process killed in those milliseconds is itself
broken by the same rules; only that break could, in theory, race.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISLNK

from langtransfer.errors import LangTransferError
from langtransfer.io import clean_leftovers, owner_token, write_error

__all__ = ["STALE_AFTER", "FileLock", "LockState", "break_stale", "file_lock", "read_lock"]

logger = logging.getLogger(__name__)

#: Another host's lock whose heartbeat is older than this (seconds) is taken for dead.
STALE_AFTER = 10 * 60.0
#: An unreadable (empty or half-written) lock counts as stale after this many seconds.
UNREADABLE_GRACE = 5.0
#: Another host's breaker is taken for dead after this many seconds (it is held for ms).
BREAKER_GRACE = 60.0


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
    """Whether the owner, a process of this host, still runs (True where it cannot tell)."""
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


def _new_info(token: str) -> dict:
    """This process as a lock's owner, stamped now (called at each attempt to acquire)."""
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "time": time.time(),
        "token": token,
    }
    process = _process_start(os.getpid())
    if process is not None:
        info["started"] = process[1]
    return info


@dataclass(frozen=True)
class LockState:
    """A lock file as read: its content (None if unreadable) and its stat."""

    info: dict | None
    stat: os.stat_result

    def same_as(self, other: LockState) -> bool:
        """The same file in the same state: inode, token and heartbeat (an inode number
        is reused at once by some file systems, a token never)."""
        return (
            (self.stat.st_ino, self.stat.st_dev) == (other.stat.st_ino, other.stat.st_dev)
            and (self.info or {}).get("token") == (other.info or {}).get("token")
            and self.stat.st_mtime == other.stat.st_mtime
        )

    def stale(self, stale_after: float, now: float | None = None) -> bool:
        age = (time.time() if now is None else now) - self.stat.st_mtime  # since the heartbeat
        if self.info is None:  # being written right now (O_EXCL fallback), or half-written
            return age > UNREADABLE_GRACE
        if self.info.get("host") == socket.gethostname():
            return not _owner_alive(self.info)
        return age > stale_after

    def owner(self) -> str:
        if self.info is None:
            return ""
        return f" (held by pid {self.info.get('pid')} on {self.info.get('host')})"


def read_lock(path: str | os.PathLike) -> LockState | None:
    """The lock at ``path`` as it is now (a file, or a breaker's symbolic link whose
    target is its content); None if there is none."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    try:
        link = S_ISLNK(st.st_mode)
        info = json.loads(os.readlink(os.fspath(path)) if link
                          else Path(path).read_text(encoding="utf-8"))
        return LockState(info if isinstance(info, dict) else None, st)
    except (OSError, ValueError):
        return LockState(None, st)


def _tmp_name(path: Path) -> Path:
    # `.<name>.<host>-<pid>.<random>.tmp`: io.clean_leftovers(path) removes a dead one's
    return path.with_name(f".{path.name}.{owner_token()}.{secrets.token_hex(4)}.tmp")


def _create(path: Path, info: dict) -> int | None:
    """Create the lock file complete, exclusively; its open descriptor (for the heartbeat),
    or None if the name exists."""
    payload = json.dumps(info).encode("utf-8")
    tmp = _tmp_name(path)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
        try:
            os.link(tmp, path)
            return fd
        except FileExistsError:
            # NFS: a retransmitted link whose first reply was lost fails although it
            # succeeded; the temporary's second link tells (the open(2) manual's recipe).
            if os.fstat(fd).st_nlink == 2:
                return fd
            os.close(fd)
            return None
        except OSError:  # no hard links here: create exclusively, then write
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    os.write(fd, payload)
    return fd


def _remove_if(path: Path, seen: LockState) -> bool:
    """Remove ``path`` if it is still the file ``seen``: rename it to a name of our own,
    check, and put it back if it was another. Only a stale breaker (a lock held for
    milliseconds) is removed this way, unguarded."""
    aside = _tmp_name(path)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False  # someone else removed it
    try:
        moved = read_lock(aside)
        if moved is None or not moved.same_as(seen):
            with contextlib.suppress(OSError):
                os.link(aside, path)  # another file took its place in between: put it back
            return False
        return True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(aside)


def _breaker_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.breaker{path.suffix or '.lock'}")


def _claim(breaker: Path, info: dict) -> bool:
    """Create the breaker, exclusively: a symbolic link whose target is its content, made
    in one step (no temporary file a kill could leave behind, no moment it is empty);
    where symbolic links are not supported, a lock file."""
    try:
        os.symlink(json.dumps(info, separators=(",", ":")), breaker)
        return True
    except FileExistsError:
        return False
    except OSError:
        pass
    fd = _create(breaker, info)
    if fd is None:
        return False
    os.close(fd)
    return True


@contextlib.contextmanager
def _breaker(path: Path, poll: float = 0.005) -> Iterator[None]:
    """Hold the breaker of lock ``path``: whoever removes ``path`` (breaking or releasing)
    does it under this, so the lock cannot change but by being created while it is held."""
    breaker = _breaker_path(path)
    token = secrets.token_hex(8)
    while True:
        if _claim(breaker, _new_info(token)):
            break
        current = read_lock(breaker)
        if current is not None and current.stale(BREAKER_GRACE):
            _remove_if(breaker, current)
            continue
        time.sleep(poll)
    try:
        yield
    finally:
        current = read_lock(breaker)
        if current is not None and current.info and current.info.get("token") == token:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(breaker)


def break_stale(path: str | os.PathLike, seen: LockState) -> bool:
    """Remove the lock at ``path`` if it is still ``seen`` (same file, same token) and still
    stale by the same judgement; True if this call removed it."""
    path = Path(path)
    with _breaker(path):
        now = read_lock(path)
        if now is None or not now.same_as(seen):  # taken by another, or a heartbeat since
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # under the breaker nobody else removes it: it is `seen`
            return True
    return False


class FileLock:
    """A lock file with a heartbeat: :meth:`acquire` (waiting or not) and :meth:`release`.

    ``stale_after``: seconds without a heartbeat after which another host's lock is taken
    for dead; ``heartbeat``: seconds between two touches of a held lock (a tenth of
    ``stale_after`` by default)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        stale_after: float = STALE_AFTER,
        heartbeat: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.stale_after = stale_after
        self.heartbeat = heartbeat if heartbeat is not None else stale_after / 10
        if not 0 < self.heartbeat < stale_after:
            raise LangTransferError(
                f"lock heartbeat {self.heartbeat}s must be above 0 and below stale_after "
                f"{stale_after}s")
        self.token = secrets.token_hex(8)
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: LockState | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def holder(self) -> dict | None:
        """pid and host of the owner met by the last attempt that found the lock held."""
        info = self._seen.info if self._seen is not None else None
        return {"pid": info.get("pid"), "host": info.get("host")} if info else None

    def _attempt(self) -> bool:
        """One attempt: take the lock if free, break it if stale; False if held by another."""
        while True:
            try:
                fd = _create(self.path, _new_info(self.token))  # stamped when acquired
            except OSError as e:
                raise write_error(self.path, e, "create lock") from e
            if fd is not None:
                self._fd = fd
                return True
            current = read_lock(self.path)
            if current is None:
                continue  # released in between: try again at once
            self._seen = current
            if not current.stale(self.stale_after):
                return False
            break_stale(self.path, current)  # by us or by another: try again either way

    def acquire(self, blocking: bool = True, timeout: float | None = None,
                poll: float = 0.5) -> bool:
        """Take the lock; with ``blocking``, wait for it (at most ``timeout`` seconds, then
        raise naming the owner). Returns whether it is held."""
        if self.held:
            raise LangTransferError(f"lock {self.path} is already held by this FileLock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            clean_leftovers(self.path)
        except OSError as e:
            raise write_error(self.path, e, "create lock") from e
        started = time.monotonic()
        while not self._attempt():
            if not blocking:
                return False
            if timeout is not None and time.monotonic() - started > timeout:
                owner = self._seen.owner() if self._seen is not None else ""
                raise LangTransferError(
                    f"timed out after {timeout:.0f}s waiting for lock {self.path}{owner}")
            time.sleep(poll)
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, args=(self._fd,), daemon=True,
                                        name=f"heartbeat {self.path.name}")
        self._thread.start()
        return True

    def _beat(self, fd: int | None) -> None:
        """Touch the lock every ``heartbeat`` seconds until released: through its open
        descriptor (the file this process created, wherever it is now) where possible."""
        target: int | Path = fd if fd is not None and os.utime in os.supports_fd else self.path
        while not self._stop.wait(self.heartbeat):
            with contextlib.suppress(OSError):  # a hiccup of the file system: next beat
                os.utime(target)

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still ours."""
        if self._fd is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        fd, self._fd, self._thread = self._fd, None, None
        try:
            with _breaker(self.path):
                current = read_lock(self.path)
                if current is not None and (current.info or {}).get("token") == self.token:
                    os.unlink(self.path)
                else:
                    logger.warning(
                        "lock %s was taken from this process while it held it (judged dead "
                        "after %.0fs without a heartbeat); another process may have built the "
                        "same artefact", self.path, self.stale_after)
        except OSError as e:
            raise write_error(self.path, e, "remove lock") from e
        finally:
            os.close(fd)

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike,
    *,
    stale_after: float = STALE_AFTER,
    heartbeat: float | None = None,
    poll: float = 0.5,
    timeout: float | None = None,
) -> Iterator[FileLock]:
    """Hold ``path`` (a lock file) exclusively for the block; wait while another holds it."""
    lock = FileLock(path, stale_after=stale_after, heartbeat=heartbeat)
    lock.acquire(timeout=timeout, poll=poll)
    try:
        yield lock
    finally:
        lock.release()
