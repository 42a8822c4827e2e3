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


def _users(url: str, tag: str, count: int) -> list[gw.Login]:
    return [gw.login(url, f"bench-{tag}-u{i}") for i in range(count)]


def _per(count: int, of: int) -> float:
    return round(count / of, 3) if of else 0.0


def _by_call(calls: dict[str, int], seconds: dict[str, float], of: int) -> dict[str, Any]:
    return {
        op: {
            "per_upload": _per(calls[op], of),
            "mean_ms": round(seconds.get(op, 0.0) / calls[op] * 1000, 3),
        }
        for op in sorted(calls)
    }


def _sum(tallies: list[completions.Tally]) -> completions.Tally:
    total = completions.Tally()
    for tally in tallies:
        for op, n in tally.calls.items():
            total.calls[op] = total.calls.get(op, 0) + n
        for op, sec in tally.seconds.items():
            total.seconds[op] = total.seconds.get(op, 0.0) + sec
    return total


def run_completion(env: Env, settings: Settings) -> dict[str, Any]:
    """Rounds of fresh users' uploads, each signed, put and completed (bench/completions.py);
    the S3 calls of users' first signatures, later signatures and completions summed apart."""
    gateway = stream_gateway(env)

    def one_round(users: list[gw.Login], per_user: int) -> completions.CompletionRun:
        return completions.run(
            gateway=gateway.url,
            users=users,
            per_user=per_user,
            s3_direct=env.servers["moto"].url,
            tap=env.servers["s3tap"].url,
            concurrency=settings.completion_concurrency,
        )

    # A short untimed round warms the gateway's S3 client and the upstream pool.
    one_round(_users(gateway.url, "warm", 8), 1)
    runs: list[completions.CompletionRun] = []
    for round_no in range(1, settings.rounds + 1):
        users = _users(gateway.url, f"r{round_no}", settings.completion_users)
        done = one_round(users, settings.completion_per_user)
        runs.append(done)
        log(
            f"round {round_no} completion: {done.per_second:.1f}/s, p50 {done.p50_ms:.1f} ms, "
            f"{done.complete.s3.total / max(1, done.completions):.2f} S3 calls each; signing "
            f"{done.signing_per_second:.0f}/s, S3 calls {done.sign_first.s3.total} for "
            f"{done.sign_first.done} first, {done.sign_later.s3.total} for "
            f"{done.sign_later.done} later; {done.failures} failed"
        )
    return summarize(runs, settings)


def summarize(runs: list[completions.CompletionRun], settings: Settings) -> dict[str, Any]:
    """The completion case's section of results.json: counts summed over the rounds, rates
    and latencies as medians of the rounds'."""
    total = sum(r.completions for r in runs)
    firsts = sum(r.sign_first.done for r in runs)
    laters = sum(r.sign_later.done for r in runs)
    signed = firsts + laters
    complete = _sum([r.complete.s3 for r in runs])
    sign_first = _sum([r.sign_first.s3 for r in runs])
    sign_later = _sum([r.sign_later.s3 for r in runs])
    signing = _sum([sign_first, sign_later])
    per_second = [r.per_second for r in runs]
    signing_rate = [r.signing_per_second for r in runs]
    mean_ms = sum(r.mean_ms * r.completions for r in runs) / max(1, total)
    s3_ms = sum(complete.seconds.values()) / max(1, total) * 1000
    at_completion = _per(complete.total, total)
    first_at_signing = _per(sign_first.total, firsts)
    later_at_signing = _per(sign_later.total, laters)

    def mean_latency(batches: list[completions.Batch]) -> float:
        values = [v for b in batches for v in b.latencies_ms]
        return round(sum(values) / len(values), 2) if values else 0.0

    return {
        "users_per_round": settings.completion_users,
        "uploads_per_user": settings.completion_per_user,
        "objects": settings.completion_users * settings.completion_per_user,
        "concurrency": settings.completion_concurrency,
        "per_second_median": round(report.median(per_second), 2),
        "per_second_min": round(min(per_second), 2),
        "per_second_max": round(max(per_second), 2),
        "p50_ms": round(report.median([r.p50_ms for r in runs]), 2),
        "p99_ms": round(report.median([r.p99_ms for r in runs]), 2),
        "mean_ms": round(mean_ms, 2),
        "failures": sum(r.failures for r in runs),
        "s3_calls_per_completion": at_completion,
        "s3_ms_per_completion": round(s3_ms, 2),
        "s3_share_of_latency": round(s3_ms / mean_ms, 3) if mean_ms else 0.0,
        "s3_by_call": {
            op: {"per_completion": row["per_upload"], "mean_ms": row["mean_ms"]}
            for op, row in _by_call(complete.calls, complete.seconds, total).items()
        },
        # Issue 16: what the client's fast path costs in S3 requests, per upload.
        "s3_per_upload": {
            "signing_first_of_user": first_at_signing,
            "signing_later": later_at_signing,
            "signing_mean": _per(signing.total, signed),
            "completion": at_completion,
            "total_first_of_user": round(first_at_signing + at_completion, 3),
            "total_later": round(later_at_signing + at_completion, 3),
            "total_mean": round(_per(signing.total, signed) + at_completion, 3),
        },
        "signing": {
            "signatures": signed,
            "first_of_user": firsts,
            "later": laters,
            "per_second_median": round(report.median(signing_rate), 1),
            "per_second_min": round(min(signing_rate), 1),
            "per_second_max": round(max(signing_rate), 1),
            "first_mean_ms": mean_latency([r.sign_first for r in runs]),
            "later_mean_ms": mean_latency([r.sign_later for r in runs]),
            "s3_by_call_first": _by_call(sign_first.calls, sign_first.seconds, firsts),
            "s3_by_call_later": _by_call(sign_later.calls, sign_later.seconds, laters),
        },
        "runs": [
            {
                "per_second": round(r.per_second, 2),
                "p50_ms": round(r.p50_ms, 2),
                "signing_per_second": round(r.signing_per_second, 1),
                "s3_signing_first": r.sign_first.s3.total,
                "s3_signing_later": r.sign_later.s3.total,
                "s3_completion": r.complete.s3.total,
                "failures": r.failures,
            }
            for r in runs
        ],
        "s3_path": "gateway -> bench/s3tap.py (counts, times) -> moto server",
    }
