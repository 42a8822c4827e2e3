"""The gateway's own endpoints under ``ops_prefix``: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aiohttp import web

from .appkeys import METRICS, STORAGE, UPSTREAM
from .metrics import CONTENT_TYPE
from .problems import GatewayError, NotFound

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def _check(name: str, check: Awaitable[None]) -> str:
    """``ok``, or a short reason why one dependency is not ready."""
    try:
        await asyncio.wait_for(check, READY_TIMEOUT)
    except GatewayError as exc:
        return exc.reason
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        # A readiness probe reports any failure as "not ready"; the cause goes to the log.
        log.warning("ready_check_failed", extra={"detail": name, "error": type(exc).__name__})
        return "unreachable"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    """Ready: the upstream and S3 both answer within a short timeout; 503 names which is down."""
    names = ("upstream", "s3")
    # Both probed at once, so a dead dependency costs READY_TIMEOUT once, not once each.
    states = await asyncio.gather(
        _check("upstream", request.app[UPSTREAM].ping()),
        _check("s3", request.app[STORAGE].ping()),
    )
    results = dict(zip(names, states, strict=True))
    down = [name for name, state in results.items() if state != "ok"]
    status = 503 if down else 200
    body = {"status": "ready" if not down else "not-ready", "checks": results, "down": down}
    return web.json_response(body, status=status)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = request.app[METRICS].render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


async def not_found(request: web.Request) -> web.Response:
    raise NotFound("no such operations endpoint", reason="not-found")


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(prefix + "/healthz", healthz)
    app.router.add_get(prefix + "/readyz", readyz)
    app.router.add_get(prefix + "/metrics", metrics)
    app.router.add_route("*", prefix + "/{tail:.*}", not_found)
