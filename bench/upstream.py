"""The bench's upstream app (aiohttp, uvloop): fixed bodies, a login header, a byte sink and a
byte source for the streaming case, and the completion webhook.

Run as ``python -m bench.upstream --port N``. It is the upstream of every case when nginx is
missing, and of the streaming and completion cases always.
"""

from __future__ import annotations

import argparse
import asyncio
import re

from aiohttp import web

ONE_KIB = b"x" * 1024
SIXTY_FOUR_KIB = b"y" * (64 * 1024)
_CHUNK = b"z" * (256 * 1024)
LOGIN_USER = "bench"
# ``/login?user=NAME`` logs in another user: the completion case needs several.
_USER = re.compile(r"[a-z0-9-]{1,64}")


async def one_kib(request: web.Request) -> web.Response:
    return web.Response(body=ONE_KIB, content_type="application/octet-stream")


async def sixty_four_kib(request: web.Request) -> web.Response:
    return web.Response(body=SIXTY_FOUR_KIB, content_type="application/octet-stream")


async def login(request: web.Request) -> web.Response:
    """Logs the caller in for the gateway, as an app does with ``X-Upload-User``: as ``bench``,
    or as the ``user`` the query names."""
    user = request.query.get("user", LOGIN_USER)
    if not _USER.fullmatch(user):
        raise web.HTTPBadRequest(text="user: a-z, 0-9 and -, at most 64\n")
    return web.Response(text="logged in\n", headers={"X-Upload-User": user})


async def sink(request: web.Request) -> web.Response:
    """Reads a body of any size to the end and answers how many bytes arrived."""
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
    return web.json_response({"size": size})


async def source(request: web.Request) -> web.StreamResponse:
    """Sends ``?size=`` bytes with a Content-Length, in 256 KiB writes."""
    size = int(request.query.get("size", "0"))
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    response.content_length = size
    await response.prepare(request)
    remaining = size
    while remaining > 0:
        piece = _CHUNK if remaining >= len(_CHUNK) else _CHUNK[:remaining]
        await response.write(piece)
        remaining -= len(piece)
    await response.write_eof()
    return response


async def completion(request: web.Request) -> web.Response:
    """The completion webhook: accepts every message (the gateway signed it; not checked here)."""
    body = await request.read()
    return web.json_response({"stored": True, "bytes": len(body)})


def make_app() -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get("/1k", one_kib)
    app.router.add_get("/64k", sixty_four_kib)
    app.router.add_get("/login", login)
    app.router.add_post("/sink", sink)
    app.router.add_get("/stream", source)
    app.router.add_post("/internal/{tail:.*}", completion)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(make_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
