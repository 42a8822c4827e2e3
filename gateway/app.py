"""Builds the ``web.Application`` from a Config: the front, routes, shared clients.

The services (gateway/services.py) are built here once and passed to each constructor: the
upload adapters, the ops endpoints, the sweep, the proxy, identity. Nothing is global; the app
holds what was built under one key (``GATEWAY``) for what runs it (gateway/server.py), tests
and tools.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from aiohttp import web

from . import ops
from .config import Config
from .front import Front, Handler
from .logs import flush_access_log
from .metrics import Metrics
from .protocols import ADAPTERS
from .proxy import Proxy
from .services import Services
from .storage import S3ClientFactory, open_s3_client
from .values import Clock


@dataclass(frozen=True)
class Gateway:
    """What ``create_app`` built: the services, the front that the server installs as its
    connections' handler (gateway/server.py), and the proxy the front sends every request that
    is not the gateway's own."""

    services: Services
    front: Front
    proxy: Handler


# The one app key: for the server's runner, and for tests and tools that hold only the app.
GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def _flush_logs(app: web.Application) -> None:
    """Write the batched access lines: a ``--workers`` child exits without running atexit."""
    flush_access_log()


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    metrics: Metrics | None = None,
    sweep: bool = False,
    s3_client: S3ClientFactory = open_s3_client,
) -> web.Application:
    """The gateway for one config. ``clock`` lets tests fix time; default is the UTC wall clock.

    ``metrics``: where it counts; ``serve --workers`` passes one shared by its workers.
    ``sweep``: run the completion sweep in the background (``serve`` does, when
    ``completion.sweep`` is on; gateway/completion/sweep.py).
    ``s3_client``: opens the S3 client for the app's lifetime (tests share one botocore model).
    """
    services = Services(
        config, clock=clock or utc_now, metrics=metrics or Metrics(), s3_client=s3_client
    )
    front = Front(config, metrics=services.metrics, identity=services.identity)
    app = web.Application(middlewares=[front.middleware()])
    app.cleanup_ctx.append(partial(_clients, services=services))
    if sweep and config.completion.sweep:
        app.cleanup_ctx.append(partial(_sweeping, services=services))
    app.on_cleanup.append(_flush_logs)

    ops.add_routes(
        app.router, services, config.ops_prefix, separate=config.ops_listen is not None
    )
    for route in config.routes:
        ADAPTERS[route.protocol](services, route).add_routes(app.router)
    # The message paths, and the endpoints a route placed outside its path: a legacy page's
    # paths may still be the app's old signing views, which no spelling may reach.
    reserved = tuple(
        p for r in config.routes for p in (r.forward, *r.explicit_endpoints.values())
    )
    proxy = Proxy(services, reserved=reserved, finish=front.finish)
    # The catch-all serves what the front sends to the app below its own paths, and every
    # request when the app runs without the front (aiohttp's test server).
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    app[GATEWAY] = Gateway(services, front, proxy.handle)
    return app


async def _clients(app: web.Application, *, services: Services) -> AsyncIterator[None]:
    """Open the upstream pool and the S3 client for the app's lifetime, and close them after."""
    async with services.opened():
        yield


async def _sweeping(app: web.Application, *, services: Services) -> AsyncIterator[None]:
    """Run the completion sweep while the app runs (after ``_clients`` opened S3)."""
    from .completion.sweep import Sweeper

    sweeper = Sweeper(
        services.config,
        services.storage,
        services.completion,
        services.owners,
        metrics=services.metrics,
        clock=services.clock,
    )
    task = asyncio.create_task(sweeper.run(), name="completion-sweep")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
