"""The server's handlers: most requests straight to the proxy, past the Application.

aiohttp hands every request to the server's ``request_handler``, which for an ``AppRunner`` is
the Application's own handler (its router, match info, middleware chain and response signal).
The proxied requests, most of an app's traffic, need none of it; these handlers send them to
the front's ``around`` directly, and the rest to the Application. They rely on the Application's
request factory (the server's, also given to the ops listener's) making ``web.Request`` objects,
and on such a request answering without match info (its ``_prepare_hook`` sends no signal then):
the proxy never reads ``request.app`` or ``match_info``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from ..requestkeys import SCOPE, RequestScope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ServerHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
# The front's ``around(request, handler, scope)``.
Around = Callable[[web.Request, Handler, RequestScope | None], Awaitable[web.StreamResponse]]


def dispatcher(
    application: ServerHandler, *, own: tuple[str, ...], around: Around, proxy: Handler
) -> ServerHandler:
    """Paths under ``own`` (compared as aiohttp's router compares them, on the decoded path with
    %2F kept) to ``application``, every other request to ``proxy`` through ``around``."""

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        if request.rel_url.path_safe.startswith(own) or "Expect" in request.headers:
            # The app's handler also answers Expect (100-continue or 417) before its route
            # runs; such requests are rare enough to take the long way.
            return await application(request)
        # The app's request factory made it, so it is a web.Request (without match info).
        return await around(cast(web.Request, request), proxy, None)

    return dispatch


def ops_dispatcher(
    application: ServerHandler, *, below: str, around: Around, elsewhere: Handler
) -> ServerHandler:
    """The ops listener's: every request's scope marked as come this way, paths under ``below``
    to ``application``, every other request to ``elsewhere`` through ``around``."""

    async def dispatch(request: web.BaseRequest) -> web.StreamResponse:
        # The front sets the request id when it runs (the Application's middleware, or below).
        scope = request[SCOPE] = RequestScope("", ops_listener=True)
        if request.rel_url.path_safe.startswith(below):
            return await application(request)
        return await around(cast(web.Request, request), elsewhere, scope)

    return dispatch
