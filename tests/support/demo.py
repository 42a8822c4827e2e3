"""``python -m gateway demo`` as a real subprocess: started on a free port, polled until ready,
its banner read, stopped by its pid."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        """What the demo wrote to stderr (only what stopped it: the JSON log has a file)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def json_log(self) -> list[dict[str, Any]]:
        """The lines of the JSON log file the banner names."""
        path = Path(self.banner_value("log"))
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def banner_value(self, label: str) -> str:
        """The first word after ``label`` on its banner line."""
        for line in self.lines:
            match = re.match(rf"\s+{re.escape(label)}\s+(\S+)", line)
            if match:
                return match.group(1)
        raise AssertionError(f"no {label!r} line in the banner:\n{self.stdout()}")

    def upload_command(self) -> list[str]:
        """The ``upload`` command the banner prints, as an argument list."""
        for index, line in enumerate(self.lines):
            if "from a terminal" in line:
                return shlex.split(self.lines[index + 1])
        raise AssertionError(f"no upload command in the banner:\n{self.stdout()}")

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


# The installation's scripts, where scripts/demo.sh runs ``upload-gateway demo`` from.
SCRIPTS = Path(sys.executable).parent


def demo_command() -> list[str]:
    """``upload-gateway demo`` as scripts/demo.sh runs it (``python -m gateway`` without it)."""
    script = SCRIPTS / "upload-gateway"
    return [str(script), "demo"] if script.is_file() else [sys.executable, "-m", "gateway", "demo"]


def demo_environment(tmp: Path | None = None) -> dict[str, str]:
    """The test's environment without AWS settings: the demo needs none. The installation's
    scripts are on PATH, as in an activated virtualenv (so the upload command the demo prints
    is ``upload-gateway``). With ``tmp``, the demo's temporary files (its JSON log) go there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = os.pathsep.join([str(SCRIPTS), env.get("PATH", "")])
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
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
            [*demo_command(), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=workdir,
            env=demo_environment(workdir),
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
