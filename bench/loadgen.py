"""The bundled load generator, used when wrk is not installed: aiohttp on uvloop, N keep-alive
connections each sending the same request in a loop for a fixed time.

It tops out near 10,000 requests/s on one core, well below wrk: results made with it say so.
Prints the same ``BENCH_JSON`` summary line as the bench's wrk script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


async def _drive(args: argparse.Namespace, body: bytes | None) -> dict[str, float]:
    headers = dict(h.split(": ", 1) for h in args.header)
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    received = 0
    connector = aiohttp.TCPConnector(limit=args.connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    ) as session:
        started = time.perf_counter()
        deadline = started + args.duration

        async def worker() -> None:
            nonlocal received
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.request(
                        args.method, args.url, headers=headers, data=body
                    ) as resp:
                        payload = await resp.read()
                        received += len(payload)
                        if resp.status >= 400:
                            errors["status"] += 1
                except TimeoutError:
                    errors["timeout"] += 1
                    continue
                except aiohttp.ClientConnectionError:
                    errors["read"] += 1
                    continue
                latencies.append((time.perf_counter() - t0) * 1e6)

        await asyncio.gather(*(worker() for _ in range(args.connections)))
        elapsed = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "duration_us": int(elapsed * 1e6),
        "bytes": received,
        **errors,
        "p50_us": _percentile(latencies, 50),
        "p99_us": _percentile(latencies, 99),
        "max_us": max(latencies, default=0.0),
        "mean_us": sum(latencies) / len(latencies) if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body-file")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    body = Path(args.body_file).read_bytes() if args.body_file else None
    summary = asyncio.run(_drive(args, body))
    print("BENCH_JSON " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
