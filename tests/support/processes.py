"""Run the gateway as it runs in production: in-process with server.py's runner settings, or as
a real ``python -m gateway serve`` subprocess for tests that measure the process.

Secrets go through the environment (``${VAR}`` in the written YAML), as in production. The
process is polled on ``/-/healthz`` until it answers and stopped by its pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.app import GATEWAY
from gateway.config import Config
from gateway.server import runner_options, start_ops_runner, start_runner
from tests.support.gateway import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    SESSION_KEY,
    SettableClock,
    config_dict,
    gateway_app,
    release_apps,
)
from tests.support.upstream import WEBHOOK_SECRET

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

SECRET_ENV = {
    "GATEWAY_SESSION_KEY": SESSION_KEY,
    "GATEWAY_S3_SECRET": SECRET_ACCESS_KEY,
    "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
}


@dataclass
class Served:
    """Base URLs of a gateway served in process: its port, and its ops listener's if any."""

    url: str
    ops_url: str | None


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[Served]:
    """Serve ``app`` on a loopback port as gateway/server.py does (``start_runner``: the front
    in place, ``runner_options`` of the app's config), and its ops listener on the configured
    ``ops_listen`` port (0: any free one) when set. aiohttp's TestServer cancels a handler when
    its client leaves (handler_cancellation=True), which the gateway in production never does,
    and has no front."""
    config = app[GATEWAY].services.config
    options = runner_options(config)
    runner = await start_runner(app, **options)
    ops_runner: web.ServerRunner | None = None
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ops_url = None
        if config.ops_listen is not None:
            ops_runner = await start_ops_runner(runner, **options)
            await web.TCPSite(ops_runner, "127.0.0.1", config.ops_listen.port).start()
            ops_url = f"http://127.0.0.1:{ops_runner.addresses[0][1]}"
        yield Served(f"http://127.0.0.1:{runner.addresses[0][1]}", ops_url)
    finally:
        if ops_runner is not None:
            await ops_runner.cleanup()
        await runner.cleanup()
        release_apps()


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """``serving``'s base URL alone."""
    async with serving(app) as urls:
        yield urls.url


class GatewayServer(TestServer):
    """A gateway app ``serving`` serves as production does, behind aiohttp's test-server
    interface (``make_url``, ``app``, a ``TestClient`` from ``aiohttp_client(server)``).

    aiohttp's own TestServer would cancel a handler whose client leaves and skip the front
    (gateway/front.py) and the parser refusals of gateway/server.py: not what users meet."""

    def __init__(self, app: web.Application) -> None:
        super().__init__(app, host="127.0.0.1")
        self._stack = contextlib.AsyncExitStack()

    async def start_server(self, loop: Any = None, **kwargs: Any) -> None:
        if self._root is not None or self.closed:
            return
        urls = await self._stack.enter_async_context(serving(self.app))
        url = URL(urls.url)
        self.port = url.port
        self.scheme = url.scheme
        self._root = url

    async def _make_runner(self, **kwargs: Any) -> web.BaseRunner:  # pragma: no cover
        raise NotImplementedError("GatewayServer serves through tests.support.processes.serving")

    @property
    def started(self) -> bool:
        return self._root is not None

    async def close(self) -> None:
        if not self.closed:
            self._closed = True
            self._root = None
            await self._stack.aclose()


ServeGateway = Callable[..., Awaitable[GatewayServer]]


@pytest.fixture
async def serve_gateway() -> AsyncIterator[ServeGateway]:
    """``await serve_gateway(config, clock=...)``: the gateway for ``config`` on a loopback port,
    served as production serves it (``GatewayServer``), stopped after the test."""
    servers: list[GatewayServer] = []

    async def serve(config: Config, *, clock: SettableClock | None = None) -> GatewayServer:
        server = GatewayServer(gateway_app(config, clock=clock))
        servers.append(server)
        await server.start_server()
        return server

    yield serve
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def gateway_server(
    serve_gateway: ServeGateway, make_config: Callable[..., Config], clock: SettableClock
) -> GatewayServer:
    """The gateway with the default test config (S3 unreachable), on a loopback port."""
    return await serve_gateway(make_config(), clock=clock)


StartGateway = Callable[..., Awaitable[str]]


@pytest.fixture
async def start_gateway(
    make_config: Callable[..., Config], clock: SettableClock
) -> AsyncIterator[StartGateway]:
    """``await start_gateway(**config_overrides)``: the gateway's base URL on a real port,
    served with production's runner options."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> str:
            app = gateway_app(make_config(**overrides), clock=clock)
            return await stack.enter_async_context(served(app))

        yield start


@pytest.fixture
async def gw(start_gateway: StartGateway) -> str:
    """The gateway with the default test config."""
    return await start_gateway()


def free_port() -> int:
    """A port nothing listens on right now (the gateway binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux) or psutil elsewhere."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    import psutil  # type: ignore[import-untyped]

    return int(psutil.Process(pid).memory_info().rss)


class RssSampler:
    """Samples a process's RSS from a thread (independent of the test's busy event loop)."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (OSError, ValueError):
                return
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class GatewayProcess:
    """A running gateway subprocess: its pid, base URL and log file."""

    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (aiohttp shuts down gracefully), then SIGKILL if it lingers; by pid only."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)


def subprocess_config(tree: dict[str, Any]) -> dict[str, Any]:
    """The config tree with its secrets replaced by ``${VAR}`` references to SECRET_ENV."""
    out = dict(tree)
    out["session"] = {**tree["session"], "keys": ["${GATEWAY_SESSION_KEY}"]}
    out["s3"] = {
        **tree["s3"],
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": "${GATEWAY_S3_SECRET}",
    }
    out["webhook"] = {**tree["webhook"], "secret": "${GATEWAY_WEBHOOK_SECRET}"}
    return out


def _merged(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    env.update(SECRET_ENV)
    env.update(extra or {})
    return env


async def start_gateway_process(
    tree: dict[str, Any],
    workdir: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> GatewayProcess:
    """Write ``tree`` as YAML, run ``python -m gateway serve`` on a free port, await healthz.

    ``workers``: passed as ``--workers``; ``env``: added to the process's environment."""
    config_path = workdir / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(subprocess_config(tree), sort_keys=False))
    port = free_port()
    log_path = workdir / "gateway.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "-c",
                str(config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(env),
        )
    gateway = GatewayProcess(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        await _wait_healthy(gateway)
    except BaseException:
        gateway.stop()
        raise
    return gateway


async def _wait_healthy(gateway: GatewayProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            if gateway.proc.poll() is not None:
                raise RuntimeError(
                    f"gateway exited with {gateway.proc.returncode}:\n{gateway.log()[-4000:]}"
                )
            try:
                async with session.get(gateway.url + "/-/healthz") as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not healthy in {START_TIMEOUT}s:\n{gateway.log()}")
            await asyncio.sleep(0.05)


StartProcess = Callable[..., Awaitable[GatewayProcess]]


@pytest.fixture
async def gateway_process(tmp_path: Path, upstream_url: str) -> AsyncIterator[StartProcess]:
    """``await gateway_process(**config_overrides)``: a gateway subprocess at the test upstream
    (no upload routes unless given); every one started is stopped after the test.
    ``workers=`` and ``env=`` (keyword-only) go to ``start_gateway_process``."""
    started: list[GatewayProcess] = []

    async def start(
        *, workers: int = 1, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> GatewayProcess:
        tree = _merged({**config_dict(upstream_url), "routes": []}, overrides)
        workdir = tmp_path / f"gateway-{len(started)}"
        workdir.mkdir()
        gateway = await start_gateway_process(tree, workdir, workers=workers, env=env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
