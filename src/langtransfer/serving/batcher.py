"""Dynamic batching: rows of concurrent requests gathered into one model call.

Requests arrive one by one from many clients; the model is fastest on a batch. A
:class:`DynamicBatcher` queues rows (any objects) and one worker thread -- the only
thread that calls the model -- takes up to ``max_batch_size`` of them at a time, waiting
at most ``max_wait_ms`` after the oldest queued row for more to arrive. Rows of
different languages and tasks share a batch: the runner (``Predictor.predict_requests``)
handles mixed rows.

It knows nothing of HTTP or asyncio: each row gets a :class:`concurrent.futures.Future`,
which a thread waits on directly and an event loop through :func:`asyncio.wrap_future`.
So the same batcher serves the FastAPI app, a Ray Serve deployment or a script.

- The queue is bounded (``max_queue`` rows): a submission that does not fit raises
  :class:`QueueFullError` at once (the web layer answers 503 with ``Retry-After``), so
  overload sheds load instead of growing latency without bound.
- A row that fails does not fail its batch mates: the runner returns an exception in
  that row's place; if the runner raises for the whole batch, each row is run alone so
  only the failing ones get the error.
- :meth:`DynamicBatcher.close` stops accepting rows, runs every row already queued
  (drain), then stops the worker.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: ``run_batch(rows) -> one result or exception per row``, in order.
Runner = Callable[[list[T]], Sequence[R | BaseException]]


class RejectedError(Exception):
    """A submission the batcher did not take; ``retry_after``: seconds worth waiting."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class QueueFullError(RejectedError):
    """The queue has no room for the submission's rows."""


class ShuttingDownError(RejectedError):
    """The batcher is closing: it finishes queued rows but takes no new ones."""


@dataclass(frozen=True)
class BatchSettings:
    """``max_batch_size`` rows per model call; ``max_wait_ms`` the longest the oldest
    queued row waits for batch mates; ``max_queue`` rows waiting at most."""

    max_batch_size: int = 32
    max_wait_ms: float = 10.0
    max_queue: int = 1024

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not math.isfinite(self.max_wait_ms) or self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, got {self.max_queue}")


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: Future[R]
    enqueued: float


class DynamicBatcher(Generic[T, R]):
    """Queue rows; one worker thread runs them through ``run_batch`` in dynamic batches.

    ``on_batch(size, seconds)`` is called after each model call (metrics).
    Use as a context manager, or :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        run_batch: Runner,
        settings: BatchSettings | None = None,
        *,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "langtransfer-batcher",
    ):
        self.settings = settings or BatchSettings()
        self._run_batch = run_batch
        self._on_batch = on_batch
        self._name = name
        self._queue: deque[_Pending[T, R]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._batch_seconds = 0.0  # moving average, for Retry-After

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> DynamicBatcher[T, R]:
        with self._cond:
            if self._closing:
                raise RuntimeError("a closed batcher cannot be started again")
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Take no new rows, run the queued ones, stop the worker (waits up to ``timeout``)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        else:  # never started: nothing will run the queued rows
            self._fail_queued(ShuttingDownError("the batcher was closed before it started", 1))

    def __enter__(self) -> DynamicBatcher[T, R]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def queue_depth(self) -> int:
        """Rows waiting for the model (not counting the batch running now)."""
        return len(self._queue)

    # -- submitting ------------------------------------------------------------------------

    def submit(self, items: Sequence[T]) -> list[Future[R]]:
        """Queue ``items`` (all or none); one future per item, in order."""
        s = self.settings
        if len(items) > s.max_queue:
            raise ValueError(f"{len(items)} rows can never fit a queue of {s.max_queue}")
        with self._cond:
            if self._closing:
                raise ShuttingDownError("the server is shutting down", self._retry_after())
            if len(self._queue) + len(items) > s.max_queue:
                raise QueueFullError(
                    f"the queue is full ({len(self._queue)} of {s.max_queue} rows waiting)",
                    self._retry_after(),
                )
            now = time.monotonic()
            pending = [_Pending[T, R](item, Future(), now) for item in items]
            self._queue.extend(pending)
            self._cond.notify_all()
        return [p.future for p in pending]

    def run(self, items: Sequence[T], timeout: float | None = None) -> list[R]:
        """Submit and wait: the results in order (a row's exception is raised)."""
        return [f.result(timeout) for f in self.submit(items)]

    def _retry_after(self) -> int:
        """Seconds until the rows now queued have probably run (at least 1)."""
        batches = len(self._queue) / self.settings.max_batch_size + 1
        return max(1, math.ceil(batches * self._batch_seconds))

    # -- the worker ------------------------------------------------------------------------

    def _next_batch(self) -> list[_Pending[T, R]] | None:
        """Block until a batch is due; None when closed and drained."""
        s = self.settings
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].enqueued + s.max_wait_ms / 1000
            while len(self._queue) < s.max_batch_size and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            n = min(s.max_batch_size, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            live = [p for p in batch if p.future.set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _run(self, batch: list[_Pending[T, R]]) -> None:
        start = time.monotonic()
        results = self._call([p.item for p in batch])
        if results is None:  # the whole call failed: find the rows that fail alone
            results = [self._alone(p.item) for p in batch]
        seconds = time.monotonic() - start
        self._batch_seconds = seconds if not self._batch_seconds else (
            0.8 * self._batch_seconds + 0.2 * seconds
        )
        for p, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
        if self._on_batch is not None:
            self._on_batch(len(batch), seconds)

    def _call(self, items: list[T]) -> list[R | BaseException] | None:
        try:
            results = list(self._run_batch(items))
        except Exception as e:
            return [e] if len(items) == 1 else None
        if len(results) != len(items):
            error = RuntimeError(f"the runner returned {len(results)} results for {len(items)}")
            return [error] * len(items)
        return results

    def _alone(self, item: T) -> R | BaseException:
        results = self._call([item])
        assert results is not None  # one row: never None
        return results[0]

    def _fail_queued(self, error: BaseException) -> None:
        with self._cond:
            pending, self._queue = list(self._queue), deque()
        for p in pending:
            if p.future.set_running_or_notify_cancel():
                p.future.set_exception(error)
