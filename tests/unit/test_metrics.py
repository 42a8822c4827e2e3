"""Metrics (gateway/metrics.py): counts through the cached children, upstream latency."""

from __future__ import annotations

import re

from gateway.metrics import Metrics


def _value(text: str, sample: str) -> float:
    """The value of one exposition sample line (``name{labels}``), 0 when absent."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_request_counts_add_up_per_route_and_status() -> None:
    """Cached labelled children count each (route, status) apart and never lose an increment."""
    metrics = Metrics()
    for _ in range(3):
        metrics.count_request("proxy", 200)
    metrics.count_request("proxy", 404)
    metrics.count_request("photos", 200)
    text = metrics.render().decode()
    assert _value(text, 'gateway_requests_total{route="proxy",status="200"}') == 3
    assert _value(text, 'gateway_requests_total{route="proxy",status="404"}') == 1
    assert _value(text, 'gateway_requests_total{route="photos",status="200"}') == 1


def test_signature_counts_by_outcome_and_reason() -> None:
    """Issued and refused signatures are counted apart, refusals by reason."""
    metrics = Metrics()
    metrics.signature_issued("photos")
    metrics.signature_issued("photos")
    metrics.signature_refused("photos", "key-outside-prefix")
    text = metrics.render().decode()
    issued = 'gateway_signatures_total{outcome="issued",reason="",route="photos"}'
    refused = (
        'gateway_signatures_total{outcome="refused",reason="key-outside-prefix",route="photos"}'
    )
    assert _value(text, issued) == 2
    assert _value(text, refused) == 1


def test_observe_upstream_fills_the_latency_histogram() -> None:
    """The proxy's own timing lands in gateway_upstream_latency_seconds (no client tracing)."""
    metrics = Metrics()
    metrics.observe_upstream(0.003)
    metrics.observe_upstream(0.2)
    text = metrics.render().decode()
    assert _value(text, "gateway_upstream_latency_seconds_count") == 2
    assert _value(text, 'gateway_upstream_latency_seconds_bucket{le="0.005"}') == 1
    assert _value(text, "gateway_upstream_latency_seconds_sum") == 0.203
