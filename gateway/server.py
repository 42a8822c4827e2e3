"""Running the app: one process, or several sharing the port with SO_REUSEPORT."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import sys
from typing import Any

from aiohttp import web

from .app import create_app
from .config import Config
from .logs import AccessLogger, configure

log = logging.getLogger(__name__)


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on platforms without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def runner_options(config: Config) -> dict[str, Any]:
    """The keyword arguments ``web.run_app`` (or a ``web.AppRunner``) gets for this config."""
    limits = config.limits
    return {
        "access_log_class": AccessLogger,
        # aiohttp closes a connection whose head is incomplete when this runs out, counted from
        # connect or from the previous answer: nginx's client_header_timeout and
        # keepalive_timeout in one. Slow bodies are the guard middleware's (gateway/guard.py).
        "keepalive_timeout": limits.header_timeout,
        "max_line_size": limits.max_line_size,
        "max_field_size": limits.max_field_size,
        "max_headers": limits.max_headers,
        # A handler runs to its end when its client leaves, so a completion is never cut halfway.
        "handler_cancellation": False,
    }


def _run_one(config: Config, host: str, port: int, reuse_port: bool) -> None:
    configure()
    _install_uvloop()
    log.info("gateway_listening", extra={"path": f"http://{host}:{port}"})
    web.run_app(
        create_app(config),
        host=host,
        port=port,
        reuse_port=reuse_port,
        print=None,
        **runner_options(config),
    )


def serve(config: Config, *, host: str | None, port: int | None, workers: int = 1) -> int:
    """Serve until SIGINT/SIGTERM; with workers > 1, that many processes share the port."""
    host = host or config.listen.host
    port = config.listen.port if port is None else port
    if workers <= 1:
        _run_one(config, host, port, reuse_port=False)
        return 0
    if not hasattr(socket, "SO_REUSEPORT"):
        print("error: --workers needs SO_REUSEPORT (Linux, BSD)", file=sys.stderr)
        return 2
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_run_one, args=(config, host, port, True), daemon=False)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()

    def _stop(signum: int, frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for proc in procs:
        proc.join()
    return 0 if all(p.exitcode in (0, -signal.SIGTERM) for p in procs) else 1
