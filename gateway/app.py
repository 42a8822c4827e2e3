"""Builds the ``web.Application`` from a Config: middlewares, routes, shared clients.

Everything a request needs is created here and held under AppKeys; nothing is global.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import ops
from .appkeys import (
    CLOCK,
    COMPLETION,
    CONFIG,
    IDENTITY,
    METRICS,
    REQUEST_ID,
    ROUTE_NAME,
    SIGNING_KEYS,
    STORAGE,
    TOKENS,
    UPSTREAM,
    Clock,
)
from .config import Config
from .guard import guard_middleware
from .identity import IdentityService
from .logs import RequestIds, flush_access_log, request_id_var
from .metrics import Metrics
from .problems import GatewayError
from .proxy import Proxy
from .render import PROBLEM_FIELDS, problem_response
from .signing import SigningKeys
from .storage import Storage, open_s3_client
from .tokens import TokenSealer
from .upstream import Upstream

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def utc_now() -> datetime:
    return datetime.now(UTC)


def request_id_middleware(ids: RequestIds) -> Middleware:
    """Keep a valid X-Request-ID or make one; it goes upstream, into logs and back out."""

    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = ids(request.headers.get("X-Request-ID"))
        request[REQUEST_ID] = request_id
        token = request_id_var.set(request_id)
        try:
            return await handler(request)
        finally:
            request_id_var.reset(token)

    return request_id


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render the gateway's errors once, as problem+json; count every answer."""
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except GatewayError as exc:
        _log_problem(request, exc.status, exc.reason)
        response = problem_response(exc, request.get(PROBLEM_FIELDS))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error = GatewayError(exc.reason, reason=_http_reason(exc.status))
        _log_problem(request, exc.status, error.reason)
        response = problem_response(error, None, status=exc.status, title=exc.reason)
    except Exception:
        # A bug: the traceback goes to the log with the request id, never to the client.
        log.exception("unhandled_error", extra={"path": request.path})
        response = problem_response(
            GatewayError("the gateway failed; the request id names it in the logs"),
            request.get(PROBLEM_FIELDS),
        )
    metrics.count_request(request.get(ROUTE_NAME, "proxy"), response.status)
    return response


def _log_problem(request: web.Request, status: int, reason: str) -> None:
    """One line per refusal (info) or failure (warning), with its reason, beside the access line."""
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "request_refused" if status < 500 else "request_failed",
        extra={
            "reason": reason,
            "status": status,
            "path": request.path,
            "route": request.get(ROUTE_NAME, "proxy"),
        },
    )


def _http_reason(status: int) -> str:
    return {
        404: "not-found",
        405: "method-not-allowed",
        413: "too-large",
    }.get(status, f"http-{status}")


async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    if REQUEST_ID in request:
        response.headers["X-Request-ID"] = request[REQUEST_ID]
    await request.app[IDENTITY].on_prepare(request, response)


async def _flush_logs(app: web.Application) -> None:
    """Write the batched access lines: a ``--workers`` child exits without running atexit."""
    flush_access_log()


def _adapter(protocol: str) -> Callable[[web.Application, Any], None]:
    """The ``add_routes`` of a protocol's adapter module (imported only when a route uses it)."""
    module = importlib.import_module(f"gateway.protocols.{protocol}")
    add_routes: Callable[[web.Application, Any], None] = module.add_routes
    return add_routes


def create_app(
    config: Config, *, clock: Clock | None = None, metrics: Metrics | None = None
) -> web.Application:
    """The gateway for one config. ``clock`` lets tests fix time; default is the UTC wall clock.

    ``metrics``: where it counts; ``serve --workers`` passes one shared by its workers.
    """
    app = web.Application(
        middlewares=[
            request_id_middleware(RequestIds()),
            problem_middleware,
            guard_middleware(config.limits),
        ]
    )
    app[CONFIG] = config
    app[CLOCK] = clock or utc_now
    app[METRICS] = metrics or Metrics()
    app[IDENTITY] = IdentityService(config)
    app[SIGNING_KEYS] = SigningKeys(config.s3.secret_access_key.get_secret_value())
    app[TOKENS] = TokenSealer([k.get_secret_value() for k in config.session.keys])
    app.cleanup_ctx.append(_clients)
    app.on_response_prepare.append(_on_prepare)
    app.on_cleanup.append(_flush_logs)

    ops.add_routes(app, config.ops_prefix)
    for route in config.routes:
        _adapter(route.protocol)(app, route)
    proxy = Proxy(app, reserved=tuple(r.forward for r in config.routes))
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return app


async def _clients(app: web.Application) -> AsyncIterator[None]:
    """Open the upstream pool and the S3 client for the app's lifetime, and close them after."""
    from .completion import Completion

    config = app[CONFIG]
    async with AsyncExitStack() as stack:
        # No aiohttp TraceConfig: it makes a Trace and fires every client signal per request
        # (bench/PROFILE.md, ~10 % of a proxied request's CPU); the proxy times its own calls.
        app[UPSTREAM] = await stack.enter_async_context(
            Upstream.open(config.upstream, observe=app[METRICS].observe_upstream)
        )
        client = await stack.enter_async_context(open_s3_client(config.s3))
        app[STORAGE] = Storage(
            client,
            uploads_bucket=config.s3.uploads_bucket,
            storage_bucket=config.s3.storage_bucket,
        )
        app[COMPLETION] = Completion.from_app(app)
        yield
