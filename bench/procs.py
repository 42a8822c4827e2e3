"""Starting, watching and stopping the servers a benchmark run needs, all on loopback.

Every process is started by the bench and stopped by its own pid (SIGTERM, then SIGKILL);
readiness is polled, never slept for. Memory is read from /proc: VmRSS of the whole process
tree, and VmHWM (the kernel's peak) after resetting it through ``clear_refs``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
MIB = 1024 * 1024


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Server:
    """A server process the bench started: its name, base URL and log file."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, size: int = 3000) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-size:]

    def pids(self) -> list[int]:
        """This process and all its descendants (workers of nginx or ``serve --workers``)."""
        return tree_pids(self.pid)

    def rss(self) -> int:
        """Resident memory of the whole tree, bytes."""
        return sum(_status_kib(pid, "VmRSS") for pid in self.pids()) * 1024

    def reset_peak(self) -> bool:
        """Reset each process's VmHWM to its current RSS; False where the kernel refuses."""
        ok = True
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                ok = False
        return ok

    def peak(self) -> int:
        """Sum of the tree's VmHWM, bytes (exact for one process, an upper bound for several)."""
        return sum(_status_kib(pid, "VmHWM") for pid in self.pids()) * 1024

    def stop(self) -> None:
        """SIGTERM (graceful), then SIGKILL if it lingers; by pid only."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                for pid in reversed(self.pids()):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)


def _status_kib(pid: int, field_name: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def tree_pids(root: int) -> list[int]:
    """``root`` and its descendants, parents first, from /proc/<pid>/task/*/children."""
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop(0)
        out.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            todo.extend(int(c) for c in children)
    return out


class PeakSampler:
    """Samples a server's tree RSS from a thread; for kernels without a resettable VmHWM."""

    def __init__(self, server: Server, interval: float = 0.05) -> None:
        self.server = server
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, self.server.rss())


@contextlib.contextmanager
def measure_peak(server: Server) -> Iterator[list[int]]:
    """Yields a one-item list that holds the tree's peak RSS (bytes) once the block ends."""
    result = [0]
    exact = server.reset_peak()
    with PeakSampler(server, interval=0.1) as sampler:
        yield result
    result[0] = max(sampler.peak, server.peak() if exact else 0)


def start(
    name: str,
    argv: Sequence[str],
    *,
    url: str,
    logs: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_path: str = "/",
    ready_status: int | None = None,
) -> Server:
    """Start ``argv`` with output to ``logs/<name>.log`` and poll ``url + ready_path``."""
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    server = Server(name, proc, url, log_path)
    try:
        wait_http(server, ready_path, ready_status)
    except BaseException:
        server.stop()
        raise
    return server


def wait_http(server: Server, path: str, status: int | None) -> None:
    """Poll until ``path`` answers (with ``status`` when given); fail fast if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT
    host, port = host_port(server.url)
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}"
            )
        try:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            conn.request("GET", path)
            answered = conn.getresponse().status
            conn.close()
            if status is None or answered == status:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} not ready in {START_TIMEOUT}s:\n{server.log_tail()}")
        time.sleep(0.05)


def host_port(url: str) -> tuple[str, int]:
    """The host and port of an ``http://host:port`` URL."""
    authority = url.split("://", 1)[1].split("/", 1)[0]
    host, _, port = authority.rpartition(":")
    return host, int(port)


def bench_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: no AWS credentials or metadata lookups leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env
