"""Lock files shared by shards on several hosts (issue 20): never two holders, a heartbeat
that keeps a long build's lock alive, a dead host's lock broken within minutes.

Each waiter is a forked process that calls itself another host (``socket.gethostname``
patched in the child), so the locks it meets are judged by their heartbeat, as on a
cluster: a pid of another host cannot be checked.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from langtransfer.errors import LangTransferError
from langtransfer.study import locks
from langtransfer.study.locks import FileLock, file_lock

#: Seconds without a heartbeat after which another host's lock is stale, in these tests.
STALE = 0.8


def _as_host(name: str) -> None:
    socket.gethostname = lambda: name  # type: ignore[assignment]


def _fork(target) -> int:
    pid = os.fork()
    if pid == 0:  # never returns into pytest
        code = 0
        try:
            target()
        except BaseException:  # noqa: BLE001 - reported through the exit code
            import traceback

            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def _exit_code(pid: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"child {pid} still running after {timeout}s")


class Counter:
    """How many processes are inside the lock now, and the most ever seen (a file guarded
    by ``flock``, which is exact on the local file system the test runs on)."""

    def __init__(self, path: Path) -> None:
        self.path, self.guard = path, path.with_suffix(".guard")
        path.write_text(json.dumps({"inside": 0, "peak": 0, "entries": 0}))

    def _update(self, delta: int) -> None:
        with open(self.guard, "w") as g:
            fcntl.flock(g, fcntl.LOCK_EX)
            state = json.loads(self.path.read_text())
            state["inside"] += delta
            state["peak"] = max(state["peak"], state["inside"])
            state["entries"] += delta > 0
            self.path.write_text(json.dumps(state))

    def enter(self) -> None:
        self._update(1)

    def leave(self) -> None:
        self._update(-1)

    def read(self) -> dict:
        return json.loads(self.path.read_text())


def _foreign_lock(path: Path, age: float = 0.0) -> None:
    """A lock held by a process of a host that cannot be asked, last renewed ``age`` ago."""
    path.write_text(json.dumps({"pid": 1, "host": "node-dead", "time": time.time() - age,
                                "token": "dead"}))
    os.utime(path, (time.time() - age,) * 2)


def test_waiters_on_several_hosts_never_hold_a_stale_lock_together(tmp_path):
    """Today's double entry: three waiters on other hosts find a lock whose host died.
    The first to break it must hold a lock that looks fresh (stamped at acquisition, not
    when it began waiting) and stays fresh while it holds it for longer than the stale
    limit (heartbeat), so the others wait instead of breaking it in turn."""
    lock, counter = tmp_path / ".artefact.lock", Counter(tmp_path / "counter.json")
    _foreign_lock(lock)

    def waiter(i: int) -> None:
        _as_host(f"node-{i}")
        with file_lock(lock, stale_after=STALE, poll=0.02):
            counter.enter()
            time.sleep(1.5 * STALE)  # longer than the stale limit: kept by the heartbeat
            counter.leave()

    pids = [_fork(lambda i=i: waiter(i)) for i in range(3)]
    assert [_exit_code(pid) for pid in pids] == [0, 0, 0]
    state = counter.read()
    assert state["entries"] == 3 and state["peak"] == 1, state
    assert not lock.exists()


def test_a_long_hold_is_never_broken_while_its_owner_lives_and_a_dead_hosts_lock_is(tmp_path):
    lock = tmp_path / ".artefact.lock"
    held = tmp_path / "held"

    def holder() -> None:
        _as_host("node-a")
        with file_lock(lock, stale_after=STALE):
            held.touch()
            time.sleep(60)

    pid = _fork(holder)
    try:
        deadline = time.monotonic() + 30
        while not held.exists():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # Three stale limits long, the owner alive on its host: the lock is waited for.
        with pytest.raises(LangTransferError, match=r"waiting for lock .*held by pid \d+ on "
                           r"node-a"), file_lock(lock, stale_after=STALE, timeout=3 * STALE,
                                                 poll=0.02):
            pass
        info = json.loads(lock.read_text())
        assert info["host"] == "node-a" and time.time() - lock.stat().st_mtime < STALE
    finally:
        os.kill(pid, signal.SIGKILL)  # the node dies: its heartbeat stops
        os.waitpid(pid, 0)
    killed = time.monotonic()
    _as_host_here = socket.gethostname  # this process stays on its own host
    assert _as_host_here() != "node-a"
    with file_lock(lock, stale_after=STALE, poll=0.02):
        waited = time.monotonic() - killed
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert waited < STALE + 1.0, waited  # minutes on a cluster, not a day
    assert not lock.exists()


def test_a_lock_is_stamped_when_acquired_not_when_waiting_began(tmp_path):
    lock = tmp_path / ".x.lock"
    _foreign_lock(lock)
    with file_lock(lock, stale_after=0.5, poll=0.02):
        info = json.loads(lock.read_text())
        assert time.time() - info["time"] < 0.3
        assert time.time() - lock.stat().st_mtime < 0.3


def test_try_acquire_does_not_wait_and_breaks_stale_locks(tmp_path):
    lock = FileLock(tmp_path / ".x.lock", stale_after=STALE)
    _foreign_lock(lock.path)  # fresh: held
    started = time.monotonic()
    assert not lock.acquire(blocking=False)
    assert time.monotonic() - started < 0.5
    assert lock.holder() == {"pid": 1, "host": "node-dead"}
    _foreign_lock(lock.path, age=2 * STALE)  # no heartbeat for two stale limits: broken
    assert lock.acquire(blocking=False)
    try:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        other = FileLock(lock.path, stale_after=STALE)
        assert not other.acquire(blocking=False)  # a live owner of this host
    finally:
        lock.release()
    assert not lock.path.exists()


def test_breaking_is_done_by_one_process_only(tmp_path, monkeypatch):
    """Two processes judge the same lock stale; the second must not remove the lock the
    first took in the meantime (the breaker file serialises breaking, and the lock is
    checked again under it)."""
    lock = tmp_path / ".x.lock"
    _foreign_lock(lock, age=10)
    first = FileLock(lock, stale_after=STALE)
    judged = locks.read_lock(lock)  # what the second process saw before the first acted
    assert first.acquire(blocking=False)
    try:
        assert locks.break_stale(lock, judged) is False  # it is first's lock now
        assert json.loads(lock.read_text())["token"] == first.token
    finally:
        first.release()


def test_a_breaker_left_by_a_killed_process_is_broken_and_leaves_nothing(tmp_path):
    """The breaker is one symbolic link holding its owner (no temporary file to leave):
    one left by a dead process of this host is broken at once; one of another host after
    its grace; afterwards nothing but the directory's own files remains."""
    lock = tmp_path / ".x.lock"
    breaker = tmp_path / ".x.breaker.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    os.symlink(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                           "token": "dead"}), breaker)
    assert locks.read_lock(breaker).info["token"] == "dead"
    started = time.monotonic()
    with file_lock(lock, poll=0.01):
        pass  # releasing needs the breaker
    assert time.monotonic() - started < 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # Another host's breaker, older than its grace (it is held for milliseconds).
    os.symlink(json.dumps({"pid": 1, "host": "node-dead", "token": "far"}), breaker)
    old = time.time() - locks.BREAKER_GRACE - 1
    os.utime(breaker, (old, old), follow_symlinks=False)
    with file_lock(lock, poll=0.01):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == []
