"""The aiohttp internal the fast dispatcher (gateway/_fast/dispatch.py) relies on, proved on a
real server on loopback; the other internals are checked without sockets in
tests/unit/test_internals.py."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from gateway._fast.dispatch import Handler, dispatcher
from gateway.requestkeys import RequestScope


async def test_request_without_match_info_prepares_without_the_signal() -> None:
    """Past the Application, a request made by its factory is a ``web.Request`` with no match
    info, and ``_prepare_hook`` then sends no ``on_response_prepare`` (the proxied answer is
    prepared without it); the Application's own paths still get their router and signal."""
    seen: list[tuple[type, object]] = []

    async def signal(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Signal"] = "sent"

    async def own(request: web.Request) -> web.Response:
        return web.Response(text="own")

    async def proxy(request: web.Request) -> web.StreamResponse:
        seen.append((type(request), request._match_info))
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write_eof(b"proxied")
        return response

    async def around(
        request: web.Request, handler: Handler, scope: RequestScope | None
    ) -> web.StreamResponse:
        return await handler(request)

    app = web.Application()
    app.router.add_get("/own", own)
    app.on_response_prepare.append(signal)
    runner = web.AppRunner(app)
    await runner.setup()
    server = runner.server
    assert server is not None
    server.request_handler = dispatcher(
        server.request_handler, own=("/own",), around=around, proxy=proxy
    )
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{port}/elsewhere") as resp:
                assert (resp.status, await resp.text()) == (200, "proxied")
                assert "X-Signal" not in resp.headers
            async with client.get(f"http://127.0.0.1:{port}/own") as resp:
                assert (resp.status, resp.headers.get("X-Signal")) == (200, "sent")
        assert seen == [(web.Request, None)]
    finally:
        await runner.cleanup()
