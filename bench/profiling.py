"""Profiles the gateway process under load with py-spy (sampling, attached by pid) and sums the
stacks into self and inclusive shares per function.

Shares are of the samples in which the gateway was running Python (idle samples, waiting in
epoll, are dropped by py-spy), so at saturation they are shares of its CPU time.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench import gateway_server as gw
from bench import load, procs, report, streaming
from bench.cases import build_cases
from bench.servers import (
    Env,
    log,
    passthrough_upstream,
    start_bare_proxy,
    start_gateway,
    stream_gateway,
)
from bench.settings import OUT_DIR, WRK_THREADS, Settings


def py_spy() -> str | None:
    """The py-spy binary next to this Python, or on PATH."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(
    binary: str, pid: int, seconds: int, output: Path, *, native: bool
) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for ``seconds`` into ``output`` (collapsed stacks); returns the
    py-spy process to wait for."""
    argv = [binary, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
    argv += ["--format", "raw", "--output", str(output), "--function"]
    if native:
        argv.append("--native")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _frame_name(frame: str) -> str:
    """``handle (gateway/proxy.py:48)`` -> ``gateway/proxy.py:handle`` (line dropped: py-spy's
    --function already gives the function's first line)."""
    name, _, where = frame.rpartition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{path}:{name}" if name else frame


def summarise(raw: Path, top: int = 40) -> str:
    """A text report: the functions with the largest self and inclusive shares."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if not total:
        return "no samples\n"
    out = [f"{total} samples (non-idle)", "", "== inclusive (function and what it calls) =="]
    out += [f"{n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    out += ["", "== self (time in the function's own code) =="]
    out += [f"{n / total:6.1%}  {name}" for name, n in self_time.most_common(top)]
    return "\n".join(out) + "\n"


def run_profile(env: Env, settings: Settings, native: bool) -> None:
    """py-spy on the one-worker gateway (and the bare proxy, for the floor) under passthrough
    (1 KiB, 64 connections), policy signing, and streaming."""
    binary = py_spy()
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
        spy = record(binary, case.server.pid, seconds, raw, native=native)
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
        summary = summarise(raw)
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
        spy = record(binary, gateway.pid, seconds, raw, native=native)
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
        (OUT_DIR / f"profile-{direction}.txt").write_text(header + summarise(raw))
        log(f"profile {direction}: -> bench/out/profile-{direction}.txt")
