"""The ratios, the machine description, and writing results.json, results.md and the plot."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import companion, nginx, procs, report
from bench.settings import OUT_DIR, WRK_THREADS, Settings

RATIO_DEFINITIONS = {
    "passthrough_vs_bare_aiohttp": "gateway / bare aiohttp proxy, req/s, 1 KiB, 64 connections",
    "passthrough_vs_nginx": "gateway / nginx proxy (one worker), req/s, 1 KiB, 64 connections",
    "passthrough_vs_direct": "gateway / the upstream alone, req/s, 1 KiB, 64 connections",
    "workers2_vs_workers1": "`serve --workers 2` / one worker, req/s, 1 KiB, 64 connections",
    "signing_vs_companion": (
        "gateway's Fine Uploader v4 policy signing / Companion's /s3/params (presigned POST), "
        "req/s at 64 connections; Companion gets no cookie, as from @uppy/aws-s3 on another "
        "origin"
    ),
    "signing_vs_companion_with_cookie": (
        "as signing_vs_companion, with Companion sent its session cookie back (a Companion on "
        "the page's own origin)"
    ),
    "signing_workers2_vs_companion": (
        "as signing_vs_companion, with the gateway run as `serve --workers 2` (both cores; "
        "Companion is one Node process)"
    ),
    "signing_workers2_p99_ms": "p99 of the v4 policy signing with `--workers 2`, ms",
    "signing_workers2_vs_workers1": (
        "`serve --workers 2` / one worker on v4 policy signing, req/s at 64 connections: the "
        "cores' scaling where the gateway, not wrk or the upstream, takes most of the CPU"
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
    "stream_upload_nginx_vs_direct": "for perspective: the same upload through nginx",
    "stream_download_nginx_vs_direct": "for perspective: the same download through nginx",
    "stream_upload_bare_aiohttp_vs_direct": "for perspective: the upload through the bare proxy",
    "stream_download_bare_aiohttp_vs_direct": "for perspective: the download, bare proxy",
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
    pair(
        "signing_vs_companion_with_cookie",
        sign.format("policy v4", "gateway"),
        sign.format("Uppy params + cookie", "companion"),
    )
    pair(
        "signing_workers2_vs_companion",
        sign.format("policy v4", "gateway --workers 2"),
        companion_name,
    )
    pair(
        "signing_workers2_vs_workers1",
        sign.format("policy v4", "gateway --workers 2"),
        sign.format("policy v4", "gateway"),
    )
    for key, target in (
        ("signing_p99_ms", "gateway"),
        ("signing_workers2_p99_ms", "gateway --workers 2"),
    ):
        policy = by_name.get(sign.format("policy v4", target))
        if policy is not None and policy.runs:
            ratios[key] = round(report.median([r.p99_ms for r in policy.runs]), 3)
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
        for direction in ("upload", "download"):
            for label, key in (("nginx", "nginx"), ("bare aiohttp", "bare_aiohttp")):
                if f"{direction} {label}" in runs:
                    value, low, high = report.paired_ratio(
                        [t.mib_s for t in runs[f"{direction} {label}"]],
                        [t.mib_s for t in runs[f"{direction} direct"]],
                    )
                    ratios[f"stream_{direction}_{key}_vs_direct"] = round(value, 3)
                    ranges[f"stream_{direction}_{key}_vs_direct"] = [round(low, 3), round(high, 3)]
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


def source() -> dict[str, Any]:
    """The commit measured, and the gateway files that differed from it (work in progress)."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "gateway"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split("\n")
    except OSError:
        return {"commit": "unknown", "gateway_changes": []}
    return {"commit": commit or "unknown", "gateway_changes": [d[3:] for d in dirty if d]}


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


def speed_probe() -> float:
    """Milliseconds for a fixed pure-Python loop, best of three: how fast this host runs Python
    right now. On a VM the neighbours' load shows in no load average, but it shows here."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(2_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


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
    probe_at_start: float,
) -> dict[str, Any]:
    ratios, ranges = compute_ratios(cases, inproc, stream)
    results: dict[str, Any] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        # Other work on the machine during the run (the alternation is what keeps ratios fair).
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "speed_probe_ms": {"start": probe_at_start, "end": speed_probe()},
        "quick": settings.quick,
        "command": "bench/run.sh" + (" --quick" if settings.quick else ""),
        "machine": machine(),
        "source": source(),
        "load_generator": generator_name,
        "settings": {
            "duration_s": settings.duration,
            "rounds": settings.rounds,
            "warmup_s": settings.warmup,
            "wrk_threads": WRK_THREADS,
            "stream_size_mib": settings.stream_size // procs.MIB,
            "completion_users": settings.completion_users,
            "completion_uploads_per_user": settings.completion_per_user,
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
    if results["cases"]:
        # For the README's Benchmarks section, pasted by hand after a full run.
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        (OUT_DIR / "readme-tables.md").write_text(report.readme_tables(results))
    if results["cases"] and not report.plot(results, plot_path):
        notes.append("matplotlib is not installed: no plot was drawn.")
    return results


def merge_completion(
    out_dir: Path, completion: dict[str, Any], settings: Settings, probe_at_start: float
) -> dict[str, Any]:
    """Replace the completion section of ``out_dir``'s results.json (a full run's) with this
    run's, saying in it which run it comes from, and rewrite results.md from the whole: every
    other section stays as its own run wrote it."""
    path = out_dir / "results.json"
    results: dict[str, Any] = json.loads(path.read_text())
    completion["run"] = {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "bench/run.sh --only completion --merge",
        "rounds": settings.rounds,
        "source": source(),
        "speed_probe_ms": {"start": probe_at_start, "end": speed_probe()},
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    results["completion"] = completion
    # The completion case's own settings; the others' are the full run's.
    results["settings"].pop("completion_objects", None)
    results["settings"]["completion_users"] = settings.completion_users
    results["settings"]["completion_uploads_per_user"] = settings.completion_per_user
    results["settings"]["completion_concurrency"] = settings.completion_concurrency
    report.write_json(path, results)
    (out_dir / "results.md").write_text(report.markdown(results))
    return results
