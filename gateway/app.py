"""Builds the ``web.Application`` from a Config: the front, routes, shared clients.

Everything a request needs is created here and held under AppKeys; nothing is global.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from functools import partial

from aiohttp import web

from . import ops
from .appkeys import (
    CLOCK,
    COMPLETION,
    CONFIG,
    FRONT,
    IDENTITY,
    METRICS,
    OWNERS,
    SIGNING_KEYS,
    STORAGE,
    TOKENS,
    UPSTREAM,
    Clock,
)
from .completion.owners import OwnerBook
from .config import Config
from .front import Front
from .identity import IdentityService
from .logs import flush_access_log
from .metrics import Metrics
from .protocols import ADAPTERS
from .proxy import Proxy
from .signing import SigningKeys
from .storage import S3ClientFactory, Storage, open_s3_client
from .tokens import TokenSealer
from .upstream import Upstream


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
    clock = clock or utc_now
    metrics = metrics or Metrics()
    identity = IdentityService(config, clock=clock)
    front = Front(config, metrics=metrics, identity=identity)
    app = web.Application(middlewares=[front.middleware()])
    app[CONFIG] = config
    app[CLOCK] = clock
    app[METRICS] = metrics
    app[IDENTITY] = identity
    app[FRONT] = front
    app[SIGNING_KEYS] = SigningKeys(config.s3.secret_access_key.get_secret_value())
    app[TOKENS] = TokenSealer([k.get_secret_value() for k in config.session.keys])
    app[OWNERS] = OwnerBook([k.get_secret_value() for k in config.session.keys])
    app.cleanup_ctx.append(partial(_clients, s3_client=s3_client))
    if sweep and config.completion.sweep:
        app.cleanup_ctx.append(_sweeping)
    app.on_cleanup.append(_flush_logs)

    ops.add_routes(app, config.ops_prefix, separate=config.ops_listen is not None)
    for route in config.routes:
        ADAPTERS[route.protocol](app, route)
    # The forward paths, and the endpoints a route placed outside its path: a legacy page's
    # paths may still be the app's old signing views, which no spelling may reach.
    reserved = tuple(
        p for r in config.routes for p in (r.forward, *r.explicit_endpoints.values())
    )
    proxy = Proxy(app, reserved=reserved, finish=front.finish)
    # The catch-all serves what the front sends to the app below its own paths, and every
    # request when the app runs without the front (aiohttp's test server).
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    front.proxy = proxy.handle
    return app


async def _clients(app: web.Application, *, s3_client: S3ClientFactory) -> AsyncIterator[None]:
    """Open the upstream pool and the S3 client for the app's lifetime, and close them after."""
    from .completion import Completion

    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        # No aiohttp TraceConfig: it makes a Trace and fires every client signal per request,
        # a cost bench/PROFILE.md measures; the proxy times its own calls.
        app[UPSTREAM] = await stack.enter_async_context(
            Upstream.open(config.upstream, observe=app[METRICS].observe_upstream)
        )
        client = await stack.enter_async_context(s3_client(config.s3))
        app[STORAGE] = Storage(
            client,
            uploads_bucket=config.s3.uploads_bucket,
            storage_bucket=config.s3.storage_bucket,
        )
        app[COMPLETION] = Completion.from_app(app)
        yield


async def _sweeping(app: web.Application) -> AsyncIterator[None]:
    """Run the completion sweep while the app runs (after ``_clients`` opened S3)."""
    from .completion.sweep import Sweeper

    sweeper = Sweeper(
        app[CONFIG],
        app[STORAGE],
        app[COMPLETION],
        app[OWNERS],
        metrics=app[METRICS],
        clock=app[CLOCK],
    )
    task = asyncio.create_task(sweeper.run(), name="completion-sweep")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
