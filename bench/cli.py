"""``python -m bench``: start every server on loopback, run each case in alternating rounds,
stop everything, and write results.json, results.md and the plot.

``--quick`` is a smoke run (short runs, 64 MiB bodies) whose results go to bench/out/ so they
never replace a full run's. ``--profile`` instead samples the gateway with py-spy under the
passthrough, signing and streaming loads and writes the summaries to bench/out/.
``--only completion --merge`` reruns the completion case alone and replaces its section of
bench/results.json and results.md, which then say which run it comes from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench import documents, inprocess, load, procs, profiling, report, results
from bench import gateway_server as gw
from bench.cases import build_cases, run_load
from bench.phases import run_completion, run_streaming
from bench.servers import Env, log, start_base, start_proxies
from bench.settings import BENCH_DIR, OUT_DIR, ROOT, WRK_THREADS, make_settings


@contextlib.contextmanager
def environment() -> Iterator[Env]:
    """A private work directory and the log directory; everything is stopped on the way out."""
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
    parser.add_argument(
        "--merge",
        action="store_true",
        help="with --only completion: replace the completion section of bench/results.json "
        "and results.md (or --out's), keeping every other section of the full run",
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
    if args.merge and (parts != {"completion"} or settings.quick or args.profile):
        print("bench: --merge goes with --only completion alone, not --quick", file=sys.stderr)
        return 2
    partial = (bool(args.only) or settings.quick) and not args.merge
    out_dir = args.out or (OUT_DIR if partial else BENCH_DIR)
    plot_path = (out_dir / "bench.png") if (partial or args.out) else ROOT / "docs" / "bench.png"
    generator_name = load.generator()
    if generator_name == "wrk":
        generator_name = f"{results.machine()['wrk'].split(' [')[0]}, {WRK_THREADS} thread"
    else:
        generator_name = "bench/loadgen.py (aiohttp; wrk not installed)"
    started = time.monotonic()
    probe_at_start = results.speed_probe()
    with environment() as env:
        log(f"starting servers (work dir {env.workdir}, logs in {env.logs})")
        start_base(env)
        if args.profile:
            profiling.run_profile(env, settings, args.native)
            return 0
        cases: list[report.CaseResult] = []
        if "load" in parts:
            start_proxies(env)
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
    if args.merge and completion is not None:
        results.merge_completion(out_dir, completion, settings, probe_at_start)
        log(f"done in {time.monotonic() - started:.0f} s: completion in {out_dir / 'results.md'}")
        return 0
    written = results.write_results(
        out_dir,
        plot_path,
        settings,
        cases,
        inproc,
        stream,
        completion,
        env.notes,
        generator_name,
        probe_at_start,
    )
    log(f"done in {time.monotonic() - started:.0f} s: {out_dir / 'results.md'}")
    print(json.dumps({"ratios": written["ratios"]}, indent=2))
    return 0
