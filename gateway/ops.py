"""The gateway's own endpoints under ``ops_prefix``: liveness, readiness, metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .appkeys import METRICS, STORAGE, UPSTREAM
from .metrics import CONTENT_TYPE
from .problems import GatewayError, NotFound

READY_TIMEOUT = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the upstream and S3 both answer within a short timeout; 503 names which is down."""
    checks = {"upstream": request.app[UPSTREAM].ping(), "s3": request.app[STORAGE].ping()}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, READY_TIMEOUT)
            results[name] = "ok"
        except (GatewayError, asyncio.TimeoutError, OSError) as exc:
            results[name] = getattr(exc, "reason", "timeout")
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
