"""Metrics of a gateway served on loopback (gateway/metrics.py): answered requests are counted.

The counters and histogram alone: tests/unit/test_metrics.py."""

from __future__ import annotations

import re
from collections.abc import Callable

import aiohttp

from gateway.config import Config
from tests.support.gateway import gateway_app
from tests.support.processes import served


def _value(text: str, sample: str) -> float:
    """The value of one exposition sample line (``name{labels}``), 0 when absent."""
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_served_requests_are_counted(make_config: Callable[..., Config]) -> None:
    """Each answered request, proxied or refused, shows up in the scrape under its status."""
    async with served(gateway_app(make_config())) as gw, aiohttp.ClientSession() as client:
        for _ in range(2):
            async with client.get(gw + "/echo/a") as resp:
                assert resp.status == 200
        async with client.get(gw + "/uploads/photos/config") as resp:
            assert resp.status == 401
        async with client.get(gw + "/-/metrics") as resp:
            text = await resp.text()
    assert _value(text, 'gateway_requests_total{route="proxy",status="200"}') == 2
    assert _value(text, 'gateway_requests_total{route="photos",status="401"}') == 1
