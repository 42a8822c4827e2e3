"""The servers of a run, started on loopback and stopped by the run's ExitStack."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import companion, completions, nginx, procs
from bench import gateway_server as gw


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
        """Stop one server early (its CPU is freed for the cases that follow)."""
        server = self.servers.pop(name, None)
        if server is not None:
            server.stop()


def log(message: str) -> None:
    """One progress line on stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


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


def start_bare_proxy(env: Env, upstream: str, name: str = "bare-aiohttp") -> procs.Server:
    """bench/bare_proxy.py in front of ``upstream``."""
    port = procs.free_port()
    return env.add(
        procs.start(
            name,
            [sys.executable, "-m", "bench.bare_proxy", "--port", str(port), "--upstream", upstream],
            url=f"http://127.0.0.1:{port}",
            logs=env.logs,
            env=procs.bench_env(),
            ready_path="/1k",
            ready_status=200,
        )
    )


def start_proxies(env: Env) -> None:
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
