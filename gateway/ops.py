"""The gateway's own endpoints under ``ops_prefix``: liveness, readiness, metrics.

With ``ops_listen`` set, readiness and metrics answer only on that address (a request whose
scope the front's ops dispatcher marked ``ops_listener``) and are a 404 on the public one;
liveness answers on both, for load balancers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from aiohttp import web

from .metrics import CONTENT_TYPE, Metrics
from .problems import GatewayError, NotFound
from .render import Handler, route_handler
from .requestkeys import SCOPE
from .services import Services

log = logging.getLogger(__name__)

# Each dependency gets this long to answer; both are probed at once, so a probe of /-/readyz
# answers within about this time even when both are down.
READY_TIMEOUT = 2.0
# The ``route`` label of these endpoints in logs and metrics, apart from proxied traffic.
ROUTE = "ops"


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers (no dependency is asked)."""
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


class Readiness:
    """``/-/readyz`` of one app: probes arriving while a round of checks runs share its result.

    Every probe costs a request to the upstream and two to S3; sharing the round in flight
    keeps a burst of probes (or a client hammering the endpoint) from multiplying that load.
    """

    def __init__(self, services: Services) -> None:
        self._services = services
        self._round: asyncio.Future[dict[str, str]] | None = None

    async def __call__(self, request: web.Request) -> web.Response:
        """Ready: upstream and S3 both answer within a short timeout; 503 names which is down."""
        if self._round is None or self._round.done():
            self._round = asyncio.ensure_future(_probe(self._services))
        # Shielded: one waiting client that goes away must not cancel the round for the others.
        results = await asyncio.shield(self._round)
        down = [name for name, state in results.items() if state != "ok"]
        body = {"status": "not-ready" if down else "ready", "checks": results, "down": down}
        return web.json_response(body, status=503 if down else 200)


async def _probe(services: Services) -> dict[str, str]:
    """One round: both dependencies at once, each within READY_TIMEOUT; logs what is down."""
    names = ("upstream", "s3")
    states = await asyncio.gather(
        _check("upstream", services.upstream.ping(timeout=READY_TIMEOUT)),
        _check("s3", services.storage.ping()),
    )
    results = dict(zip(names, states, strict=True))
    down = [name for name in names if results[name] != "ok"]
    if down:
        log.warning(
            "not_ready",
            extra={"detail": ",".join(down), "reason": ",".join(results[n] for n in down)},
        )
    return results


class MetricsPage:
    """``/-/metrics``: Prometheus text exposition (with ``serve --workers N``, the sum over
    every worker)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, request: web.Request) -> web.Response:
        response = web.Response(body=self._metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response


async def not_found(request: web.Request) -> web.Response:
    raise NotFound("no such operations endpoint", reason="not-found")


# What the ops listener answers to any path outside ops_prefix.
elsewhere = route_handler(ROUTE)(not_found)


def _ops_listener_only(handler: Handler) -> Handler:
    """``handler`` on the ops listener, a 404 elsewhere (as if the endpoint did not exist)."""

    async def private(request: web.Request) -> web.StreamResponse:
        if not request[SCOPE].ops_listener:
            raise NotFound("no such operations endpoint", reason="not-found")
        return await handler(request)

    return private


def add_routes(
    router: web.UrlDispatcher, services: Services, prefix: str, *, separate: bool = False
) -> None:
    """The endpoints under ``prefix``; ``separate``: readyz and metrics only on the ops listener."""
    named = route_handler(ROUTE)
    private = _ops_listener_only if separate else (lambda handler: handler)
    router.add_get(prefix + "/healthz", named(healthz))
    router.add_get(prefix + "/readyz", named(private(Readiness(services))))
    router.add_get(prefix + "/metrics", named(private(MetricsPage(services.metrics))))
    router.add_route("*", prefix + "/{tail:.*}", named(not_found))
