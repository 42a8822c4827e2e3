"""Prometheus metrics of one gateway app, in a registry of its own (no global state).

With ``serve --workers N`` each worker counts in files of a directory the workers share
(prometheus-client's multiprocess mode), so a scrape answered by any worker reports the sum of
all of them: per-process counters behind one port would jump between workers on every scrape.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The counters and histograms SPEC.md lists under Operations."""

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
            "Completions, by route and outcome.",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_latency_seconds",
            "Time from sending a request upstream to its response headers.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def signature_issued(self, route: str) -> None:
        self.signatures.labels(route, "issued", "").inc()

    def signature_refused(self, route: str, reason: str) -> None:
        self.signatures.labels(route, "refused", reason).inc()

    def render(self) -> bytes:
        """The text exposition: this app's registry, or every worker's files summed."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, path=self.shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

    def trace_config(self) -> aiohttp.TraceConfig:
        """Measures upstream latency from aiohttp's client signals, outside the proxy's code."""
        trace = aiohttp.TraceConfig()

        async def on_start(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestStartParams,
        ) -> None:
            context.started = time.perf_counter()

        async def on_end(
            session: aiohttp.ClientSession,
            context: SimpleNamespace,
            params: aiohttp.TraceRequestEndParams,
        ) -> None:
            self.upstream_latency.observe(time.perf_counter() - context.started)

        trace.on_request_start.append(on_start)
        trace.on_request_end.append(on_end)
        return trace


def share_between_workers(directory: str) -> None:
    """Make this worker process count in files under ``directory`` (call once, before any app).

    prometheus-client chooses where values live per process, and finds the directory in the
    environment variable it reads itself; only ``serve --workers`` calls this, in each worker.
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
