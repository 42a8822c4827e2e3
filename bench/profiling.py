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
