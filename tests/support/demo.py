"""``python -m gateway demo`` as a real subprocess: started on a free port, polled until ready,
its banner read, stopped by its pid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.processes import free_port

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


@dataclass
class DemoProcess:
    """A running demo: its process, the gateway's port, and what it printed."""

    proc: subprocess.Popen[str]
    port: int
    log_path: Path
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The gateway's URL on 127.0.0.1 (also a public origin of the demo)."""
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return "\n".join(self.lines)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def banner(self, label: str) -> str:
        """The URL the banner prints after ``label`` (``demo app``, ``S3``)."""
        for line in self.lines:
            match = re.match(rf"\s+{re.escape(label)}\s+(http://\S+)", line)
            if match:
                return match.group(1).rstrip("/")
        raise AssertionError(f"no {label!r} line in the banner:\n{self.stdout()}")

    def stop(self, signum: int = signal.SIGINT) -> int:
        """Send ``signum`` by pid and wait; SIGKILL only if it lingers (then the test fails)."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signum)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
                raise
        return self.proc.returncode


def demo_environment() -> dict[str, str]:
    """The test's environment without AWS settings: the demo needs none."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _read(proc: subprocess.Popen[str], lines: list[str]) -> None:
    """Every line the demo prints, until it exits; then the pipe is closed (left open, it is a
    ResourceWarning whenever the collector reaches it, in whichever test runs then)."""
    assert proc.stdout is not None
    with proc.stdout:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))


def start_demo(workdir: Path, *, port: int | None = None) -> DemoProcess:
    """Run the demo from ``workdir`` and wait until the gateway and the app both answer."""
    port = free_port() if port is None else port
    log_path = workdir / "demo.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "demo", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=workdir,
            env=demo_environment(),
        )
    demo = DemoProcess(proc, port, log_path)
    threading.Thread(target=_read, args=(proc, demo.lines), daemon=True).start()
    try:
        _wait_ready(demo)
    except BaseException:
        demo.stop(signal.SIGKILL)
        raise
    return demo


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - loopback http
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(demo: DemoProcess) -> None:
    """Poll healthz, then the sign-in page (proxied to the app), and the printed banner."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if demo.proc.poll() is not None:
            raise RuntimeError(f"demo exited with {demo.proc.returncode}:\n{demo.log()[-4000:]}")
        if (
            _answers(f"{demo.url}/-/healthz")
            and _answers(f"{demo.url}/")
            and any("Ctrl-C" in line for line in demo.lines)
        ):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"demo not ready in {START_TIMEOUT}s:\n{demo.log()[-4000:]}")
        time.sleep(0.05)
