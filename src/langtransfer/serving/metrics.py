"""The server's Prometheus metrics (prometheus-client), in a registry of their own.

A registry per app (not the process-global one) so several apps in one process -- tests,
or a host embedding one -- count separately. Names:

- ``langtransfer_http_requests_total{route, status}``: answered HTTP requests;
- ``langtransfer_http_request_seconds{route}``: time to answer (histogram);
- ``langtransfer_inputs_total{task, language}``: inputs predicted;
- ``langtransfer_rejected_total{reason}``: requests refused with 503
  (``queue_full``, ``shutting_down``, ``body_memory``: the bodies being read hold
  ``--max-body-total``);
- ``langtransfer_batch_size``: rows per model call (histogram);
- ``langtransfer_batch_seconds``: time per model call (histogram);
- ``langtransfer_queue_depth``: rows waiting for the model now (gauge);
- ``langtransfer_body_bytes``: bytes of the request bodies being read now (gauge).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    """The counters, histograms and gauge above; :meth:`render` is the ``/metrics`` body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, queue_depth: Callable[[], float],
                 body_bytes: Callable[[], float] | None = None):
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "langtransfer_http_requests", "HTTP requests answered", ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "langtransfer_http_request_seconds", "Seconds to answer an HTTP request", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.inputs = Counter(
            "langtransfer_inputs", "Inputs predicted", ["task", "language"], registry=r
        )
        self.rejected = Counter(
            "langtransfer_rejected", "Requests refused with 503", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "langtransfer_batch_size", "Rows per model call", buckets=_BATCH_BUCKETS, registry=r
        )
        self.batch_seconds = Histogram(
            "langtransfer_batch_seconds", "Seconds per model call", buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "langtransfer_queue_depth", "Rows waiting for the model", registry=r
        )
        self.queue_depth.set_function(queue_depth)
        self.body_bytes = Gauge(
            "langtransfer_body_bytes", "Bytes of the request bodies being read", registry=r
        )
        self.body_bytes.set_function(body_bytes or (lambda: 0))

    def observe_batch(self, size: int, seconds: float) -> None:
        """The batcher's ``on_batch`` hook."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
