"""Hostile input against the whole gateway on loopback: request smuggling on raw sockets, slow
clients, stolen session cookies, path traversal, forged completion messages.

The gateway runs in this process with the server options production uses
(``gateway.server.runner_options``), so the parser, its size limits and the header timeout are
the ones ``upload-gateway serve`` has; what reached the upstream is read from the reflecting
upstream's record.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway import webhook
from gateway.buckets import BucketNames
from gateway.config import Config
from tests.support.gateway import (
    FORWARDERS,
    OTHER_SESSION_KEY,
    SettableClock,
    build_config,
    config_dict,
    gateway_app,
)
from tests.support.processes import StartProcess, serving
from tests.support.upstream import WEBHOOK_SECRET, Recorded, make_upstream_app

# Tests of what the upstream pool does with bodies and connections (streamed, cut, freed, queued)
# run under both ``upstream.forwarder`` kinds.
BOTH_FORWARDERS = pytest.mark.parametrize("forwarder_kind", FORWARDERS)

P = "/uploads/photos"
FORWARD = "/internal/uploads/photos"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256))


# --------------------------------------------------------------------------- the servers


@dataclass
class Raw:
    """A completion message as it crossed the wire: the exact body and signature header."""

    body: bytes
    signature: str


RAW = web.AppKey("raw_completions", list[Raw])


@web.middleware
async def _capture(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.path.startswith("/internal/"):
        body = await request.read()  # cached: the handler reads the same bytes
        request.app[RAW].append(Raw(body, request.headers.get(webhook.HEADER, "")))
    response: web.StreamResponse = await handler(request)
    return response


@pytest.fixture
async def upstream_server(aiohttp_server: Any) -> TestServer:
    """The reflecting upstream, also keeping each completion's raw bytes (overrides the shared
    fixture)."""
    app = make_upstream_app()
    app[RAW] = []
    app.middlewares.append(_capture)
    server: TestServer = await aiohttp_server(app)
    return server


@dataclass
class Gateway:
    url: str
    port: int
    config: Config


StartGateway = Callable[..., Awaitable[Gateway]]


@contextlib.asynccontextmanager
async def _serve(config: Config, clock: SettableClock | None) -> AsyncIterator[Gateway]:
    async with serving(gateway_app(config, clock=clock)) as urls:
        port = URL(urls.url).port
        assert port is not None
        yield Gateway(urls.url, port, config)


@pytest.fixture
async def start_gateway(upstream_url: str, forwarder_kind: str) -> AsyncIterator[StartGateway]:
    """``await start_gateway(tree_overrides..., clock=None)``: a gateway at the test upstream
    (with the test's ``upstream.forwarder`` unless ``tree`` is given)."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *, clock: SettableClock | None = None, tree: dict[str, Any] | None = None, **over: Any
        ) -> Gateway:
            if tree is None:
                tree = config_dict(upstream_url)
                tree["upstream"]["forwarder"] = forwarder_kind
            config = build_config(tree, **over)
            return await stack.enter_async_context(_serve(config, clock))

        yield start


@pytest.fixture
async def gw(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


@pytest.fixture
def raw_completions(upstream_server: TestServer) -> list[Raw]:
    return upstream_server.app[RAW]


async def exchange(port: int, data: bytes, *, wait: float = 2.0) -> tuple[bytes, bool]:
    """Send raw bytes; everything read until the server closes, or ``wait`` s pass (closed?)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    received = b""
    closed = False
    try:
        writer.write(data)
        await writer.drain()
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
    finally:
        writer.close()
    return received, closed


def statuses(data: bytes) -> list[int]:
    """The status of each response in a raw stream of them (a body may run into the next)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", data)]


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    head = "".join(f"{h}\r\n" for h in ("Host: gw.test", *headers))
    return f"{method} {path} HTTP/1.1\r\n{head}\r\n".encode() + body


# --------------------------------------------------------------------------- smuggling

SMUGGLED = b"GET /echo/smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n"
CHUNKED = "Transfer-Encoding: chunked"
CLOSE = "Connection: close"

SMUGGLING = {
    # Both framings: a front end using one and a back end the other disagree on the boundary.
    "cl-te": request("POST", "/echo/a", "Content-Length: 6", CHUNKED, body=b"0\r\n\r\n" + SMUGGLED),
    "te-cl": request("POST", "/echo/a", CHUNKED, "Content-Length: 4", body=b"5c\r\n" + SMUGGLED),
    "duplicate-content-length": request(
        "POST", "/echo/a", "Content-Length: 5", "Content-Length: 52", body=b"hello" + SMUGGLED
    ),
    "duplicate-equal-content-length": request(
        "POST", "/echo/a", "Content-Length: 5", "Content-Length: 5", body=b"hello"
    ),
    "content-length-list": request("POST", "/echo/a", "Content-Length: 5, 5", body=b"hello"),
    "content-length-sign": request("POST", "/echo/a", "Content-Length: +5", body=b"hello"),
    "duplicate-transfer-encoding": request(
        "POST", "/echo/a", CHUNKED, CHUNKED, body=b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "chunked-not-last": request(
        "POST", "/echo/a", "Transfer-Encoding: chunked, gzip", body=b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "unknown-transfer-encoding": request(
        "POST", "/echo/a", "Transfer-Encoding: xchunked", body=b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "space-before-colon": request(
        "POST", "/echo/a", "Transfer-Encoding : chunked", body=b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "obs-fold": request("GET", "/echo/a", "X-Folded: one", " two"),
    "obs-fold-transfer-encoding": request(
        "POST", "/echo/a", "Transfer-Encoding:", " chunked", body=b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "bare-lf": b"GET /echo/a HTTP/1.1\nHost: gw.test\n\n" + SMUGGLED,
    "bare-lf-in-head": b"GET /echo/a HTTP/1.1\r\nHost: gw.test\nX-A: b\r\n\r\n",
    "bare-cr-in-head": b"GET /echo/a HTTP/1.1\r\nHost: gw.test\rX-A: b\r\n\r\n",
    "bare-lf-in-chunks": request("POST", "/echo/a", CHUNKED, body=b"5\nhello\n0\n\n"),
    "chunk-size-prefix": request("POST", "/echo/a", CHUNKED, body=b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk-size-overflow": request(
        "POST", "/echo/a", CHUNKED, body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"
    ),
    "nul-in-header": request("GET", "/echo/a", "X-A: b\x00c"),
    "two-hosts": request("GET", "/echo/a", "Host: other.test"),
    "oversized-header": request("GET", "/echo/a", "X-Big: " + "a" * 9000),
    "oversized-url": request("GET", "/echo/" + "a" * 9000),
    "too-many-headers": request("GET", "/echo/a", *(f"X-H{i}: v" for i in range(200))),
    # RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
    "http10-transfer-encoding": (
        b"POST /echo/a HTTP/1.0\r\nHost: gw.test\r\n" + CHUNKED.encode() + b"\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
}


@pytest.mark.parametrize("vector", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_smuggling_vector_is_refused_and_never_forwarded(
    gw: Gateway, recorded: Recorded, vector: bytes
) -> None:
    """Ambiguous or malformed framing gets one 400, the connection is closed, and the upstream
    sees nothing: neither the request nor one smuggled behind it."""
    data, closed = await exchange(gw.port, vector)
    print(
        f"HOSTILE smuggling: {statuses(data)}, closed {closed}, forwarded {len(recorded.requests)}"
    )
    assert statuses(data) == [400], data[:300]
    assert closed
    assert recorded.requests == []


@BOTH_FORWARDERS
async def test_a_request_inside_a_body_stays_in_the_body(gw: Gateway, recorded: Recorded) -> None:
    """Request-shaped bytes inside a chunked or a sized body arrive as body bytes of one request
    (the gateway frames the upstream request itself); pipelined requests stay two, in order."""
    inner = b"0\r\n\r\n" + SMUGGLED
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
    vector = request("POST", "/echo/chunked", CHUNKED, CLOSE, body=chunked)
    data, _ = await exchange(gw.port, vector)
    assert statuses(data) == [200]
    sized = request("POST", "/echo/sized", f"Content-Length: {len(inner)}", CLOSE, body=inner)
    data, _ = await exchange(gw.port, sized)
    assert statuses(data) == [200]
    pipelined = request("GET", "/echo/one") + request("GET", "/echo/two", "Connection: close")
    data, closed = await exchange(gw.port, pipelined)
    assert statuses(data) == [200, 200] and closed
    assert [(r["raw_path"], r["body_sha256"]) for r in recorded.requests] == [
        ("/echo/chunked", hashlib.sha256(inner).hexdigest()),
        ("/echo/sized", hashlib.sha256(inner).hexdigest()),
        ("/echo/one", hashlib.sha256(b"").hexdigest()),
        ("/echo/two", hashlib.sha256(b"").hexdigest()),
    ]


async def test_head_size_limits_come_from_the_config(
    start_gateway: StartGateway, recorded: Recorded
) -> None:
    """limits.max_line_size, max_field_size and max_headers are the parser's: just under each
    passes, just over is 400 and never forwarded."""
    limits = {"max_line_size": 1024, "max_field_size": 1024, "max_headers": 20}
    gw = await start_gateway(limits=limits)
    under = [
        request("GET", "/echo/" + "u" * 900, CLOSE),
        request("GET", "/echo/field", "X-Big: " + "f" * 900, CLOSE),
        request("GET", "/echo/count", CLOSE, *(f"X-H{i}: v" for i in range(15))),
    ]
    over = [
        request("GET", "/echo/" + "o" * 1100),
        request("GET", "/echo/field", "X-Big: " + "f" * 1100),
        request("GET", "/echo/count", *(f"X-H{i}: v" for i in range(30))),
    ]
    for vector in under:
        assert statuses((await exchange(gw.port, vector))[0]) == [200]
    for vector in over:
        assert statuses((await exchange(gw.port, vector))[0]) == [400]
    assert len(recorded.requests) == len(under)


# --------------------------------------------------------------------------- slow clients


async def dribble(
    port: int, head: bytes, byte: bytes, *, interval: float = 1.0, limit: float = 10.0
) -> tuple[float, bytes]:
    """Send ``head``, then ``byte`` every ``interval`` s until the server closes the connection
    (or ``limit`` s pass); (seconds until the close, what the server sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(head)
    read = asyncio.ensure_future(reader.read())
    try:
        while not read.done() and time.monotonic() - started < limit:
            with contextlib.suppress(ConnectionError):
                writer.write(byte)
                await writer.drain()
            await asyncio.wait({read}, timeout=interval)
        received = read.result() if read.done() and not read.exception() else b""
        return time.monotonic() - started, received
    finally:
        read.cancel()
        writer.close()


async def timed_get(url: str) -> tuple[int, float]:
    """One ordinary request on its own connection: (status, seconds)."""
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout) as client, client.get(url) as resp:
        await resp.read()
        return resp.status, time.monotonic() - started


async def test_head_dribbled_a_byte_a_second_is_cut_at_header_timeout(
    start_gateway: StartGateway, recorded: Recorded
) -> None:
    """Clients sending their headers a byte a second are disconnected, without an answer, when
    limits.header_timeout (2 s) runs out; meanwhile an ordinary request is answered at once."""
    gw = await start_gateway(limits={"header_timeout": 2, "body_timeout": 30})
    head = request("GET", "/echo/slow")[:-4] + b"\r\nX-Slow: "
    slow = [asyncio.ensure_future(dribble(gw.port, head, b"a")) for _ in range(3)]
    status, seconds = await timed_get(f"{gw.url}/echo/ordinary")
    print(f"HOSTILE slow head: ordinary request {status} in {seconds:.3f} s")
    assert status == 200 and seconds < 1.0
    for seconds, received in await asyncio.gather(*slow):
        print(f"HOSTILE slow head: cut after {seconds:.2f} s, {len(received)} bytes answered")
        assert received == b""
        assert 1.9 <= seconds < 3.5
    assert [r["raw_path"] for r in recorded.requests] == ["/echo/ordinary"]


@BOTH_FORWARDERS
async def test_body_dribbled_a_byte_a_second_is_cut_at_body_timeout(
    start_gateway: StartGateway, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxied body sent a byte a second is cut (no answer) once limits.body_timeout (2 s)
    runs out, logged as the client's doing, and never reaches the upstream's handler whole."""
    caplog.set_level(logging.INFO, logger="gateway")
    gw = await start_gateway(limits={"header_timeout": 30, "body_timeout": 2})
    head = request("POST", "/echo/slow-body", "Content-Length: 1000")
    seconds, received = await dribble(gw.port, head, b"b")
    print(f"HOSTILE slow body: cut after {seconds:.2f} s, {len(received)} bytes answered")
    assert received == b""
    assert 1.9 <= seconds < 4.0
    assert recorded.requests == []
    messages = [r.getMessage() for r in caplog.records]
    assert "client_body_timeout" in messages
    assert "upstream_failed_mid_response" not in messages


async def test_slow_body_on_the_signing_endpoint_is_cut_too(
    start_gateway: StartGateway, caplog: pytest.LogCaptureFixture
) -> None:
    """The body watch covers the gateway's own routes: a dribbled signing request is cut."""
    caplog.set_level(logging.INFO, logger="gateway")
    gw = await start_gateway(limits={"header_timeout": 30, "body_timeout": 2})
    cookie, _ = await login(gw, "alice")
    head = request(
        "POST", f"{P}/signature", f"Cookie: {cookie}", "Content-Length: 500",
        "Content-Type: application/json",
    )  # fmt: skip
    seconds, received = await dribble(gw.port, head, b" ")
    print(f"HOSTILE slow signing body: cut after {seconds:.2f} s")
    assert received == b"" and 1.9 <= seconds < 4.0
    assert "client_body_timeout" in [r.getMessage() for r in caplog.records]


@BOTH_FORWARDERS
async def test_slow_bodies_release_the_upstream_pool(
    start_gateway: StartGateway, recorded: Recorded
) -> None:
    """Two dribbling uploads hold the whole pool (max_connections 2) only until body_timeout:
    a request queued behind them is answered soon after, instead of waiting for them."""
    gw = await start_gateway(
        upstream={"max_connections": 2}, limits={"header_timeout": 30, "body_timeout": 2}
    )
    head = request("POST", "/echo/slow-body", "Content-Length: 1000")
    slow = [asyncio.ensure_future(dribble(gw.port, head, b"b")) for _ in range(2)]
    await asyncio.sleep(0.3)  # the uploads are holding both pooled connections by now
    status, seconds = await timed_get(f"{gw.url}/echo/queued")
    print(f"HOSTILE pool held by slow bodies: queued request {status} after {seconds:.2f} s")
    assert status == 200
    assert seconds < 2 + 1.5
    await asyncio.gather(*slow)
    assert [r["raw_path"] for r in recorded.requests] == ["/echo/queued"]


@BOTH_FORWARDERS
async def test_client_leaving_mid_body_is_logged_as_the_clients_doing(
    gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    """A client hanging up halfway through its body, on a proxied or a signing route, is an
    INFO line (client-went-away, 499 in the metrics), not a 502 or an error traceback a flood
    of such clients would fill the logs with."""
    caplog.set_level(logging.INFO, logger="gateway")
    cookie, _ = await login(gw, "alice")
    for path in ("/echo/left", f"{P}/signature"):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(request("POST", path, f"Cookie: {cookie}", "Content-Length: 100") + b"{")
        await writer.drain()
        await asyncio.sleep(0.3)  # the handler is waiting for the rest of the body by now
        writer.close()
        await reader.read()
    async with aiohttp.ClientSession() as client, client.get(f"{gw.url}/-/metrics") as resp:
        metrics = await resp.text()
    refusals = [r for r in caplog.records if r.getMessage() == "request_refused"]
    assert [getattr(r, "reason", None) for r in refusals][-2:] == ["client-went-away"] * 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and
                r.name.startswith("gateway")]  # fmt: skip
    assert 'status="499"' in metrics and 'status="502"' not in metrics
    assert 'status="500"' not in metrics


@BOTH_FORWARDERS
async def test_steady_slow_upload_longer_than_body_timeout_passes(
    start_gateway: StartGateway, recorded: Recorded
) -> None:
    """The limit is a rate, not a total: 16 KiB sent at 4 KiB/s (above body_min_rate) takes
    twice body_timeout and arrives whole."""
    gw = await start_gateway(limits={"body_timeout": 2, "body_min_rate": 500})
    chunks = [bytes([i]) * 1024 for i in range(16)]

    async def paced() -> AsyncIterator[bytes]:
        for chunk in chunks:
            await asyncio.sleep(0.25)
            yield chunk

    async with (
        aiohttp.ClientSession() as client,
        client.post(f"{gw.url}/echo/steady", data=paced()) as resp,
    ):
        assert resp.status == 200
    [seen] = recorded.requests
    assert seen["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


@BOTH_FORWARDERS
async def test_upload_queued_for_the_pool_is_not_cut(start_gateway: StartGateway) -> None:
    """Time the gateway spends not reading (its pool busy, back-pressure on the client) is not
    the client's: a fast 32 MiB upload queued 3 s behind a slow request, past body_timeout
    (2 s), still goes through whole. (body_min_rate is set high so that the bytes buffered
    before the pause earn next to no time: only the pause itself can explain the pass.)"""
    gw = await start_gateway(
        upstream={"read_timeout": 10, "max_connections": 1},
        limits={"body_timeout": 2, "body_min_rate": "10MB"},
    )
    body = bytes(range(256)) * (32 * 4096)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        blocker = asyncio.ensure_future(client.get(f"{gw.url}/slow?delay=3"))
        await asyncio.sleep(0.2)  # the slow request owns the only pooled connection by now
        async with client.post(f"{gw.url}/sink", data=io.BytesIO(body)) as resp:
            assert resp.status == 200
            answer = await resp.json()
        (await blocker).release()
    assert answer == {"sha256": hashlib.sha256(body).hexdigest(), "size": len(body)}


# --------------------------------------------------------------------------- stolen cookies


async def login(gw: Gateway, user: str) -> tuple[str, str]:
    """Log ``user`` in through the gateway: (Cookie header value of the session, key prefix)."""
    jar = aiohttp.CookieJar(unsafe=True)  # the default jar ignores cookies of IP hosts
    async with aiohttp.ClientSession(cookie_jar=jar) as client:
        async with client.get(f"{gw.url}/login?user={user}") as resp:
            assert resp.status == 200
        async with client.get(f"{gw.url}{P}/config") as resp:
            assert resp.status == 200
            prefix = str((await resp.json())["keyPrefix"])
        cookies = jar.filter_cookies(URL(gw.url))
    assert unquote(cookies["upload_prefix"].value) == prefix
    name = gw.config.session.cookie_name
    return f"{name}={cookies[name].value}", prefix


def policy(bucket: str, key: str) -> dict[str, Any]:
    return {
        "expiration": "2030-01-01T00:00:00.000Z",
        "conditions": [
            {"acl": "private"},
            {"bucket": bucket},
            {"Content-Type": "image/jpeg"},
            {"success_action_status": "200"},
            {"key": key},
        ],
    }


async def test_session_cookie_stolen_from_another_deployment_is_refused(
    start_gateway: StartGateway, recorded: Recorded
) -> None:
    """A session cookie made by deployment A (its own session key) is no identity at B: B signs
    nothing for it, shows no prefix, never passes it upstream, and logs nobody in."""
    a = await start_gateway()
    b = await start_gateway(session={"keys": [OTHER_SESSION_KEY], "secure": False})
    cookie, prefix = await login(a, "alice")
    headers = {"Cookie": cookie}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client:
        # The cookie works where it was made ...
        async with client.post(
            f"{a.url}{P}/signature", json=policy("test-uploads", prefix + "x.jpg"), headers=headers
        ) as resp:
            assert resp.status == 200
        # ... and nowhere else.
        async with client.post(
            f"{b.url}{P}/signature", json=policy("test-uploads", prefix + "x.jpg"), headers=headers
        ) as resp:
            assert resp.status == 401
            assert "signature" not in await resp.json(content_type=None)
        async with client.get(f"{b.url}{P}/config", headers=headers) as resp:
            assert resp.status == 401
            assert "Set-Cookie" not in resp.headers
        async with client.get(f"{b.url}/echo/stolen", headers=headers) as resp:
            assert resp.status == 200
    upstream_cookies = [
        value for name, value in recorded.requests[-1]["headers"] if name.lower() == "cookie"
    ]
    assert upstream_cookies == []


# --------------------------------------------------------------------------- path traversal

TRAVERSAL = {
    # Proxied: the forward path (only the gateway may call it) in every disguise.
    "dot-dot-slash-encoded": "/x/..%2finternal/uploads/photos",
    "all-slashes-encoded": "/x/..%2Finternal%2fuploads%2fphotos",
    "dot-dot-encoded": "/%2e%2e/internal/uploads/photos",
    "backslashes": "/internal%5cuploads%5cphotos",
    "double-encoded": "/internal%252fuploads%252fphotos",
    "double-encoded-dot-dot": "/x/%252e%252e/internal/uploads/photos",
    "nul-after": "/internal/uploads/photos%00",
    "nul-inside": "/internal%00/uploads/photos",
    "nul-in-ordinary-path": "/echo/file.txt%00.jpg",
    "overlong-dot-dot": "/x/%c0%ae%c0%ae/internal/uploads/photos",
    "overlong-slash": "/x/..%c0%afinternal/uploads/photos",
    "overlong-3-byte": "/x/%e0%80%ae%e0%80%ae/internal/uploads/photos",
    # Upload routes: nothing under P is ever proxied, and no disguise reaches another endpoint.
    "route-dot-dot-encoded": f"{P}/..%2f..%2fecho",
    "route-dot-dot": f"{P}/%2e%2e/%2e%2e/echo",
    "route-files-escape": f"{P}/files/..%2f..%2f..%2fetc%2fpasswd",
    "route-nul": f"{P}/signature%00",
    "route-nul-in-prefix": f"{P}%00/signature",
    "route-overlong": f"{P}/%c0%ae%c0%ae/signature",
}


@pytest.mark.parametrize("path", TRAVERSAL.values(), ids=TRAVERSAL.keys())
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_traversal_never_reaches_the_upstream(
    gw: Gateway, recorded: Recorded, path: str, method: str
) -> None:
    """Encoded dot segments, double encoding, NUL and overlong UTF-8 aimed at the forward path
    or the upload routes get a 400 or 404 problem from the gateway and nothing upstream."""
    data, _ = await exchange(
        gw.port, request(method, path, "Content-Length: 2", "Connection: close", body=b"{}")
    )
    [status] = statuses(data)
    print(f"HOSTILE traversal {method} {path}: {status}, forwarded {len(recorded.requests)}")
    assert status in (400, 404), data[:300]
    assert b"application/problem+json" in data
    assert recorded.requests == [] and recorded.completions == []


async def test_traversal_in_keys_is_refused_by_the_signer(gw: Gateway) -> None:
    """Keys that climb out of the user's prefix (``..``, ``.``, empty segments, a backslash, a
    NUL) are refused with 400 and no signature, on both signature versions."""
    cookie, prefix = await login(gw, "alice")
    keys = [
        f"{prefix}../victim/x.jpg",
        f"{prefix}a/../../victim/x.jpg",
        f"{prefix}./x.jpg",
        f"{prefix}a//x.jpg",
        f"{prefix}a\\..\\x.jpg",
        f"{prefix}x\x00.jpg",
        prefix.rstrip("/") + "x/y.jpg",
    ]
    async with aiohttp.ClientSession() as client:
        for key in keys:
            for query in ("", "?v4=true"):
                async with client.post(
                    f"{gw.url}{P}/signature{query}",
                    json=policy("test-uploads", key),
                    headers={"Cookie": cookie},
                ) as resp:
                    answer = await resp.json(content_type=None)
                    assert resp.status == 400, key
                    assert answer["invalid"] is True and "signature" not in answer


# --------------------------------------------------------------------------- parser bombs

JSON_ENDPOINTS = [
    f"{P}/signature",
    f"{P}/success",
    "/uploads/uppy/s3/multipart",
    "/uploads/uppy/complete",
    "/api/uploads",
]


@pytest.mark.parametrize("depth", [7, 975, 3_000, 30_000])
async def test_deeply_nested_json_is_a_400_on_every_json_endpoint(
    start_gateway: StartGateway, upstream_url: str, depth: int
) -> None:
    """JSON nested past 6 levels is refused by every endpoint that parses JSON, through the one
    bounded reader: 400 json-too-deep naming the limit (or 413 when the body is too large to
    read), never a 500. 975 levels parse in Python and then fail to encode; 3,000 and more fail
    to parse."""
    tree = config_dict(upstream_url)
    tree["routes"] += [
        {"name": "docs", "protocol": "uppy", "path": "/uploads/uppy", "max_size": "1GB",
         "forward": "/internal/docs"},
        {"name": "api", "protocol": "api", "path": "/api/uploads", "max_size": "1GB",
         "forward": "/internal/api"},
    ]  # fmt: skip
    gw = await start_gateway(tree=tree)
    cookie, _ = await login(gw, "alice")
    body = b"[" * depth + b"]" * depth
    headers = {"Cookie": cookie, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as client:
        for path in JSON_ENDPOINTS:
            async with client.post(f"{gw.url}{path}", data=body, headers=headers) as resp:
                answer = await resp.json(content_type=None)
                assert (resp.status, answer["reason"]) in {
                    (400, "json-too-deep"),
                    (413, "body-too-large"),
                }, (path, answer)
                if resp.status == 400:
                    assert answer["limit"] == 6, (path, answer)


async def test_success_params_python_parses_but_could_not_encode_store_nothing_in_serve(
    gateway_process: StartProcess,
    upstream_url: str,
    recorded: Recorded,
    s3_endpoint: str,
    buckets: BucketNames,
    s3_client: Any,
) -> None:
    """The review's payload against a real `serve` process (its stack is shallow, as in
    production): success params nested 975 levels parse, and used to fail only when the
    completion message was encoded, a 500 with a traceback after the copy was stored. Now a
    400 json-too-deep before S3 is touched: nothing stored, the upload as it was, no traceback."""
    tree = config_dict(
        upstream_url,
        s3_endpoint=s3_endpoint,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )
    proc = await gateway_process(s3=tree["s3"], routes=tree["routes"])
    cookie, prefix = await login(Gateway(proc.url, 0, build_config(tree)), "alice")
    key = f"{prefix}{uuid.uuid4()}.jpg"
    put = await s3_client.put_object(
        Bucket=buckets.uploads, Key=key, Body=JPEG, ContentType="image/jpeg"
    )
    fields = json.dumps({"key": key, "uuid": "u", "name": "cat.jpg", "bucket": buckets.uploads})
    body = fields[:-1] + ', "deep": ' + "[" * 974 + "]" * 974 + "}"
    headers = {"Cookie": cookie, "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as client,
        client.post(f"{proc.url}{P}/success", data=body, headers=headers) as resp,
    ):
        answer = await resp.json(content_type=None)

    assert (resp.status, answer["reason"], answer["limit"]) == (400, "json-too-deep", 6)
    assert (await s3_client.list_objects_v2(Bucket=buckets.storage)).get("Contents", []) == []
    head = await s3_client.head_object(Bucket=buckets.uploads, Key=key)
    assert head["ETag"] == put["ETag"]
    assert recorded.completions == []
    assert "Traceback" not in proc.log()


# --------------------------------------------------------------------------- completion messages


async def test_completion_messages_forged_replayed_or_altered_are_refused(
    start_gateway: StartGateway,
    upstream_url: str,
    recorded: Recorded,
    raw_completions: list[Raw],
    s3_endpoint: str,
    buckets: BucketNames,
    s3_client: Any,
) -> None:
    """A real completion message the gateway sent verifies; the same message altered in any
    byte, re-signed with another secret, replayed past the tolerance, or sent again with a
    header of another message is refused by webhook.verify, and by an upstream using it."""
    tree = config_dict(
        upstream_url,
        s3_endpoint=s3_endpoint,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )
    gw = await start_gateway(tree=tree)
    cookie, prefix = await login(gw, "alice")
    messages: list[Raw] = []
    for name in ("cat.jpg", "dog.jpg"):
        key = f"{prefix}{uuid.uuid4()}.jpg"
        await s3_client.put_object(
            Bucket=buckets.uploads, Key=key, Body=JPEG, ContentType="image/jpeg"
        )
        form = urlencode({"key": key, "uuid": key, "name": name, "bucket": buckets.uploads})
        async with (
            aiohttp.ClientSession() as client,
            client.post(
                f"{gw.url}{P}/success",
                data=form,
                headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
    messages = list(raw_completions)
    assert len(messages) == 2 and len(recorded.completions) == 2
    real, other = messages
    timestamp = webhook.verify(WEBHOOK_SECRET, real.signature, real.body)
    assert abs(timestamp - time.time()) < 60

    decoded = json.loads(real.body)
    altered_bodies = [
        real.body.replace(b'"alice"', b'"mallory"'),
        json.dumps({**decoded, "object": {**decoded["object"], "size": 1}}).encode(),
        real.body + b" ",
        real.body[:-1],
        bytes([real.body[0] ^ 1]) + real.body[1:],
    ]
    forged = webhook.sign("another-secret-0123456789", real.body)
    t = real.signature.split(",")[0]
    attempts: list[tuple[str, bytes, float | None]] = [
        *((real.signature, body, None) for body in altered_bodies),
        (forged, real.body, None),  # signed with a key that is not the secret
        (other.signature, real.body, None),  # another message's header
        (f"{t},v1={'0' * 64}", real.body, None),
        (t.replace("t=", "t=1") + "," + real.signature.split(",")[1], real.body, None),
        (real.signature, real.body, timestamp + 301),  # replayed past the 300 s tolerance
        (real.signature, real.body, timestamp - 301),  # or from the future
    ]
    for header, body, now in attempts:
        with pytest.raises(webhook.InvalidSignature):
            webhook.verify(WEBHOOK_SECRET, header, body, now=now)
    print(f"HOSTILE completion messages: {len(attempts)} forged/altered/replayed, all refused")

    # An upstream guarding its forward path with verify refuses them on the wire too (sent
    # straight to it: the gateway itself answers 404 for the forward path).
    async with aiohttp.ClientSession() as client:
        for header, body, now in attempts:
            if now is not None:
                continue
            async with client.post(
                f"{upstream_url}{FORWARD}", data=body, headers={webhook.HEADER: header}
            ) as resp:
                assert resp.status == 401
        async with client.post(
            f"{gw.url}{FORWARD}", data=real.body, headers={webhook.HEADER: real.signature}
        ) as resp:
            assert resp.status == 404
    assert len(recorded.completions) == 2
