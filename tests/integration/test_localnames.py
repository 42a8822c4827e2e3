"""The ``upload`` client's resolver on a real connection: a ``<bucket>.localhost`` URL reaches a
server on loopback with the bucket's name in its Host header.

The resolver's answers alone: tests/unit/test_localnames.py."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from gateway.localnames import LocalhostResolver


async def test_a_bucket_host_under_localhost_is_reached_on_loopback(aiohttp_server: Any) -> None:
    """A request to http://<bucket>.localhost:<port>/ reaches a server on 127.0.0.1, with the
    bucket's name in its Host header, as a virtual-host S3 needs."""

    async def host(request: web.Request) -> web.Response:
        return web.Response(text=request.host)

    app = web.Application()
    app.router.add_get("/", host)
    server = await aiohttp_server(app, host="127.0.0.1")
    connector = aiohttp.TCPConnector(resolver=LocalhostResolver())
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://demo-uploads.localhost:{server.port}/") as answer,
    ):
        assert answer.status == 200
        assert await answer.text() == f"demo-uploads.localhost:{server.port}"
