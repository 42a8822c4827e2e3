"""``python -m bench``: start every server on loopback, run each case in alternating rounds,
stop everything, and write results.json, results.md and the plot.

``--quick`` is a smoke run (short runs, 64 MiB bodies) whose results go to bench/out/ so they
never replace a full run's. ``--profile`` instead samples the gateway with py-spy under the
passthrough and signing loads and writes the summaries to bench/out/.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    companion,
    completions,
    documents,
    inprocess,
    load,
    nginx,
    procs,
    profiling,
    report,
    streaming,
)
from bench import gateway_server as gw

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
OUT_DIR = BENCH_DIR / "out"
GIB = 1024**3
WRK_THREADS = 1


@dataclass(frozen=True)
class Settings:
    """How long and how much: the full run's defaults, or --quick's."""

    quick: bool
    duration: float
    rounds: int
    warmup: float
    stream_size: int
    completion_count: int
    completion_concurrency: int
    inprocess_seconds: float
    connections: tuple[int, ...] = (64, 512)
    signing_connections: int = 64


def make_settings(args: argparse.Namespace) -> Settings:
    if args.quick:
        return Settings(
            quick=True,
            duration=args.duration or 1.0,
            rounds=args.rounds or 3,
            warmup=1.0,
            stream_size=64 * procs.MIB,
            completion_count=30,
            completion_concurrency=8,
            inprocess_seconds=0.1,
        )
    return Settings(
        quick=False,
        duration=args.duration or 5.0,
        rounds=args.rounds or 3,
        warmup=1.0,
        stream_size=GIB,
        completion_count=300,
        completion_concurrency=8,
        inprocess_seconds=0.5,
    )


@dataclass
class LoadCase:
    """One load case: what to send, to which server, whose memory to watch."""

    result: report.CaseResult
    server: procs.Server
    make_request: Callable[[], load.Request]
    expect: Callable[[int, bytes], bool] = field(default=lambda status, body: status == 200)


@dataclass
class Env:
    """The run's servers and places; everything started is stopped by ``stack``."""

    stack: contextlib.ExitStack
    workdir: Path
    logs: Path
    notes: list[str]
    servers: dict[str, procs.Server] = field(default_factory=dict)

    def add(self, server: procs.Server) -> procs.Server:
        self.servers[server.name] = server
        self.stack.callback(server.stop)
        return server

    def stop(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop()


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---------------------------------------------------------------------------- servers


def start_base(env: Env) -> None:
    """moto (S3), the counting tap in front of it, the aiohttp upstream, and nginx's static
    upstream when nginx is installed."""
    py = sys.executable
    port = procs.free_port()
    env.add(
        procs.start(
            "moto",
            [py, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            url=f"http://127.0.0.1:{port}",
            logs=env.logs,
            env=procs.bench_env(),
            ready_path="/moto-api/",
        )
    )
    completions.create_buckets(env.servers["moto"].url)
    port = procs.free_port()
    env.add(
        procs.start(
            "s3tap",
            [py, "-m", "bench.s3tap", "--port", str(port), "--upstream", env.servers["moto"].url],
            url=f"http://127.0.0.1:{port}",
            logs=env.logs,
            env=procs.bench_env(),
            ready_path="/__tap",
        )
    )
    port = procs.free_port()
    env.add(
        procs.start(
            "upstream",
            [py, "-m", "bench.upstream", "--port", str(port)],
            url=f"http://127.0.0.1:{port}",
            logs=env.logs,
            env=procs.bench_env(),
            ready_path="/1k",
            ready_status=200,
        )
    )
    binary = nginx.available()
    if binary is not None:
        port = procs.free_port()
        config = nginx.static_config(env.workdir, port)
        env.add(nginx.start(binary, "nginx-upstream", config, port, env.logs))


def passthrough_upstream(env: Env) -> procs.Server:
    """nginx's static server when there is one (the cheapest upstream, so the proxy in front is
    what gets measured), else the aiohttp upstream."""
    return env.servers.get("nginx-upstream") or env.servers["upstream"]


def start_gateway(
    env: Env, name: str, upstream: str, *, workers: int = 1, s3: str | None = None
) -> procs.Server:
    """A gateway subprocess at ``upstream``; S3 is moto itself unless ``s3`` names the tap."""
    return env.add(
        gw.start(
            name,
            workdir=env.workdir,
            logs=env.logs,
            upstream=upstream,
            s3_endpoint=s3 or env.servers["moto"].url,
            workers=workers,
        )
    )


def stream_gateway(env: Env) -> procs.Server:
    """The gateway of the streaming and completion cases: the aiohttp upstream, S3 via the tap."""
    existing = env.servers.get("gateway-stream")
    if existing is not None:
        return existing
    upstream = env.servers["upstream"].url
    return start_gateway(env, "gateway-stream", upstream, s3=env.servers["s3tap"].url)


def start_bare_proxy(env: Env, upstream: str) -> procs.Server:
    port = procs.free_port()
    return env.add(
        procs.start(
            "bare-aiohttp",
            [sys.executable, "-m", "bench.bare_proxy", "--port", str(port), "--upstream", upstream],
            url=f"http://127.0.0.1:{port}",
            logs=env.logs,
            env=procs.bench_env(),
            ready_path="/1k",
            ready_status=200,
        )
    )


def start_proxies(env: Env, settings: Settings) -> None:
    """The gateway (one and two workers), the bare aiohttp proxy, nginx's proxy, Companion."""
    upstream = passthrough_upstream(env).url
    start_gateway(env, "gateway", upstream)
    start_gateway(env, "gateway-w2", upstream, workers=2)
    start_bare_proxy(env, upstream)
    binary = nginx.available()
    if binary is not None:
        port = procs.free_port()
        config = nginx.proxy_config(env.workdir, port, upstream)
        env.add(nginx.start(binary, "nginx-proxy", config, port, env.logs))
    else:
        env.notes.append("nginx is not installed: the nginx cases were skipped.")
    why = companion.available()
    if why is None:
        env.add(companion.start(env.workdir, env.logs))
    else:
        env.notes.append(f"Uppy Companion was skipped: {why}.")


# ---------------------------------------------------------------------------- load cases

TARGET_NAMES = {
    "direct": "direct",
    "gateway": "gateway",
    "gateway-w2": "gateway --workers 2",
    "bare-aiohttp": "bare aiohttp",
    "nginx-proxy": "nginx",
    "companion": "companion",
}


def _case(group: str, variant: str, target: str, connections: int) -> report.CaseResult:
    label = TARGET_NAMES.get(target, target)
    return report.CaseResult(
        name=f"{group} {variant} c{connections}: {label}",
        group=group,
        variant=variant,
        target=label,
        connections=connections,
    )


def _fixed(request: load.Request) -> Callable[[], load.Request]:
    return lambda: request


def _signed(status: int, body: bytes) -> bool:
    return status == 200 and b'"signature"' in body


def build_cases(env: Env, settings: Settings, login: gw.Login) -> list[LoadCase]:
    """Passthrough (each size and connection count: direct, gateway, bare aiohttp, nginx,
    gateway --workers 2), then signing (policy v4, REST v4, Uppy params, Companion)."""
    cases: list[LoadCase] = []
    direct = passthrough_upstream(env)
    cookie = ("Cookie", login.cookie_header)
    for variant, path in (("1 KiB", "/1k"), ("64 KiB", "/64k")):
        for connections in settings.connections:
            for target in ("direct", "gateway", "bare-aiohttp", "nginx-proxy", "gateway-w2"):
                server = direct if target == "direct" else env.servers.get(target)
                if server is None:
                    continue
                request = load.Request(server.url + path, headers=(cookie,))
                cases.append(
                    LoadCase(
                        _case("passthrough", variant, target, connections),
                        server,
                        _fixed(request),
                    )
                )
    gateway = env.servers["gateway"]
    bucket_host = f"{gw.UPLOADS_BUCKET}.s3.localhost:{procs.host_port(env.servers['moto'].url)[1]}"
    headers = (
        ("Content-Type", "application/json; charset=utf-8"),
        ("Origin", gateway.url),
        cookie,
    )
    signature_url = f"{gateway.url}{gw.FINEUPLOADER_PATH}/signature?v4=true"
    n = settings.signing_connections

    def policy_request() -> load.Request:
        document = documents.policy_v4(
            key_prefix=login.key_prefix,
            bucket=gw.UPLOADS_BUCKET,
            access_key_id=gw.ACCESS_KEY_ID,
            region=gw.REGION,
            now=documents.utc_now(),
        )
        return load.Request(signature_url, "POST", headers, documents.as_body(document))

    def rest_request() -> load.Request:
        raw = documents.rest_v4_part(
            key_prefix=login.key_prefix,
            bucket_host=bucket_host,
            region=gw.REGION,
            now=documents.utc_now(),
        )
        return load.Request(signature_url, "POST", headers, documents.as_body({"headers": raw}))

    uppy = load.Request(
        f"{gateway.url}{gw.UPPY_PATH}/s3/params?filename=photo.jpg&type=image%2Fjpeg",
        headers=(cookie,),
    )
    cases += [
        LoadCase(_case("signing", "policy v4", "gateway", n), gateway, policy_request, _signed),
        LoadCase(_case("signing", "REST v4", "gateway", n), gateway, rest_request, _signed),
        LoadCase(_case("signing", "Uppy params", "gateway", n), gateway, _fixed(uppy)),
    ]
    comp = env.servers.get("companion")
    if comp is not None:
        comp_request = load.Request(
            comp.url + companion.PARAMS_PATH,
            headers=(("Cookie", companion.session_cookie(comp.url)),),
        )
        cases.append(
            LoadCase(_case("signing", "Uppy params", "companion", n), comp, _fixed(comp_request))
        )
    return cases


def send_once(request: load.Request) -> tuple[int, bytes]:
    """One request with http.client: the preflight that a case answers what it should."""
    host, port = procs.host_port(request.url)
    target = "/" + request.url.split("://", 1)[1].split("/", 1)[1]
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request(request.method, target, body=request.body, headers=dict(request.headers))
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def run_load(env: Env, settings: Settings, cases: list[LoadCase]) -> None:
    """Preflight and warm each case, then ``rounds`` round-robin passes over all of them."""
    for case in cases:
        status, body = send_once(case.make_request())
        if not case.expect(status, body):
            raise RuntimeError(f"{case.result.name}: preflight answered {status}: {body[:300]!r}")
        load.run(
            case.make_request(),
            connections=case.result.connections,
            duration=settings.warmup,
            threads=WRK_THREADS,
            workdir=env.workdir,
            tag="warmup",
        )
    for round_no in range(1, settings.rounds + 1):
        for case in cases:
            with procs.measure_peak(case.server) as peak:
                result = load.run(
                    case.make_request(),
                    connections=case.result.connections,
                    duration=settings.duration,
                    threads=WRK_THREADS,
                    workdir=env.workdir,
                    tag="run",
                )
            case.result.runs.append(
                report.Run(
                    rps=result.rps,
                    p50_ms=result.p50_ms,
                    p99_ms=result.p99_ms,
                    peak_rss_mib=peak[0] / procs.MIB,
                    errors=result.errors,
                )
            )
            errors = f", errors {result.errors}" if result.errors else ""
            log(
                f"round {round_no} {case.result.name}: {result.rps:,.0f} req/s, "
                f"p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms{errors}"
            )


# ---------------------------------------------------------------------------- streaming


def run_streaming(env: Env, settings: Settings) -> dict[str, Any]:
    """Upload and download ``stream_size`` bytes, direct and through the gateway, alternating."""
    upstream = env.servers["upstream"]
    gateway = stream_gateway(env)
    body = streaming.make_body(env.workdir, settings.stream_size)
    small = streaming.make_body(env.workdir, 4 * procs.MIB)
    timeout = 600.0
    # Warm both paths (imports, pools), then let the gateway settle before reading its rest RSS.
    for base in (upstream.url, gateway.url):
        streaming.upload(base, small, 4 * procs.MIB, gateway, timeout)
        streaming.download(base, 4 * procs.MIB, gateway, timeout)
    time.sleep(0.5)  # not a readiness wait: lets freed buffers be returned before measuring
    idle = gateway.rss()
    size = settings.stream_size
    plan: list[tuple[str, Callable[[], streaming.Transfer]]] = [
        ("upload direct", lambda: streaming.upload(upstream.url, body, size, upstream, timeout)),
        ("upload gateway", lambda: streaming.upload(gateway.url, body, size, gateway, timeout)),
        ("download direct", lambda: streaming.download(upstream.url, size, upstream, timeout)),
        ("download gateway", lambda: streaming.download(gateway.url, size, gateway, timeout)),
    ]
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
        if name.endswith("gateway"):
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


# ---------------------------------------------------------------------------- results


RATIO_DEFINITIONS = {
    "passthrough_vs_bare_aiohttp": "gateway / bare aiohttp proxy, req/s, 1 KiB, 64 connections",
    "passthrough_vs_nginx": "gateway / nginx proxy (one worker), req/s, 1 KiB, 64 connections",
    "passthrough_vs_direct": "gateway / the upstream alone, req/s, 1 KiB, 64 connections",
    "workers2_vs_workers1": "`serve --workers 2` / one worker, req/s, 1 KiB, 64 connections",
    "signing_vs_companion": (
        "gateway's Fine Uploader v4 policy signing / Companion's /s3/params (presigned POST), "
        "req/s at 64 connections"
    ),
    "signing_p99_ms": "p99 latency of the gateway's v4 policy signing at 64 connections, ms",
    "rest_v4_vs_companion": "gateway's REST v4 (chunk) signing / Companion's /s3/params, req/s",
    "uppy_params_vs_companion": (
        "gateway's Uppy /s3/params / Companion's /s3/params (the same protocol), req/s"
    ),
    "presign_vs_botocore": (
        "presigned PUT URLs per second, in process: gateway's presign_v4 / botocore's "
        "generate_presigned_url"
    ),
    "stream_upload_vs_direct": "upload MiB/s through the gateway / straight to the upstream",
    "stream_download_vs_direct": "download MiB/s through the gateway / straight from the upstream",
    "stream_rss_growth_mib": (
        "largest gateway peak RSS (VmHWM) during a transfer minus its RSS at rest, MiB"
    ),
}


def compute_ratios(
    cases: list[report.CaseResult],
    inproc: dict[str, list[float]] | None,
    stream: dict[str, Any] | None,
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """The issue's ratios (headline: 1 KiB at 64 connections) plus every passthrough pair."""
    by_name = {c.name: c for c in cases}
    ratios: dict[str, float] = {}
    ranges: dict[str, list[float]] = {}

    def pair(key: str, a: str, b: str) -> None:
        if a in by_name and b in by_name and by_name[a].runs and by_name[b].runs:
            value, low, high = report.paired_ratio(
                [r.rps for r in by_name[a].runs], [r.rps for r in by_name[b].runs]
            )
            ratios[key] = round(value, 3)
            ranges[key] = [round(low, 3), round(high, 3)]

    head = "passthrough 1 KiB c64: "
    pair("passthrough_vs_bare_aiohttp", head + "gateway", head + "bare aiohttp")
    pair("passthrough_vs_nginx", head + "gateway", head + "nginx")
    pair("passthrough_vs_direct", head + "gateway", head + "direct")
    pair("workers2_vs_workers1", head + "gateway --workers 2", head + "gateway")
    sign = "signing {} c64: {}"
    companion_name = sign.format("Uppy params", "companion")
    pair("signing_vs_companion", sign.format("policy v4", "gateway"), companion_name)
    policy = by_name.get(sign.format("policy v4", "gateway"))
    if policy is not None and policy.runs:
        ratios["signing_p99_ms"] = round(report.median([r.p99_ms for r in policy.runs]), 3)
    pair("rest_v4_vs_companion", sign.format("REST v4", "gateway"), companion_name)
    pair("uppy_params_vs_companion", sign.format("Uppy params", "gateway"), companion_name)
    if inproc:
        value, low, high = report.paired_ratio(
            inproc["presign_botocore"], inproc["presign_gateway"]
        )
        ratios["presign_vs_botocore"] = round(value, 3)
        ranges["presign_vs_botocore"] = [round(low, 3), round(high, 3)]
    if stream:
        runs = stream["_runs"]
        for direction in ("upload", "download"):
            value, low, high = report.paired_ratio(
                [t.mib_s for t in runs[f"{direction} gateway"]],
                [t.mib_s for t in runs[f"{direction} direct"]],
            )
            ratios[f"stream_{direction}_vs_direct"] = round(value, 3)
            ranges[f"stream_{direction}_vs_direct"] = [round(low, 3), round(high, 3)]
        ratios["stream_rss_growth_mib"] = max(
            row["rss_growth_mib"] for row in stream["transfers"] if "rss_growth_mib" in row
        )
    # Every other passthrough pair, named <ratio>_<size>_c<connections>.
    for variant, tag in (("1 KiB", "1k"), ("64 KiB", "64k")):
        for connections in (64, 512):
            prefix = f"passthrough {variant} c{connections}: "
            if tag == "1k" and connections == 64:
                continue
            pair(
                f"passthrough_vs_bare_aiohttp_{tag}_c{connections}",
                prefix + "gateway",
                prefix + "bare aiohttp",
            )
            pair(f"passthrough_vs_nginx_{tag}_c{connections}", prefix + "gateway", prefix + "nginx")
            pair(
                f"workers2_vs_workers1_{tag}_c{connections}",
                prefix + "gateway --workers 2",
                prefix + "gateway",
            )
    return ratios, ranges


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "absent"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = Path("/proc/meminfo").read_text().splitlines()[0]
        memory = round(int(first.split()[1]) / 1024 / 1024, 1)

    def pkg(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "absent"

    why = companion.available()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": pkg("aiohttp"),
        "uvloop": pkg("uvloop"),
        "moto": pkg("moto"),
        "botocore": pkg("botocore"),
        "wrk": _version(["wrk", "--version"]) if shutil.which("wrk") else "absent",
        "nginx": _version([nginx.available() or "nginx", "-v"]) if nginx.available() else "absent",
        "node": _version(["node", "--version"]) if shutil.which("node") else "absent",
        "companion": companion.version() if why is None else f"absent ({why})",
        "curl": _version(["curl", "--version"]) if shutil.which("curl") else "absent",
    }


def write_results(
    out_dir: Path,
    plot_path: Path,
    settings: Settings,
    cases: list[report.CaseResult],
    inproc: dict[str, list[float]] | None,
    stream: dict[str, Any] | None,
    completion: dict[str, Any] | None,
    notes: list[str],
    generator_name: str,
) -> dict[str, Any]:
    ratios, ranges = compute_ratios(cases, inproc, stream)
    results: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other work on the machine during the run (the alternation is what keeps ratios fair).
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "quick": settings.quick,
        "command": "bench/run.sh" + (" --quick" if settings.quick else ""),
        "machine": machine(),
        "load_generator": generator_name,
        "settings": {
            "duration_s": settings.duration,
            "rounds": settings.rounds,
            "warmup_s": settings.warmup,
            "wrk_threads": WRK_THREADS,
            "stream_size_mib": settings.stream_size // procs.MIB,
            "completion_objects": settings.completion_count,
            "completion_concurrency": settings.completion_concurrency,
        },
        "notes": notes,
        "cases": [c.summary() for c in cases if c.runs],
        "ratios": ratios,
        "ratio_ranges": ranges,
        "ratio_definitions": {k: v for k, v in RATIO_DEFINITIONS.items() if k in ratios},
        "targets": report.check_targets(ratios),
    }
    if inproc:
        results["inprocess"] = {
            name: {
                "us_median": round(report.median(values), 2),
                "us_min": round(min(values), 2),
                "us_max": round(max(values), 2),
            }
            for name, values in inproc.items()
        }
    if stream:
        results["streaming"] = {k: v for k, v in stream.items() if not k.startswith("_")}
    if completion:
        results["completion"] = completion
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_json(out_dir / "results.json", results)
    (out_dir / "results.md").write_text(report.markdown(results))
    if results["cases"] and not report.plot(results, plot_path):
        notes.append("matplotlib is not installed: no plot was drawn.")
    return results


# ---------------------------------------------------------------------------- profile


def run_profile(env: Env, settings: Settings, native: bool) -> None:
    """py-spy on the one-worker gateway (and the bare proxy, for the floor) under passthrough
    (1 KiB, 64 connections), policy signing, and streaming."""
    binary = profiling.py_spy()
    if binary is None:
        raise SystemExit("py-spy is not installed (bench/run.sh installs it)")
    upstream = passthrough_upstream(env).url
    gateway = start_gateway(env, "gateway", upstream)
    start_bare_proxy(env, upstream)
    login = gw.login(gateway.url)
    cases = build_cases(env, settings, login)
    wanted = {
        "passthrough 1 KiB c64: gateway": "passthrough",
        "passthrough 1 KiB c64: bare aiohttp": "bare-aiohttp",
        "signing policy v4 c64: gateway": "signing",
    }
    seconds = max(3, round(settings.duration * 2))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for case in cases:
        tag = wanted.get(case.result.name)
        if tag is None:
            continue
        load.run(
            case.make_request(),
            connections=64,
            duration=1,
            threads=WRK_THREADS,
            workdir=env.workdir,
            tag="warmup",
        )
        raw = OUT_DIR / f"profile-{tag}.raw.txt"
        spy = profiling.record(binary, case.server.pid, seconds, raw, native=native)
        result = load.run(
            case.make_request(),
            connections=64,
            duration=seconds,
            threads=WRK_THREADS,
            workdir=env.workdir,
            tag="profile",
        )
        _, err = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-1000:]}")
        summary = profiling.summarise(raw)
        header = f"{case.result.name} under py-spy: {result.rps:,.0f} req/s (sampling slows it)\n\n"
        (OUT_DIR / f"profile-{tag}.txt").write_text(header + summary)
        log(f"profile {tag}: {result.rps:,.0f} req/s -> bench/out/profile-{tag}.txt")
    profile_streams(env, binary, seconds, native)


def profile_streams(env: Env, binary: str, seconds: int, native: bool) -> None:
    """py-spy on the streaming gateway while 256 MiB bodies go through it, each direction."""
    gateway = stream_gateway(env)
    size = 256 * procs.MIB
    body = streaming.make_body(env.workdir, size)
    for direction in ("download", "upload"):
        raw = OUT_DIR / f"profile-{direction}.raw.txt"
        spy = profiling.record(binary, gateway.pid, seconds, raw, native=native)
        speeds: list[float] = []
        while spy.poll() is None:
            if direction == "download":
                done = streaming.download(gateway.url, size, gateway, 600)
            else:
                done = streaming.upload(gateway.url, body, size, gateway, 600)
            speeds.append(done.mib_s)
        if spy.returncode != 0:
            raise RuntimeError(f"py-spy failed on the {direction} profile")
        header = (
            f"{direction} of 256 MiB bodies through the gateway under py-spy: "
            f"{report.median(speeds):,.0f} MiB/s (sampling slows it)\n\n"
        )
        (OUT_DIR / f"profile-{direction}.txt").write_text(header + profiling.summarise(raw))
        log(f"profile {direction}: -> bench/out/profile-{direction}.txt")


# ---------------------------------------------------------------------------- main


@contextlib.contextmanager
def environment() -> Iterator[Env]:
    workdir = Path(tempfile.mkdtemp(prefix="upload-gateway-bench-"))
    workdir.chmod(0o755)  # nginx workers read the static files from here
    logs = OUT_DIR / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        env = Env(stack=stack, workdir=workdir, logs=logs, notes=[])
        yield env


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run; results to bench/out/")
    parser.add_argument("--profile", action="store_true", help="py-spy the gateway instead")
    parser.add_argument("--native", action="store_true", help="with --profile: native frames too")
    parser.add_argument(
        "--only",
        action="append",
        choices=["load", "streaming", "completion", "inprocess"],
        help="run only these parts (repeatable); results to bench/out/",
    )
    parser.add_argument("--duration", type=float, help="seconds per load run")
    parser.add_argument("--rounds", type=int, help="alternating runs of each case (>= 3)")
    parser.add_argument("--out", type=Path, help="where results.md/json go")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = make_settings(args)
    if settings.rounds < 3 and not args.profile:
        print("bench: --rounds must be at least 3", file=sys.stderr)
        return 2
    parts = set(args.only or ["load", "streaming", "completion", "inprocess"])
    partial = bool(args.only) or settings.quick
    out_dir = args.out or (OUT_DIR if partial else BENCH_DIR)
    plot_path = (out_dir / "bench.png") if (partial or args.out) else ROOT / "docs" / "bench.png"
    generator_name = load.generator()
    if generator_name == "wrk":
        generator_name = f"{machine()['wrk'].split(' [')[0]}, {WRK_THREADS} thread"
    else:
        generator_name = "bench/loadgen.py (aiohttp; wrk not installed)"
    started = time.monotonic()
    with environment() as env:
        log(f"starting servers (work dir {env.workdir}, logs in {env.logs})")
        start_base(env)
        if args.profile:
            run_profile(env, settings, args.native)
            return 0
        cases: list[report.CaseResult] = []
        if "load" in parts:
            start_proxies(env, settings)
            login = gw.login(env.servers["gateway"].url)
            load_cases = build_cases(env, settings, login)
            log(
                f"{len(load_cases)} load cases x {settings.rounds} rounds x {settings.duration:g} s"
            )
            run_load(env, settings, load_cases)
            cases = [c.result for c in load_cases]
            for name in ("gateway", "gateway-w2", "bare-aiohttp", "nginx-proxy", "companion"):
                env.stop(name)
        stream = run_streaming(env, settings) if "streaming" in parts else None
        completion = run_completion(env, settings) if "completion" in parts else None
        inproc = None
        if "inprocess" in parts:
            moto_port = procs.host_port(env.servers["moto"].url)[1]
            inproc = inprocess.measure(
                f"{gw.UPLOADS_BUCKET}.s3.localhost:{moto_port}",
                env.servers["moto"].url,
                documents.utc_now(),
                rounds=settings.rounds,
                seconds=settings.inprocess_seconds,
            )
            costs = {k: round(report.median(v), 1) for k, v in inproc.items()}
            log(f"in-process µs per call: {costs}")
    results = write_results(
        out_dir, plot_path, settings, cases, inproc, stream, completion, env.notes, generator_name
    )
    log(f"done in {time.monotonic() - started:.0f} s: {out_dir / 'results.md'}")
    print(json.dumps({"ratios": results["ratios"]}, indent=2))
    return 0
