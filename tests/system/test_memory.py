"""The memory bound: 1 GiB up and 1 GiB down through a real gateway process under 100 MB RSS."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.gateway import FORWARDERS
from tests.support.processes import RssSampler, StartProcess, rss_bytes
from tests.support.upstream import generated_sha256

GiB = 1024**3
BLOCK = 256 * 1024
RSS_LIMIT = 100 * 1000 * 1000  # "100 MB", read strictly (95.4 MiB)
# What a transfer may add to the idle process: a few socket buffers, never the body.
GROWTH_LIMIT = 32 * 1024 * 1024
TRANSFER_TIMEOUT = 120


async def _generated(size: int, digest: hashlib._Hash) -> AsyncIterator[bytes]:
    """``size`` bytes made on the fly (no file, no buffer), every block distinct, hashed as sent."""
    base = bytes(range(256)) * (BLOCK // 256)
    sent = 0
    index = 0
    while sent < size:
        piece = (index.to_bytes(8, "big") + base[8:])[: min(BLOCK, size - sent)]
        digest.update(piece)
        yield piece
        sent += len(piece)
        index += 1


@pytest.mark.slow
@pytest.mark.parametrize("forwarder", FORWARDERS)
async def test_one_gib_each_way_stays_under_100_mb(
    gateway_process: StartProcess, forwarder: str
) -> None:
    """Bodies stream with back-pressure: 1 GiB uploaded (chunked, generated) and 1 GiB downloaded
    pass through intact (sha256 on both ends) while the gateway's RSS stays under 100 MB, under
    both forwarders."""
    gateway = await gateway_process(upstream={"read_timeout": 60, "forwarder": forwarder})
    baseline = rss_bytes(gateway.pid)
    timeout = aiohttp.ClientTimeout(total=TRANSFER_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as client:
        with RssSampler(gateway.pid) as up_rss:
            sent = hashlib.sha256()
            started = time.monotonic()
            async with client.post(gateway.url + "/sink", data=_generated(GiB, sent)) as resp:
                assert resp.status == 200
                answer = await resp.json()
            up_seconds = time.monotonic() - started
        assert answer == {"sha256": sent.hexdigest(), "size": GiB}

        with RssSampler(gateway.pid) as down_rss:
            received = hashlib.sha256()
            size = 0
            started = time.monotonic()
            async with client.get(gateway.url + f"/stream?size={GiB}") as resp:
                assert resp.status == 200
                async for chunk in resp.content.iter_any():
                    received.update(chunk)
                    size += len(chunk)
            down_seconds = time.monotonic() - started
        assert size == GiB
        assert received.hexdigest() == generated_sha256(GiB)

    mib = 1024 * 1024
    print(
        f"\ngateway RSS: baseline {baseline / mib:.1f} MiB, peak up {up_rss.peak / mib:.1f} MiB "
        f"({up_rss.samples} samples), peak down {down_rss.peak / mib:.1f} MiB "
        f"({down_rss.samples} samples); up {GiB / mib / up_seconds:.0f} MiB/s "
        f"({up_seconds:.1f}s), down {GiB / mib / down_seconds:.0f} MiB/s ({down_seconds:.1f}s)"
    )
    assert up_rss.samples > 10 and down_rss.samples > 10
    assert up_rss.peak < RSS_LIMIT, up_rss.peak
    assert down_rss.peak < RSS_LIMIT, down_rss.peak
    assert max(up_rss.peak, down_rss.peak) - baseline < GROWTH_LIMIT
