"""Prometheus metrics of one gateway app, in a registry of its own (no global state).

With ``serve --workers N`` each worker counts in files of a directory the workers share
(prometheus-client's multiprocess mode), so a scrape answered by any worker reports the sum of
all of them: per-process counters behind one port would jump between workers on every scrape.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST

_MAX_CHILDREN = 4096


class Metrics:
    """The counters and histograms docs/ops.md lists."""

    def __init__(self, *, shared_dir: str | None = None) -> None:
        """``shared_dir``: the workers' metrics directory, after ``share_between_workers``."""
        self.shared_dir = shared_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "gateway_requests",
            "Requests answered, by route (or 'proxy') and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.signatures = Counter(
            "gateway_signatures",
            "Signing requests, by route, outcome (issued or refused) and reason.",
            ["route", "outcome", "reason"],
            registry=self.registry,
        )
        self.completions = Counter(
            "gateway_completions",
            "Completions, by route, outcome and trigger (client or sweep).",
            ["route", "outcome", "trigger"],
            registry=self.registry,
        )
        # Set by the sweep after each pass: uploads older than completion.sweep_after that no
        # client completed, per route ("unknown": no owner record names one).
        self.pending = Gauge(
            "gateway_completions_pending",
            "Uploads awaiting the sweep (no client completed them in time), by route.",
            ["route"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.oldest_pending = Gauge(
            "gateway_completions_oldest_pending_seconds",
            "Age of the oldest upload awaiting the sweep, by route.",
            ["route"],
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.dead_letters = Gauge(
            "gateway_completions_dead_letters",
            "Uploads whose delivery the sweep gave up on (completions status lists them).",
            registry=self.registry,
            multiprocess_mode="max",
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds",
            "Time from sending a request upstream to its response headers.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

        # Labelled children looked up once: ``labels()`` validates and hashes its arguments
        # under a lock on every call. Routes come from the config and statuses from HTTP, so
        # these stay small; the cap only guards against an unforeseen label source.
        self._request_counts: dict[tuple[str, int], Counter] = {}
        self._signature_counts: dict[tuple[str, str, str], Counter] = {}

    def count_request(self, route: str, status: int) -> None:
        """One answered request of ``route`` (or "proxy") with ``status``."""
        child = self._request_counts.get((route, status))
        if child is None:
            child = self.requests.labels(route, str(status))
            if len(self._request_counts) < _MAX_CHILDREN:
                self._request_counts[route, status] = child
        child.inc()

    def observe_upstream(self, seconds: float) -> None:
        """One upstream round trip: request sent to response headers received."""
        self.upstream_latency.observe(seconds)

    def signature_issued(self, route: str) -> None:
        self._signature(route, "issued", "").inc()

    def signature_refused(self, route: str, reason: str) -> None:
        self._signature(route, "refused", reason).inc()

    def _signature(self, route: str, outcome: str, reason: str) -> Counter:
        key = (route, outcome, reason)
        child = self._signature_counts.get(key)
        if child is None:
            child = self.signatures.labels(route, outcome, reason)
            if len(self._signature_counts) < _MAX_CHILDREN:
                self._signature_counts[key] = child
        return child

    def render(self) -> bytes:
        """The text exposition: this app's registry, or every worker's files summed."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


def share_between_workers(directory: str) -> None:
    """Make this worker process count in files under ``directory`` (call once, before any app).

    prometheus-client chooses where values live per process, and finds the directory in the
    environment variable it reads itself; only ``serve --workers`` calls this, in each worker.
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
