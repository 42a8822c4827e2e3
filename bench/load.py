"""One bounded load run: wrk (Debian's package) when it is installed, else the bundled aiohttp
client (bench/loadgen.py). Both print the same one-line JSON summary, parsed here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MARK = "BENCH_JSON "

# wrk's Lua done() hook: one JSON line with the totals and the latency percentiles (µs).
_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"connect\":%d,\"read\":%d," ..
    "\"write\":%d,\"status\":%d,\"timeout\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f," ..
    "\"max_us\":%.1f,\"mean_us\":%.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass(frozen=True)
class Request:
    """What every connection sends, again and again."""

    url: str
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None


@dataclass
class RunResult:
    """Totals of one run; latencies in milliseconds."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def generator() -> str:
    """``wrk`` when the binary is there, else ``aiohttp`` (the bundled client)."""
    return "wrk" if shutil.which("wrk") else "aiohttp"


def _lua_string(text: str) -> str:
    """A Lua long-bracket literal of ``text``: no escaping, whatever the text holds."""
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def _wrk_script(request: Request, workdir: Path, tag: str) -> Path:
    lines = [f"wrk.method = {_lua_string(request.method)}"]
    for name, value in request.headers:
        lines.append(f"wrk.headers[ {_lua_string(name)} ] = {_lua_string(value)}")
    if request.body is not None:
        body_path = workdir / f"{tag}.body"
        body_path.write_bytes(request.body)
        lines.append(
            f'local f = assert(io.open({_lua_string(str(body_path))}, "rb"))\n'
            'wrk.body = f:read("*a")\nf:close()'
        )
    script = workdir / f"{tag}.lua"
    script.write_text("\n".join(lines) + "\n" + _DONE)
    return script


def _parse(output: str, what: str) -> RunResult:
    for line in output.splitlines():
        if line.startswith(MARK):
            data = json.loads(line[len(MARK) :])
            seconds = data["duration_us"] / 1e6
            errors = {
                k: int(data[k])
                for k in ("connect", "read", "write", "status", "timeout")
                if int(data[k])
            }
            return RunResult(
                requests=int(data["requests"]),
                seconds=seconds,
                rps=data["requests"] / seconds if seconds else 0.0,
                p50_ms=data["p50_us"] / 1000,
                p99_ms=data["p99_us"] / 1000,
                errors=errors,
            )
    raise RuntimeError(f"{what} printed no summary:\n{output[-2000:]}")


def run(
    request: Request,
    *,
    connections: int,
    duration: float,
    threads: int,
    workdir: Path,
    tag: str,
) -> RunResult:
    """Drive ``request`` with ``connections`` keep-alive connections for ``duration`` seconds."""
    if generator() == "wrk":
        script = _wrk_script(request, workdir, tag)
        argv = [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            request.url,
        ]
    else:
        argv = [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--url",
            request.url,
            "--method",
            request.method,
            "--connections",
            str(connections),
            "--duration",
            str(duration),
        ]
        for name, value in request.headers:
            argv += ["--header", f"{name}: {value}"]
        if request.body is not None:
            body_path = workdir / f"{tag}.body"
            body_path.write_bytes(request.body)
            argv += ["--body-file", str(body_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return _parse(done.stdout, argv[0])
