"""A counting, timing proxy in front of moto's S3 server: shows where a completion's time goes.

Every S3 call the gateway makes is forwarded unchanged (Host kept, so signatures still match) and
counted by operation, with the time moto took. ``GET /__tap`` returns the counts and seconds;
``POST /__tap/reset`` zeroes them. Run as ``python -m bench.s3tap --port N --upstream URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length"}
)


@dataclass
class Tally:
    """Calls and seconds per S3 operation since the last reset."""

    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, op: str, seconds: float) -> None:
        self.calls[op] = self.calls.get(op, 0) + 1
        self.seconds[op] = self.seconds.get(op, 0.0) + seconds


TALLY = web.AppKey("tally", Tally)
SESSION = web.AppKey("session", aiohttp.ClientSession)
BASE = web.AppKey("base", str)


def operation(request: web.Request) -> str:
    """A short name for the S3 call: head, get, get-range, put, copy, delete, multipart, list."""
    query = request.query
    method = request.method
    if "uploads" in query or "uploadId" in query:
        return f"multipart-{method.lower()}"
    if method == "PUT" and "x-amz-copy-source" in request.headers:
        return "copy"
    if method == "GET" and request.path.count("/") <= 1:
        return "list"
    if method == "GET" and "Range" in request.headers:
        return "get-range"
    return method.lower()


async def forward(request: web.Request) -> web.StreamResponse:
    headers = CIMultiDict(
        (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
    )
    body = await request.read()
    started = time.perf_counter()
    async with request.app[SESSION].request(
        request.method,
        request.app[BASE] + request.raw_path,
        headers=headers,
        data=body,
        allow_redirects=False,
        auto_decompress=False,
        skip_auto_headers=("Content-Type",),
    ) as upstream:
        payload = await upstream.read()
        request.app[TALLY].add(operation(request), time.perf_counter() - started)
        response = web.Response(status=upstream.status, reason=upstream.reason, body=payload)
        for name, value in upstream.headers.items():
            if name.lower() not in _HOP_BY_HOP:
                response.headers.add(name, value)
        if request.method == "HEAD" and upstream.content_length is not None:
            # A HEAD answer's length is the object's size, which the gateway reads.
            response.headers["Content-Length"] = str(upstream.content_length)
        return response


async def tally(request: web.Request) -> web.Response:
    current = request.app[TALLY]
    return web.json_response({"calls": current.calls, "seconds": current.seconds})


async def reset(request: web.Request) -> web.Response:
    current = request.app[TALLY]
    current.calls.clear()
    current.seconds.clear()
    return web.json_response({"reset": True})


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[BASE] = upstream.rstrip("/")
    app[TALLY] = Tally()

    async def client(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=False
        ) as session:
            app[SESSION] = session
            yield

    app.cleanup_ctx.append(client)
    app.router.add_get("/__tap", tally)
    app.router.add_post("/__tap/reset", reset)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(
        make_app(args.upstream), host="127.0.0.1", port=args.port, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
