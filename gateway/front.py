"""What every request meets first: the request id, request hygiene, problem+json and the count.

``Front.around`` wraps a handler with all of it in one call, and makes the request's scope
(gateway/requestkeys.py) the handlers and logs read. The gateway's own routes reach it as the
Application's one middleware; every other request (most of an app's traffic) is sent by
``Front.dispatcher`` straight to the proxy, past aiohttp's router, match info, middleware chain
and response signal, which cost a proxied request about a fifth of its CPU (bench/PROFILE.md);
that dispatch builds on aiohttp's server internals and lives in the speed layer
(gateway/_fast/dispatch.py). Both ways run the same code, so a proxied answer is the same
whichever way it came.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from . import guard
from ._fast import dispatch
from .config import Config
from .identity import IdentityService
from .metrics import Metrics
from .problems import GatewayError
from .reasons import title_of
from .render import problem_for, problem_response
from .requestids import RequestIds, request_id_var
from .requestkeys import SCOPE, RequestScope

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerHandler = dispatch.ServerHandler


class Front:
    """One per app: what every request meets first, the gateway's own and the proxied."""

    def __init__(self, config: Config, *, metrics: Metrics, identity: IdentityService) -> None:
        self._ids = RequestIds()
        self._metrics = metrics
        self._identity = identity
        self._limits = config.limits
        # Every path below these is the Application's (its router, its catch-all proxy route);
        # compared as aiohttp's router compares them, on the decoded path with %2F kept. A
        # route's endpoints placed outside its path (a legacy page's) are among them.
        self._own = (config.ops_prefix, *(p for route in config.routes for p in route.own_paths))
        self._ops_below = config.ops_prefix + "/"
        self._application: ServerHandler | None = None

    def middleware(self) -> Middleware:
        """``around`` as the Application's middleware, for the gateway's own routes."""

        @web.middleware
        async def front(request: web.Request, handler: Handler) -> web.StreamResponse:
            # A scope already there was made by the ops listener's dispatcher.
            return await self.around(request, handler, request.get(SCOPE))

        return front

    def dispatcher(self, application: ServerHandler, proxy: Handler) -> ServerHandler:
        """The server's handler: the Application's own paths to ``application`` (aiohttp's
        handler of the app), every other request to ``proxy`` through ``around``
        (gateway/_fast/dispatch.py)."""
        self._application = application
        return dispatch.dispatcher(application, own=self._own, around=self.around, proxy=proxy)

    def ops_dispatcher(self, elsewhere: Handler) -> ServerHandler:
        """The ops listener's handler (config ``ops_listen``; after ``dispatcher``): paths under
        ``ops_prefix`` to the application, marked as come this way, every other request to
        ``elsewhere`` (a 404) through ``around``: this address proxies nothing."""
        application = self._application
        if application is None:
            raise RuntimeError("dispatcher() has not been made")
        return dispatch.ops_dispatcher(
            application, below=self._ops_below, around=self.around, elsewhere=elsewhere
        )

    async def around(
        self, request: web.Request, handler: Handler, scope: RequestScope | None = None
    ) -> web.StreamResponse:
        """Run ``handler`` with the request's scope (``scope``, or a new one) and its request
        id, behind the guard (gateway/guard.py, called inline rather than wrapped: a coroutine
        frame less for each suspension); render the gateway's errors as problem+json; finish
        and count every answer."""
        request_id = self._ids(request.headers.get("X-Request-ID"))
        if scope is None:
            scope = request[SCOPE] = RequestScope(request_id)
        else:
            scope.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            try:
                refused = guard.refusal(request)
                if refused is not None:
                    response: web.StreamResponse = refused
                else:
                    watch = guard.watch_body(request, self._limits)
                    try:
                        response = await handler(request)
                    except Exception as exc:
                        blame = guard.client_fault(request, watch, exc)
                        if blame is not None:
                            raise blame from exc
                        raise
                    finally:
                        if watch is not None:
                            watch.cancel()
            except GatewayError as exc:
                _log_problem(request, scope, exc.status, exc.reason)
                response = problem_for(request, exc)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                error = GatewayError(exc.reason, reason=_http_reason(exc.status))
                _log_problem(request, scope, exc.status, error.reason)
                # A catalogued reason keeps its one title; http-<status> gets aiohttp's phrase.
                title = None if title_of(error.reason) else exc.reason
                response = problem_response(error, None, status=exc.status, title=title)
            except Exception:
                response = _bug(request)
            if not response.prepared:
                try:
                    await self.finish(request, response)
                except Exception:
                    response = _bug(request)
                    response.headers["X-Request-ID"] = request_id
            self._metrics.count_request(scope.route_name, response.status)
            return response
        finally:
            request_id_var.reset(token)

    async def finish(self, request: web.Request, response: web.StreamResponse) -> None:
        """What every answer gets before its head is sent: the request id and what the
        identity learnt (session and prefix cookies, login/logout headers taken out)."""
        response.headers["X-Request-ID"] = request[SCOPE].request_id
        if self._identity.has_news(request, response):
            await self._identity.on_prepare(request, response)


def _bug(request: web.Request) -> web.Response:
    # The traceback goes to the log with the request id, never to the client.
    log.exception("unhandled_error", extra={"path": request.path})
    return problem_for(
        request, GatewayError("the gateway failed; the request id names it in the logs")
    )


def _log_problem(request: web.Request, scope: RequestScope, status: int, reason: str) -> None:
    """One line per refusal (info) or failure (warning), with its reason, beside the access line."""
    log.log(
        logging.WARNING if status >= 500 else logging.INFO,
        "request_refused" if status < 500 else "request_failed",
        extra={
            "reason": reason,
            "status": status,
            "path": request.path,
            "route": scope.route_name,
        },
    )


def _http_reason(status: int) -> str:
    return {
        404: "not-found",
        405: "method-not-allowed",
        413: "too-large",
    }.get(status, f"http-{status}")
