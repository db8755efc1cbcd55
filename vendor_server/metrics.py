"""Prometheus metrics for operators: traffic, charged queries, batching efficiency, queue depth,
encode latency. Per-key numbers deliberately stay out of labels (unbounded cardinality, and they
would leak customers to whoever scrapes ``/metrics``); they live in the ledger and ``/v1/usage``.

The average dynamic batch size is ``vl2v_vendor_batch_size_sum / vl2v_vendor_batch_size_count``
(Triton's ``nv_inference_count / nv_inference_exec_count``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    """One registry per app, so several apps in one process (tests, benchmarks) don't collide."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "vl2v_vendor_requests", "HTTP requests by route and status", ["route", "method", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "vl2v_vendor_request_seconds", "HTTP request latency", ["route"], buckets=SECONDS_BUCKETS, registry=r
        )
        self.queries_charged = Counter(
            "vl2v_vendor_queries_charged", "paid input items by modality", ["modality"], registry=r
        )
        self.batch_size = Histogram(
            "vl2v_vendor_batch_size", "items per model forward pass", ["modality"], buckets=BATCH_BUCKETS, registry=r
        )
        self.encode_seconds = Histogram(
            "vl2v_vendor_encode_seconds", "model time per batch", ["modality"], buckets=SECONDS_BUCKETS, registry=r
        )
        self.queue_depth = Gauge("vl2v_vendor_queue_depth", "admitted items not yet answered", registry=r)
        self.max_batch_size = Gauge(
            "vl2v_vendor_max_batch_size", "largest forward pass: measured at start-up unless set", registry=r
        )

    def observe_batch(self, modality: str, size: int, seconds: float) -> None:
        self.batch_size.labels(modality).observe(size)
        self.encode_seconds.labels(modality).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
