"""The dynamic batcher alone (no model, no web layer): batch limits, waiting, the bounded
queue, failure isolation, order under concurrency, draining at close."""

from __future__ import annotations

import threading
import time

import pytest

from langtransfer.serving.batcher import (
    BatchSettings,
    DynamicBatcher,
    QueueFullError,
    ShuttingDownError,
)


class Recorder:
    """A runner that doubles numbers, records each batch, and can be held."""

    def __init__(self, delay: float = 0.0):
        self.batches: list[list[int]] = []
        self.delay = delay
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, rows):
        self.started.set()
        self.release.wait(10)
        self.batches.append(list(rows))
        time.sleep(self.delay)
        out = []
        for r in rows:
            if r == -1:
                out.append(ValueError("row -1 is bad"))
            elif r == -2 and len(rows) > 1:
                raise RuntimeError("a batch holding -2 crashes")  # alone it works
            else:
                out.append(2 * r)
        return out


def test_rows_are_gathered_up_to_the_batch_size():
    run = Recorder()
    with DynamicBatcher(run, BatchSettings(max_batch_size=4, max_wait_ms=300)) as b:
        futures = b.submit(list(range(10)))
        assert [f.result(5) for f in futures] == [2 * i for i in range(10)]
    assert [len(x) for x in run.batches] == [4, 4, 2]
    assert sum(run.batches, []) == list(range(10))  # first in, first out


def test_separate_submissions_share_a_batch_and_the_wait_is_bounded():
    run = Recorder()
    with DynamicBatcher(run, BatchSettings(max_batch_size=8, max_wait_ms=200)) as b:
        start = time.monotonic()
        futures = [b.submit([i])[0] for i in range(3)]
        assert [f.result(5) for f in futures] == [0, 2, 4]
        waited = time.monotonic() - start
    assert run.batches == [[0, 1, 2]]  # three requests, one model call
    assert 0.15 < waited < 2.0  # the oldest row waited about max_wait, not forever


def test_no_wait_when_the_batch_is_full():
    run = Recorder()
    with DynamicBatcher(run, BatchSettings(max_batch_size=2, max_wait_ms=5000)) as b:
        start = time.monotonic()
        assert b.run([1, 2], timeout=5) == [2, 4]
        assert time.monotonic() - start < 2.0


def test_a_full_queue_refuses_at_once_with_retry_after_and_recovers():
    run = Recorder()
    run.release.clear()
    with DynamicBatcher(run, BatchSettings(max_batch_size=1, max_wait_ms=0, max_queue=3)) as b:
        first = b.submit([1])
        assert run.started.wait(5)  # row 1 is in the model, the queue is empty again
        queued = b.submit([2, 3, 4])
        assert b.queue_depth == 3
        with pytest.raises(QueueFullError) as e:
            b.submit([5])
        assert e.value.retry_after >= 1
        with pytest.raises(ValueError, match="can never fit"):
            b.submit([0] * 4)
        run.release.set()
        assert [f.result(5) for f in first + queued] == [2, 4, 6, 8]
        assert b.run([5], timeout=5) == [10]  # room again


def test_a_failing_row_does_not_fail_its_batch_mates():
    run = Recorder()
    with DynamicBatcher(run, BatchSettings(max_batch_size=8, max_wait_ms=100)) as b:
        futures = b.submit([1, -1, 3, -2, 5])
        with pytest.raises(ValueError, match="row -1 is bad"):
            futures[1].result(5)
        assert [futures[i].result(5) for i in (0, 2, 3, 4)] == [2, 6, -4, 10]
    # the batch call crashed (because of -2), so every row was run alone
    assert run.batches[0] == [1, -1, 3, -2, 5]
    assert run.batches[1:] == [[1], [-1], [3], [-2], [5]]


def test_a_runner_returning_the_wrong_count_fails_those_rows_only():
    def short(rows):
        return [] if 7 in rows else [r for r in rows]

    with DynamicBatcher(short, BatchSettings(max_batch_size=1)) as b:
        bad, good = b.submit([7, 8])
        with pytest.raises(RuntimeError, match="0 results for 1"):
            bad.result(5)
        assert good.result(5) == 8


def test_concurrent_submitters_each_get_their_own_results():
    run = Recorder(delay=0.002)
    results: dict[int, list[int]] = {}

    def client(k: int) -> None:
        rows = [k * 1000 + i for i in range(25)]
        results[k] = [f.result(10) for f in b.submit(rows[:5])] + b.run(rows[5:], timeout=10)

    with DynamicBatcher(run, BatchSettings(max_batch_size=16, max_wait_ms=2)) as b:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert all(results[k] == [2 * (k * 1000 + i) for i in range(25)] for k in range(8))
    assert max(len(x) for x in run.batches) > 1  # concurrency did produce shared batches
    assert sum(len(x) for x in run.batches) == 8 * 25  # each row ran once


def test_close_drains_the_queue_then_refuses():
    run = Recorder(delay=0.05)
    b = DynamicBatcher(run, BatchSettings(max_batch_size=2, max_wait_ms=1000)).start()
    futures = b.submit(list(range(7)))
    b.close(timeout=10)
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [2 * i for i in range(7)]
    with pytest.raises(ShuttingDownError):
        b.submit([1])


def test_closing_a_batcher_never_started_fails_its_rows():
    b = DynamicBatcher(Recorder())
    future = b.submit([1])[0]
    b.close()
    with pytest.raises(ShuttingDownError):
        future.result(1)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"max_batch_size": 0}, "max_batch_size"), ({"max_wait_ms": -1}, "max_wait_ms"),
     ({"max_wait_ms": float("nan")}, "max_wait_ms"), ({"max_queue": 0}, "max_queue")],
)
def test_settings_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchSettings(**kwargs)
