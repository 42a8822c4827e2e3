"""The streaming and completion cases, run after the load cases with their own servers."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from bench import completions, nginx, procs, report, streaming
from bench import gateway_server as gw
from bench.servers import Env, log, start_bare_proxy, stream_gateway
from bench.settings import Settings


def run_streaming(env: Env, settings: Settings) -> dict[str, Any]:
    """Upload and download ``stream_size`` bytes straight to the upstream, through the gateway,
    and, for perspective, through the bare aiohttp proxy and nginx; alternating."""
    upstream = env.servers["upstream"]
    gateway = stream_gateway(env)
    targets = {"direct": upstream, "gateway": gateway}
    targets["bare aiohttp"] = start_bare_proxy(env, upstream.url, "bare-stream")
    binary = nginx.available()
    if binary is not None:
        port = procs.free_port()
        config = nginx.proxy_config(
            env.workdir, port, upstream.url, name="nginx-stream", streaming=True
        )
        targets["nginx"] = env.add(nginx.start(binary, "nginx-stream", config, port, env.logs))
    body = streaming.make_body(env.workdir, settings.stream_size)
    small = streaming.make_body(env.workdir, 4 * procs.MIB)
    timeout = 600.0
    # Warm every path (imports, pools), then let the gateway settle before reading its rest RSS.
    for server in targets.values():
        streaming.upload(server.url, small, 4 * procs.MIB, server, timeout)
        streaming.download(server.url, 4 * procs.MIB, server, timeout)
    time.sleep(0.5)  # not a readiness wait: lets freed buffers be returned before measuring
    idle = gateway.rss()
    size = settings.stream_size
    plan: list[tuple[str, Callable[[], streaming.Transfer]]] = []
    for direction in ("upload", "download"):
        for label, server in targets.items():
            if direction == "upload":
                plan.append(
                    (
                        f"upload {label}",
                        functools.partial(
                            streaming.upload, server.url, body, size, server, timeout
                        ),
                    )
                )
            else:
                plan.append(
                    (
                        f"download {label}",
                        functools.partial(streaming.download, server.url, size, server, timeout),
                    )
                )
    runs: dict[str, list[streaming.Transfer]] = {name: [] for name, _ in plan}
    for round_no in range(1, settings.rounds + 1):
        for name, transfer in plan:
            done = transfer()
            runs[name].append(done)
            log(
                f"round {round_no} stream {name}: {done.mib_s:,.0f} MiB/s, "
                f"peak RSS {done.peak_rss / procs.MIB:.1f} MiB"
            )
    after = gateway.rss()
    for name in ("bare-stream", "nginx-stream"):
        env.stop(name)
    rows = []
    for name, transfers in runs.items():
        speeds = [t.mib_s for t in transfers]
        peak = max(t.peak_rss for t in transfers)
        row: dict[str, Any] = {
            "name": name,
            "mib_s_median": round(report.median(speeds), 1),
            "mib_s_min": round(min(speeds), 1),
            "mib_s_max": round(max(speeds), 1),
            "peak_rss_mib": round(peak / procs.MIB, 1),
            "runs_mib_s": [round(s, 1) for s in speeds],
        }
        if name.endswith(" gateway"):
            row["rss_growth_mib"] = round((peak - idle) / procs.MIB, 2)
        rows.append(row)
    return {
        "size_mib": size // procs.MIB,
        "client": "curl",
        "upstream": "bench/upstream.py (aiohttp)",
        "gateway_idle_rss_mib": round(idle / procs.MIB, 1),
        "gateway_rss_after_mib": round(after / procs.MIB, 1),
        "transfers": rows,
        "_runs": runs,
    }


# ---------------------------------------------------------------------------- completion


def run_completion(env: Env, settings: Settings) -> dict[str, Any]:
    gateway = stream_gateway(env)
    login = gw.login(gateway.url)
    runs: list[completions.CompletionRun] = []
    # A short untimed batch warms the gateway's S3 client and the upstream pool.
    completions.run(
        gateway=gateway.url,
        login=login,
        s3_direct=env.servers["moto"].url,
        tap=env.servers["s3tap"].url,
        count=8,
        concurrency=settings.completion_concurrency,
    )
    for round_no in range(1, settings.rounds + 1):
        done = completions.run(
            gateway=gateway.url,
            login=login,
            s3_direct=env.servers["moto"].url,
            tap=env.servers["s3tap"].url,
            count=settings.completion_count,
            concurrency=settings.completion_concurrency,
        )
        runs.append(done)
        log(
            f"round {round_no} completion: {done.per_second:.1f}/s, p50 {done.p50_ms:.1f} ms, "
            f"{sum(done.s3_calls.values()) / max(1, done.completions):.2f} S3 calls each, "
            f"{done.failures} failed"
        )
    total = sum(r.completions for r in runs)
    calls: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for r in runs:
        for op, n in r.s3_calls.items():
            calls[op] = calls.get(op, 0) + n
        for op, s in r.s3_seconds.items():
            seconds[op] = seconds.get(op, 0.0) + s
    per_second = [r.per_second for r in runs]
    mean_ms = sum(r.mean_ms * r.completions for r in runs) / max(1, total)
    s3_ms = sum(seconds.values()) / max(1, total) * 1000
    return {
        "objects": settings.completion_count,
        "concurrency": settings.completion_concurrency,
        "per_second_median": round(report.median(per_second), 2),
        "per_second_min": round(min(per_second), 2),
        "per_second_max": round(max(per_second), 2),
        "p50_ms": round(report.median([r.p50_ms for r in runs]), 2),
        "p99_ms": round(report.median([r.p99_ms for r in runs]), 2),
        "mean_ms": round(mean_ms, 2),
        "failures": sum(r.failures for r in runs),
        "s3_calls_per_completion": round(sum(calls.values()) / max(1, total), 3),
        "s3_ms_per_completion": round(s3_ms, 2),
        "s3_share_of_latency": round(s3_ms / mean_ms, 3) if mean_ms else 0.0,
        "s3_by_call": {
            op: {
                "per_completion": round(calls[op] / max(1, total), 3),
                "mean_ms": round(seconds.get(op, 0.0) / calls[op] * 1000, 3),
            }
            for op in sorted(calls)
        },
        "runs": [
            {
                "per_second": round(r.per_second, 2),
                "p50_ms": round(r.p50_ms, 2),
                "failures": r.failures,
            }
            for r in runs
        ],
        "s3_path": "gateway -> bench/s3tap.py (counts, times) -> moto server",
    }
