"""The streaming reverse proxy against a real upstream app, over real loopback sockets."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict
from yarl import URL

from gateway.logs import JsonFormatter
from tests.support.gateway import FORWARDERS
from tests.support.processes import StartGateway
from tests.support.upstream import generated_sha256, make_upstream_app

MiB = 1024 * 1024


@dataclass
class Trace:
    """What reached the upstream: every path, the peer ports used, the most requests at once."""

    paths: list[str] = field(default_factory=list)
    peers: set[int] = field(default_factory=set)
    active: int = 0
    max_active: int = 0


TRACE = web.AppKey("trace", Trace)


@web.middleware
async def _trace(request: web.Request, handler: Any) -> web.StreamResponse:
    trace = request.app[TRACE]
    trace.paths.append(request.raw_path)
    peer = request.transport.get_extra_info("peername") if request.transport else None
    if peer:
        trace.peers.add(peer[1])
    trace.active += 1
    trace.max_active = max(trace.max_active, trace.active)
    try:
        response: web.StreamResponse = await handler(request)
        return response
    finally:
        trace.active -= 1


@pytest.fixture(params=FORWARDERS)
def forwarder_kind(request: pytest.FixtureRequest) -> str:
    """Every test here runs under both ``upstream.forwarder`` kinds: the standard one is the
    fallback for an aiohttp upgrade, so it must answer as the fast one does."""
    kind: str = request.param
    return kind


@pytest.fixture
async def upstream_server(aiohttp_server: Any) -> TestServer:
    """The reflecting upstream, with a trace of what reached it (overrides the shared fixture)."""
    app = make_upstream_app()
    app[TRACE] = Trace()
    app.middlewares.append(_trace)
    server: TestServer = await aiohttp_server(app)
    return server


@pytest.fixture
def trace(upstream_server: TestServer) -> Trace:
    return upstream_server.app[TRACE]


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps no cookies and decompresses nothing, so tests see the raw answer."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:
        yield session


@pytest.fixture
def json_logs(caplog: pytest.LogCaptureFixture) -> Callable[[], list[dict[str, Any]]]:
    """The gateway's log lines as the JSON formatter writes them (request id included)."""
    caplog.set_level(logging.INFO, logger="gateway")
    caplog.handler.setFormatter(JsonFormatter())

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in caplog.text.splitlines() if line.startswith("{")]

    return lines


def _headers(echo: dict[str, Any]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in echo["headers"])


def _port(url: str) -> int:
    port = URL(url).port
    assert port is not None
    return port


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def _raw(port: int, request: bytes, timeout: float = 10) -> tuple[bytes, bytes]:
    """Send raw bytes, read until the server closes; (head, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def _generated(size: int, block: int = MiB, pause: float = 0.0) -> AsyncIterator[bytes]:
    """``size`` bytes whose blocks all differ (a reordered or repeated block changes the hash)."""
    base = bytes(range(256)) * (block // 256)
    sent = 0
    index = 0
    while sent < size:
        piece = (index.to_bytes(8, "big") + base[8:])[: min(block, size - sent)]
        if pause:
            await asyncio.sleep(pause)
        yield piece
        sent += len(piece)
        index += 1


def _generated_sha256(size: int, block: int = MiB) -> str:
    digest = hashlib.sha256()
    base = bytes(range(256)) * (block // 256)
    sent = 0
    index = 0
    while sent < size:
        piece = (index.to_bytes(8, "big") + base[8:])[: min(block, size - sent)]
        digest.update(piece)
        sent += len(piece)
        index += 1
    return digest.hexdigest()


# ------------------------------------------------------------------ methods, paths, bodies


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND"])
async def test_every_method_is_forwarded(
    gw: str, client: aiohttp.ClientSession, method: str
) -> None:
    """Any method not the gateway's own goes upstream unchanged, body included."""
    async with client.request(method, gw + "/echo/m", data=b"payload") as resp:
        assert resp.status == 200
        echo = await resp.json()
    assert echo["method"] == method
    assert echo["body_sha256"] == hashlib.sha256(b"payload").hexdigest()


async def test_raw_path_and_query_kept_byte_for_byte(gw: str) -> None:
    """Percent-encodings, case of escapes, '+', repeated and empty parameters reach the upstream
    exactly as the client wrote them (a re-encoded path can change what the upstream routes)."""
    target = "/echo/a%2Fb%20c/%7euser/%E2%9C%93;p=1?x=1&x=2&y=%2F+%2b&z&q=a%26b"
    head, body = await _raw(
        _port(gw), f"GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode()
    )
    assert head.startswith(b"HTTP/1.1 200")
    echo = json.loads(body)
    assert echo["raw_path"] == target


@pytest.mark.parametrize(
    "target",
    ["/-/healthz", "/%2D/healthz", "/-/%68ealthz", "http://elsewhere.example/-/healthz"],
)
async def test_gateway_paths_are_the_gateways_however_spelt(
    gw: str, trace: Trace, target: str
) -> None:
    """The front sends a request straight to the proxy only when its path is outside the
    gateway's own; it reads the path as aiohttp's router does (escapes decoded, absolute form
    reduced), so no spelling of a gateway path reaches the upstream instead."""
    head, body = await _raw(
        _port(gw), f"GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode()
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body) == {"status": "ok"}
    assert trace.paths == []


# A route whose Fine Uploader endpoints are at a legacy page's paths (docs/migrating.md).
LEGACY_ROUTE = {
    "name": "legacy",
    "protocol": "fineuploader",
    "path": "/uploads/legacy",
    "max_size": "1MiB",
    "forward": "/internal/uploads/legacy",
    "endpoints": {"signature": "/api/s3/sign", "blank": "/api/s3/empty_html"},
}


@pytest.mark.parametrize(
    "target",
    [
        "/api/s3/empty_html",
        "/api/s3/%65mpty_html",
        "/%61pi/s3/empty_html",
        "http://elsewhere.example/api/s3/empty_html",
    ],
)
async def test_explicit_endpoint_paths_are_the_gateways_however_spelt(
    start_gateway: StartGateway, trace: Trace, target: str
) -> None:
    """An endpoint a route places outside its path is one of the gateway's own paths to the
    front: every spelling aiohttp's router reads as it gets the gateway's blank page, and the
    upstream sees nothing."""
    gw = await start_gateway(routes=[LEGACY_ROUTE])
    head, body = await _raw(
        _port(gw), f"GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode()
    )
    assert head.startswith(b"HTTP/1.1 200") and b"text/html" in head
    assert b"<html" in body
    assert trace.paths == []


@pytest.mark.parametrize(
    "target",
    ["/API/S3/SIGN", "/api/s3/sign/", "/api/s3//sign", "/api/s3/sign;v4", "/api/s3/%2573ign"],
)
async def test_explicit_endpoint_paths_are_refused_upstream_in_every_reading(
    start_gateway: StartGateway, trace: Trace, target: str
) -> None:
    """A legacy page's signing path may still be the app's old signing view: no reading an
    upstream stack may make of a target (case, trailing /, //, ;params, double escapes) gets
    there, as for forward paths: 404 from the gateway."""
    gw = await start_gateway(routes=[LEGACY_ROUTE])
    head, _ = await _raw(
        _port(gw),
        f"POST {target} HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n"
        "Connection: close\r\n\r\n".encode(),
    )
    assert head.startswith(b"HTTP/1.1 404")
    assert trace.paths == []


async def test_content_length_request_body_is_forwarded_with_its_length(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """A Content-Length body reaches the upstream as one, intact."""
    payload = b"x" * 100_000
    async with client.post(gw + "/echo/cl", data=payload) as resp:
        echo = await resp.json()
    headers = _headers(echo)
    assert headers["Content-Length"] == str(len(payload))
    assert "Transfer-Encoding" not in headers
    assert echo["body_size"] == len(payload)
    assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()


async def test_chunked_request_body_is_forwarded_chunked(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """A chunked body (no length known) is streamed on, chunked, intact."""
    size = 3 * MiB + 17
    async with client.post(gw + "/echo/chunked", data=_generated(size)) as resp:
        echo = await resp.json()
    headers = _headers(echo)
    assert headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in headers
    assert echo["body_size"] == size
    assert echo["body_sha256"] == _generated_sha256(size)


async def test_large_bodies_stream_both_ways_intact(gw: str, client: aiohttp.ClientSession) -> None:
    """64 MiB up (chunked) and 64 MiB down (chunked and with a length) arrive with equal hashes."""
    size = 64 * MiB + 5
    async with client.post(gw + "/sink", data=_generated(size)) as resp:
        assert resp.status == 200
        assert await resp.json() == {"sha256": _generated_sha256(size), "size": size}
    for query, framing in (("", "chunked"), ("&length=1", "length")):
        digest = hashlib.sha256()
        received = 0
        async with client.get(gw + f"/stream?size={size}{query}") as resp:
            assert resp.status == 200
            if framing == "length":
                assert resp.headers["Content-Length"] == str(size)
            else:
                assert resp.headers["Transfer-Encoding"] == "chunked"
                assert "Content-Length" not in resp.headers
            async for chunk in resp.content.iter_any():
                digest.update(chunk)
                received += len(chunk)
        assert received == size
        assert digest.hexdigest() == generated_sha256(size)


async def test_http10_client_gets_the_streamed_body(gw: str) -> None:
    """An HTTP/1.0 client cannot take chunked encoding: it gets the body, ended by the close."""
    size = 300_000
    head, body = await _raw(
        _port(gw), f"GET /stream?size={size} HTTP/1.0\r\nHost: gw\r\n\r\n".encode()
    )
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    assert b"chunked" not in head.lower()
    assert len(body) == size
    assert hashlib.sha256(body).hexdigest() == generated_sha256(size)


async def test_expect_100_continue_upload(gw: str, client: aiohttp.ClientSession) -> None:
    """A client that waits for 100 Continue (curl does above 1 MiB) gets its body through."""
    payload = b"e" * 2 * MiB
    async with client.post(gw + "/sink", data=io.BytesIO(payload), expect100=True) as resp:
        assert resp.status == 200
        assert (await resp.json())["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_head_answer_has_headers_and_no_body(gw: str) -> None:
    """HEAD keeps the upstream's Content-Length and carries no body."""
    _, got = await _raw(_port(gw), b"GET /echo/h HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
    length = len(got)
    head, body = await _raw(
        _port(gw), b"HEAD /echo/h HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 200")
    assert f"content-length: {length + 1}".encode() in head.lower()  # "HEAD" is one letter more
    assert body == b""


@pytest.mark.parametrize("status", [201, 204, 304, 404, 418, 500, 503])
async def test_upstream_status_and_body_are_relayed(
    gw: str, client: aiohttp.ClientSession, status: int
) -> None:
    """The upstream's own errors are its answer, not the gateway's problem documents."""
    async with client.get(gw + f"/status/{status}") as resp:
        assert resp.status == status
        body = await resp.read()
    if status in (204, 304):
        assert body == b""
    else:
        assert resp.content_type == "application/json"
        assert json.loads(body) == {"status": status}


async def test_compressed_answer_passes_untouched(gw: str, client: aiohttp.ClientSession) -> None:
    """A gzip body is relayed as the upstream sent it: same bytes, same Content-Encoding."""
    async with client.get(gw + "/gzip", headers={"Accept-Encoding": "gzip"}) as resp:
        body = await resp.read()
        assert resp.headers["Content-Encoding"] == "gzip"
        assert resp.headers["Content-Length"] == str(len(body))
    assert body[:2] == b"\x1f\x8b"
    assert gzip.decompress(body) == b"compressed body " * 100


@pytest.mark.parametrize("method", ["GET", "POST", "PUT"])
async def test_gateway_adds_no_headers_of_its_own(
    gw: str, client: aiohttp.ClientSession, method: str
) -> None:
    """The upstream sees the client's headers, not the defaults the gateway's HTTP client would
    add (User-Agent, Accept*, a Content-Type guessed for a body that came without one)."""
    skip = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type")
    data = None if method == "GET" else b"raw bytes"
    async with client.request(
        method, gw + "/echo/plain", data=data, skip_auto_headers=skip
    ) as resp:
        headers = _headers(await resp.json())
    for name in skip:
        assert name not in headers, name
    async with client.post(
        gw + "/echo/typed", data=b"{}", headers={"Content-Type": "application/json"}
    ) as resp:
        assert _headers(await resp.json()).getall("Content-Type") == ["application/json"]


async def test_redirect_is_passed_to_the_client(
    gw: str, client: aiohttp.ClientSession, trace: Trace
) -> None:
    """A 302 goes back to the client; the gateway never follows it itself."""
    async with client.get(gw + "/redirect", allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"] == "/echo/target"
    assert "/echo/target" not in trace.paths


async def test_every_set_cookie_survives(gw: str, client: aiohttp.ClientSession) -> None:
    """Several Set-Cookie headers each reach the client, each once."""
    async with client.get(gw + "/cookies?a=1&b=2&c=3") as resp:
        cookies = resp.headers.getall("Set-Cookie")
    assert sorted(c.split(";")[0] for c in cookies) == ["a=1", "b=2", "c=3"]


# ------------------------------------------------------------------ header rules end to end


async def test_hop_by_hop_request_headers_are_not_forwarded(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """Connection, the headers it names, Keep-Alive, TE, Trailer, Upgrade, Proxy-* stop here."""
    headers = CIMultiDict(
        [
            ("Connection", "keep-alive, X-Hop-Named"),
            ("X-Hop-Named", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic c2VjcmV0"),
            ("Proxy-Connection", "keep-alive"),
            ("X-End-To-End", "kept"),
        ]
    )
    async with client.get(gw + "/echo/hop", headers=headers) as resp:
        assert resp.status == 200
        seen = _headers(await resp.json())
    for name in (
        "X-Hop-Named",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Connection",
    ):
        assert name not in seen, name
    assert "x-hop-named" not in seen.get("Connection", "").lower()
    assert seen["X-End-To-End"] == "kept"


@pytest.fixture
async def hop_upstream(aiohttp_server: Any) -> str:
    """An upstream answering with hop-by-hop and identity headers in its response."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            text="ok",
            headers=CIMultiDict(
                [
                    ("Connection", "X-Hop-Named"),
                    ("X-Hop-Named", "secret"),
                    ("Keep-Alive", "timeout=1"),
                    ("Proxy-Authenticate", "Basic"),
                    ("Proxy-Whatever", "1"),
                    ("Trailer", "X-T"),
                    ("Upgrade", "foo"),
                    ("X_Upload_User", "mallory"),
                    ("X-Kept", "yes"),
                ]
            ),
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_hop_by_hop_response_headers_are_not_forwarded(
    start_gateway: StartGateway, hop_upstream: str, client: aiohttp.ClientSession
) -> None:
    """The upstream's hop-by-hop headers (and '_' spellings of the login header) stop here."""
    gw = await start_gateway(upstream={"url": hop_upstream})
    async with client.get(gw + "/x") as resp:
        assert resp.status == 200
        assert await resp.text() == "ok"
        names = {n.lower() for n in resp.headers}
    assert resp.headers["X-Kept"] == "yes"
    for name in ("x-hop-named", "keep-alive", "proxy-authenticate", "proxy-whatever", "trailer"):
        assert name not in names, name
    assert "upgrade" not in names
    assert "x_upload_user" not in names
    assert "foo" not in resp.headers.get("Upgrade", "")


# Headers by which a proxy names the client's address, scheme, port, host or path prefix.
CLIENT_CONNECTION = {
    "X-Real-IP": "6.6.6.1",
    "Client-IP": "6.6.6.2",
    "True-Client-IP": "6.6.6.3",
    "X-Client-IP": "6.6.6.4",
    "X_Real_IP": "6.6.6.5",
    "X-Cluster-Client-IP": "6.6.6.6",
    "CF-Connecting-IP": "6.6.6.7",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Prefix": "/admin",
    "X-Forwarded-Ssl": "on",
    "X-Original-Host": "evil.example",
}


async def test_forwarded_headers_set_for_an_untrusted_peer(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """X-Forwarded-* name the real peer; a client's own values (any spelling) are dropped, and
    so is every other header naming the client's address, scheme, port, host or prefix."""
    async with client.get(
        gw + "/echo/f",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X_Forwarded_For": "6.6.6.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=6.6.6.6",
            **CLIENT_CONNECTION,
        },
    ) as resp:
        seen = _headers(await resp.json())
    assert seen.getall("X-Forwarded-For") == ["127.0.0.1"]
    assert seen.getall("X-Forwarded-Proto") == ["http"]
    assert seen.getall("X-Forwarded-Host") == [f"127.0.0.1:{_port(gw)}"]
    assert "Forwarded" not in seen
    assert "X_Forwarded_For" not in seen
    for name in CLIENT_CONNECTION:
        assert name not in seen, name


async def test_forwarded_for_kept_from_a_trusted_proxy(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """Behind a trusted proxy the chain is extended and its proto and host are kept."""
    gw = await start_gateway(trusted_proxies=["127.0.0.0/8"])
    async with client.get(
        gw + "/echo/f",
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "app.example",
            **CLIENT_CONNECTION,
        },
    ) as resp:
        seen = _headers(await resp.json())
    assert seen.getall("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert seen.getall("X-Forwarded-Proto") == ["https"]
    assert seen.getall("X-Forwarded-Host") == ["app.example"]
    # The proxy's other client-connection headers are its to set, and pass as it set them.
    for name, value in CLIENT_CONNECTION.items():
        assert seen.getall(name) == [value], name


@pytest.mark.parametrize("trusted", [False, True], ids=["untrusted", "trusted"])
async def test_url_override_headers_never_reach_the_upstream(
    start_gateway: StartGateway, client: aiohttp.ClientSession, trusted: bool
) -> None:
    """Headers some stacks take as the request's URL (IIS URL Rewrite's X-Original-URL,
    X-Rewrite-URL, ...), another way to a forward path, are removed in every spelling, even
    from a trusted proxy; so is Proxy, which CGI stacks read as their outgoing proxy (httpoxy)."""
    gw = await start_gateway(trusted_proxies=["127.0.0.0/8"] if trusted else [])
    overrides = CIMultiDict(
        [
            ("X-Original-URL", "/internal/uploads/photos"),
            ("X-Rewrite-URL", "/internal/uploads/photos"),
            ("x_original_url", "/internal/uploads/photos"),
            ("X-Override-URL", "/internal/uploads/photos"),
            ("X-Original-URI", "/internal/uploads/photos"),
            ("X-Forwarded-Uri", "/internal/uploads/photos"),
            ("X-Envoy-Original-Path", "/internal/uploads/photos"),
            ("Proxy", "http://evil.example:3128"),
            ("X-Kept", "1"),
        ]
    )
    async with client.post(gw + "/echo/o", headers=overrides, data=b"{}") as resp:
        seen = _headers(await resp.json())
    normalised = {name.lower().replace("_", "-") for name in seen}
    for name in {n.lower().replace("_", "-") for n in overrides} - {"x-kept"}:
        assert name not in normalised, name
    assert seen["X-Kept"] == "1"


VALID_HOSTS = [
    "gw",
    "GW.Example.COM:8080",
    "example.com.",
    "10.0.0.1:80",
    "[::1]:8080",
    "[2001:db8::1]",
    "my_service",
    "xn--bcher-kva.example",
]
INVALID_HOSTS = [
    "",
    "a b",
    "a,b.example",
    "user@gw",
    "user:pw@gw:80",
    "gw:",
    "gw:99999",
    "gw:80:80",
    "gw/x",
    "gw?x",
    "gw%2e",
    "-gw",
    "[::1",
    "[zz::1]:80",
    "[::1]x",
    "::1",
    "b\xc3\xbccher.example",
    "x" * 300,
]


@pytest.mark.parametrize("host", VALID_HOSTS)
async def test_a_host_and_port_is_passed_on_as_x_forwarded_host(gw: str, host: str) -> None:
    """Any ``host[:port]`` (a name, IPv4, a bracketed IPv6 literal) is accepted and reaches the
    upstream as X-Forwarded-Host, as sent."""
    head, body = await _raw(
        _port(gw), f"GET /echo/h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    )
    assert head.startswith(b"HTTP/1.1 200"), head
    assert _headers(json.loads(body)).getall("X-Forwarded-Host") == [host]


@pytest.mark.parametrize("host", INVALID_HOSTS)
async def test_a_host_that_is_not_host_and_port_is_refused(
    gw: str, trace: Trace, host: str
) -> None:
    """A Host with userinfo, a space, a comma, a path, a bad port or IPv6 literal, or an empty
    one gets a 400 problem on every way in (proxied, ops, an upload route): it would reach the
    upstream as X-Forwarded-Host, where such text reads as a list or credentials."""
    for path in ("/echo/h", "/-/healthz", "/uploads/photos/config"):
        head, body = await _raw(
            _port(gw),
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode(
                "latin-1"
            ),
        )
        assert head.startswith(b"HTTP/1.1 400"), (path, head)
        assert json.loads(body)["reason"] == "bad-host"
    assert trace.paths == []


async def test_two_host_headers_and_http10_without_host(gw: str, trace: Trace) -> None:
    """Two Host headers are refused by the parser (a 400 problem); HTTP/1.0, where Host is
    optional, passes without one."""
    head, body = await _raw(
        _port(gw), b"GET /echo/h HTTP/1.1\r\nHost: gw\r\nHost: evil.example\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.0 400"), head
    assert json.loads(body)["reason"] == "duplicate-header"
    assert trace.paths == []
    head, _ = await _raw(_port(gw), b"GET /echo/h10 HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    assert trace.paths == ["/echo/h10"]


async def test_spoofed_gateway_headers_never_reach_the_upstream(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """X-Upload-User, X-Upload-Signature, Idempotency-Key and the login/logout headers sent by a
    client are removed in any case and with '_' for '-' (CVE-2025-64484 in oauth2-proxy)."""
    gw = await start_gateway(identity={"login_header": "X-Remote-User"})
    sent = CIMultiDict(
        [
            ("X-Upload-User", "mallory"),
            ("x_upload_user", "mallory"),
            ("X-UPLOAD-SIGNATURE", "t=1,v1=00"),
            ("X_Upload_Signature", "t=1,v1=00"),
            ("Idempotency-Key", "k"),
            ("idempotency_key", "k"),
            ("X-Remote-User", "mallory"),
            ("X_REMOTE_USER", "mallory"),
            ("X-Upload-Logout", "1"),
            ("X-Innocent", "kept"),
        ]
    )
    async with client.post(gw + "/echo/spoof", headers=sent, data=b"{}") as resp:
        seen = _headers(await resp.json())
    normalised = {name.lower().replace("_", "-") for name in seen}
    for name in (
        "x-upload-user",
        "x-upload-signature",
        "idempotency-key",
        "x-remote-user",
        "x-upload-logout",
    ):
        assert name not in normalised, name
    assert seen["X-Innocent"] == "kept"


async def test_session_cookie_is_not_forwarded_but_other_cookies_are(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """The upstream never sees the gateway's session cookie; the app's own cookies pass."""
    async with client.get(
        gw + "/echo/c", headers={"Cookie": "app=1; gateway_session=secret-token; other=2"}
    ) as resp:
        seen = _headers(await resp.json())
    assert seen.getall("Cookie") == ["app=1; other=2"]


async def test_several_cookie_lines_reach_the_upstream_as_one(gw: str) -> None:
    """Cookie lines are joined with "; " (RFC 9113 8.2.3, what an HTTP/2 hop does), without
    the gateway's session cookie: a framework reading one line would miss the others."""
    head, body = await _raw(
        _port(gw),
        b"GET /echo/c HTTP/1.1\r\nHost: gw\r\nCookie: app=1; gateway_session=secret\r\n"
        b"Cookie: other=2\r\nCookie: gateway_session=again; last=3\r\nConnection: close\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200"), head
    assert _headers(json.loads(body)).getall("Cookie") == ["app=1; other=2; last=3"]


async def test_upstream_cookies_are_never_replayed_for_another_user(
    start_gateway: StartGateway, upstream_server: TestServer, trace: Trace
) -> None:
    """One user's upstream cookies never ride along on another user's request. The upstream is
    reached as ``localhost``: a default cookie jar ignores IP hosts and would hide the leak."""
    port = upstream_server.port
    gw = await start_gateway(upstream={"url": f"http://localhost:{port}"})
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as alice:
        async with alice.get(gw + "/cookies?app_session=alice-secret") as resp:
            assert "app_session=alice-secret" in resp.headers["Set-Cookie"]
        async with alice.get(gw + "/echo/alice") as resp:
            assert _headers(await resp.json())["Cookie"] == "app_session=alice-secret"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bob:
        for path in ("/echo/bob", "/echo/bob-again"):
            async with bob.get(gw + path) as resp:
                seen = _headers(await resp.json())
            assert "Cookie" not in seen
            assert "alice-secret" not in json.dumps(list(seen.items()))


async def test_request_id_kept_when_valid_and_passed_upstream(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """A sane X-Request-ID is kept: the upstream gets it and the client gets it back."""
    async with client.get(gw + "/echo/r", headers={"X-Request-ID": "req-42.a:b_c"}) as resp:
        seen = _headers(await resp.json())
        assert resp.headers["X-Request-ID"] == "req-42.a:b_c"
    assert seen.getall("X-Request-ID") == ["req-42.a:b_c"]


@pytest.mark.parametrize("sent", [None, "has space", "x" * 129, "inject\u00e9"])
async def test_request_id_generated_otherwise(
    gw: str, client: aiohttp.ClientSession, sent: str | None
) -> None:
    """A missing or unsafe X-Request-ID is replaced by a fresh one, the same upstream and back."""
    headers = {} if sent is None else {"X-Request-ID": sent}
    async with client.get(gw + "/echo/r", headers=headers) as resp:
        seen = _headers(await resp.json())
        returned = resp.headers["X-Request-ID"]
    assert returned != sent
    assert len(returned) == 32 and int(returned, 16) >= 0
    assert seen.getall("X-Request-ID") == [returned]


# ------------------------------------------------------------------ websockets


async def test_websocket_is_proxied_both_ways(gw: str, client: aiohttp.ClientSession) -> None:
    """Text and binary frames go through both ways; the upstream's subprotocol is agreed."""
    async with client.ws_connect(gw + "/ws", protocols=("echo.v1",)) as ws:
        assert ws.protocol == "echo.v1"
        await ws.send_str("hello")
        assert await ws.receive_str(timeout=5) == "echo:hello"
        await ws.send_bytes(b"\x00\x01\x02abc")
        assert await ws.receive_bytes(timeout=5) == b"cba\x02\x01\x00"
        big = bytes(range(256)) * 4096
        await ws.send_bytes(big)
        assert await ws.receive_bytes(timeout=5) == big[::-1]
        await ws.close()
    assert ws.closed


@pytest.fixture
async def closing_ws_upstream(aiohttp_server: Any) -> str:
    """A websocket upstream that closes with the code the client's first message names."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        msg = await ws.receive()
        await ws.close(code=int(msg.data))
        return ws

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_websocket_close_code_is_passed_on(
    start_gateway: StartGateway, closing_ws_upstream: str, client: aiohttp.ClientSession
) -> None:
    """The upstream's close code (an app's 4xxx reason) reaches the client unchanged."""
    gw = await start_gateway(upstream={"url": closing_ws_upstream})
    async with client.ws_connect(gw + "/ws") as ws:
        await ws.send_str("4002")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert msg.data == 4002


async def test_websocket_message_limit_is_the_configured_one(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """limits.websocket_max_message bounds every message the relay reads, either way: one of
    exactly the limit passes both ways; one byte more from the client, or an answer past it
    from the upstream (its echo adds "echo:"), closes the client's socket with 1009."""
    limit = 64 * 1024
    gw = await start_gateway(limits={"websocket_max_message": limit})
    async with client.ws_connect(gw + "/ws") as ws:
        at_limit = bytes(range(256)) * (limit // 256)
        await ws.send_bytes(at_limit)
        assert await ws.receive_bytes(timeout=5) == at_limit[::-1]
        await ws.send_str("x" * limit)
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009)
    async with client.ws_connect(gw + "/ws") as ws:
        await ws.send_bytes(bytes(limit + 1))
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1009)


async def test_websocket_upgrade_waits_for_a_connection_at_most_pool_timeout(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """With every WebSocket connection to the upstream open (max_connections 1), another
    upgrade is refused once pool_timeout (and connect_timeout) pass, instead of waiting for as
    long as the open one lives."""
    gw = await start_gateway(
        upstream={"max_connections": 1, "pool_timeout": 0.3, "connect_timeout": 0.5}
    )
    async with client.ws_connect(gw + "/ws") as held:
        started = time.monotonic()
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(gw + "/ws", timeout=aiohttp.ClientWSTimeout(ws_close=10))
        took = time.monotonic() - started
        assert caught.value.status == 504
        assert took < 3.0, took
        await held.send_str("still there")
        assert await held.receive_str(timeout=5) == "echo:still there"


async def test_websocket_to_a_dead_upstream_is_502(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """An upgrade the upstream cannot take is a 502 problem, not a hung socket."""
    gw = await start_gateway(upstream={"url": f"http://127.0.0.1:{_closed_port()}"})
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await client.ws_connect(gw + "/ws")
    assert caught.value.status == 502


async def test_idle_websocket_outlives_read_timeout(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """read_timeout bounds waiting for an HTTP answer, not a quiet websocket."""
    gw = await start_gateway(upstream={"read_timeout": 0.3})
    async with client.ws_connect(gw + "/ws") as ws:
        await asyncio.sleep(0.8)  # idle time is what is under test, not a wait for a server
        await ws.send_str("still there")
        assert await ws.receive_str(timeout=5) == "echo:still there"


# ------------------------------------------------------------------ pool, errors, timeouts


async def test_one_pool_with_the_configured_connection_limit(
    start_gateway: StartGateway, client: aiohttp.ClientSession, trace: Trace
) -> None:
    """Never more than max_connections requests at the upstream at once; connections are reused."""
    gw = await start_gateway(upstream={"max_connections": 2})

    async def slow() -> int:
        async with client.get(gw + "/slow?delay=0.2") as resp:
            await resp.read()
            return resp.status

    assert await asyncio.gather(*(slow() for _ in range(6))) == [200] * 6
    assert trace.max_active == 2
    for _ in range(5):
        async with client.get(gw + "/echo/seq") as resp:
            await resp.read()
    assert len(trace.peers) <= 2


async def test_upstream_refused_is_502_problem_and_logged(
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """Nothing listening upstream: a quick 502 problem+json, logged with the request id."""
    gw = await start_gateway(upstream={"url": f"http://127.0.0.1:{_closed_port()}"})
    started = time.monotonic()
    async with client.get(gw + "/anything", headers={"X-Request-ID": "refused-1"}) as resp:
        assert resp.status == 502
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
        assert resp.headers["X-Request-ID"] == "refused-1"
    assert time.monotonic() - started < 1.5
    assert problem["status"] == 502
    assert problem["reason"] == "upstream-refused"
    assert {"type", "title", "detail"} <= problem.keys()
    assert any(
        line.get("request_id") == "refused-1" and line.get("reason") == "upstream-refused"
        for line in json_logs()
    )


async def test_upstream_reset_is_502(
    gw: str, client: aiohttp.ClientSession, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    """The upstream dropping the connection before answering is a 502 problem."""
    async with client.get(gw + "/reset", headers={"X-Request-ID": "reset-1"}) as resp:
        assert resp.status == 502
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["reason"] == "upstream-broken"
    assert any(line.get("request_id") == "reset-1" for line in json_logs())


async def test_upstream_slower_than_read_timeout_is_504(
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """An upstream silent for read_timeout (1 s) gets a 504 after about that long, not later."""
    gw = await start_gateway(upstream={"read_timeout": 1})
    started = time.monotonic()
    async with client.get(gw + "/slow?delay=3", headers={"X-Request-ID": "slow-1"}) as resp:
        assert resp.status == 504
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed <= 2.5, elapsed
    assert problem["reason"] == "upstream-timeout"
    assert any(
        line.get("request_id") == "slow-1" and line.get("reason") == "upstream-timeout"
        for line in json_logs()
    )


async def test_slow_upload_is_not_cut_by_read_timeout(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """Sending a body longer than read_timeout is fine: the timer runs while awaiting the answer."""
    gw = await start_gateway(upstream={"read_timeout": 0.5})
    size = 12 * 64 * 1024
    async with client.post(gw + "/sink", data=_generated(size, 64 * 1024, pause=0.1)) as resp:
        assert resp.status == 200
        assert (await resp.json())["sha256"] == _generated_sha256(size, 64 * 1024)


async def test_upstream_cut_mid_body_truncates_the_answer(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """Once streaming began an error cannot become a 502: the client sees a cut, not a short 200."""
    async with client.get(gw + "/cut") as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_client_leaving_mid_download_leaves_the_gateway_healthy(
    gw: str,
    client: aiohttp.ClientSession,
    trace: Trace,
    json_logs: Callable[[], list[dict[str, Any]]],
) -> None:
    """A client hanging up during a large download ends the transfer (logged as the client's
    doing, not an upstream failure); the half-read upstream connection is not reused."""
    async with client.get(gw + f"/stream?size={512 * MiB}") as resp:
        await resp.content.readexactly(MiB)
        resp.close()
    async with asyncio.timeout(10):
        while not any(line["event"] == "client_went_away" for line in json_logs()):
            await asyncio.sleep(0.02)
    assert not any(line["event"] == "upstream_failed_mid_response" for line in json_logs())
    for _ in range(3):
        async with client.get(gw + "/stream?size=1000") as resp:
            assert len(await resp.read()) == 1000
    assert len(trace.peers) == 2


# ------------------------------------------------------------------ what is never proxied


@pytest.mark.parametrize(
    "target",
    [
        "/internal/uploads/photos",
        "/internal/uploads/photos/",
        "/internal/uploads/photos/x",
        "/INTERNAL/Uploads/photos",
        "/internal//uploads/photos",
        "/internal/./uploads/photos",
        "/internal/uploads/photos%2Fx",
        "/internal%2Fuploads%2Fphotos",
        "/internal/uploads/photos?x=1",
        "/internal/uploads/photos;jsessionid=1",
        "/internal;x/uploads/photos",
        "/internal\\uploads\\photos",
        "/x/%2e%2e/internal/uploads/photos",
        "http://gw/internal/uploads/photos",
        # A fragment: aiohttp, Werkzeug and Node's URL parsers end the path at "#".
        "/internal/uploads/photos#x",
        "/internal/uploads/photos#",
        "/internal/uploads/photos?#x",
        "/internal/uploads/photos?a=1#x",
        "http://gw/internal/uploads/photos#f",
        "HTTP://gw/internal/uploads/photos?a#f",
        # Empty, dot and param segments, as each kind of upstream stack resolves them.
        "//internal/uploads/photos",
        "/internal/uploads/photos/.",
        "/internal/uploads/photos/./",
        "/internal/uploads/x/../photos",
        "/internal/uploads//../photos",
        "/internal/uploads/photos/..;/photos",
        "/internal/uploads/photos;",
        "/internal/uploads/photos?",
        # //host/path: a network-path reference to WHATWG URL and urllib.
        "//evil.example/internal/uploads/photos",
        "/\\evil.example/internal/uploads/photos",
        "/%2F/internal/uploads/photos",
        # Decoded, then parsed again: a decoded ? # or ; ends the path or its segment.
        "/internal/uploads/photos%3Fx",
        "/internal/uploads/photos%23x",
        "/internal/uploads/photos%3bx",
        "/internal/uploads/photos%2f",
        # IIS's %u escapes and NFKC's fullwidth solidus.
        "/internal%u002fuploads/photos",
        "/internal/uploads%EF%BC%8Fphotos",
    ],
)
async def test_forward_paths_are_never_proxied(gw: str, trace: Trace, target: str) -> None:
    """Only the gateway calls a route's forward path: a client asking for it in any spelling
    gets 404, or 400 for a target with a fragment, and the upstream sees nothing."""
    head, body = await _raw(
        _port(gw),
        f"POST {target} HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"
        f"Connection: close\r\n\r\n{{}}".encode(),
    )
    status = 400 if "#" in target else 404
    assert head.startswith(f"HTTP/1.1 {status}".encode()), head
    assert b"application/problem+json" in head
    assert json.loads(body)["status"] == status
    assert trace.paths == []


@pytest.mark.parametrize(
    "target",
    [
        "/echo/x#f",
        "/echo/x?q=1#f",
        "/echo/x#",
        "http://gw/echo/x#f",
        "/-/healthz#f",
        "/uploads/photos/config#f",
        "http://gw/uploads/photos/signature#f",
    ],
)
async def test_a_fragment_is_refused_on_every_way_in(gw: str, trace: Trace, target: str) -> None:
    """A request target holds no fragment (RFC 9112 3.2): one with ``#`` gets a 400 problem
    whether the front would send it straight to the proxy or through the router (the gateway's
    own paths), in origin and absolute form; nothing reaches the upstream."""
    head, body = await _raw(
        _port(gw),
        f"POST {target} HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n"
        f"Connection: close\r\n\r\n{{}}".encode(),
    )
    assert head.startswith(b"HTTP/1.1 400"), head
    assert b"application/problem+json" in head
    assert json.loads(body)["reason"] == "fragment-in-target"
    assert trace.paths == []


async def test_absolute_form_target_goes_to_the_configured_upstream(gw: str, trace: Trace) -> None:
    """``GET http://other-host/path`` (RFC 9112 absolute form) forwards only path and query to
    the configured upstream: the client's host never picks where the request goes."""
    head, body = await _raw(
        _port(gw),
        b"GET http://evil.example:9/echo/abs?q=%2F HTTP/1.1\r\nHost: evil.example\r\n"
        b"Connection: close\r\n\r\n",
    )
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body)["raw_path"] == "/echo/abs?q=%2F"
    assert trace.paths == ["/echo/abs?q=%2F"]


@pytest.mark.parametrize(
    "target",
    [
        "/internal/uploads/photosx",
        "/internal/uploads/photos-2",
        "/internal/uploads/photo%73x",
        "/echo/internal/uploads/photos",
        "/echo/a%23b/internal/uploads/photos",
    ],
)
async def test_lookalike_of_a_forward_path_is_proxied(gw: str, trace: Trace, target: str) -> None:
    """Only the forward path and below are reserved: a sibling, a path holding it further down,
    and ``%23`` (a literal ``#`` in a segment, not a fragment) are the app's, byte for byte."""
    head, body = await _raw(
        _port(gw), f"GET {target} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode()
    )
    assert head.startswith(b"HTTP/1.1 200"), head
    assert json.loads(body)["raw_path"] == target
    assert trace.paths == [target]


async def test_healthz_is_answered_by_the_gateway(
    gw: str, client: aiohttp.ClientSession, trace: Trace
) -> None:
    """GET /-/healthz answers 200 itself; nothing under /-/ is ever proxied."""
    async with client.get(gw + "/-/healthz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}
    async with client.head(gw + "/-/healthz") as resp:
        assert resp.status == 200
    async with client.get(gw + "/-/no-such-thing") as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
    assert trace.paths == []


async def test_healthz_answers_with_the_upstream_down(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """Liveness does not depend on the upstream (that is readyz's job)."""
    gw = await start_gateway(upstream={"url": f"http://127.0.0.1:{_closed_port()}"})
    async with client.get(gw + "/-/healthz") as resp:
        assert resp.status == 200


async def test_custom_ops_prefix(
    start_gateway: StartGateway, client: aiohttp.ClientSession, trace: Trace
) -> None:
    """With ops_prefix /_gw, /_gw/healthz is the gateway's and /-/healthz is the app's."""
    gw = await start_gateway(ops_prefix="/_gw")
    async with client.get(gw + "/_gw/healthz") as resp:
        assert await resp.json() == {"status": "ok"}
    async with client.get(gw + "/-/healthz") as resp:
        assert (await resp.json())["raw_path"] == "/-/healthz"
    assert trace.paths == ["/-/healthz"]


@pytest.fixture
async def short_cut_upstream(aiohttp_server: Any) -> str:
    """An upstream promising 10,000 bytes and closing after 1,000 (a small sized answer)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10_000
        await response.prepare(request)
        await response.write(b"x" * 1000)
        assert request.transport is not None
        request.transport.abort()
        return response

    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    server: TestServer = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


async def test_small_answer_cut_short_is_502_not_a_short_200(
    start_gateway: StartGateway, short_cut_upstream: str, client: aiohttp.ClientSession
) -> None:
    """A small sized answer is read whole before anything is sent, so an upstream that breaks
    off inside it still gets the client a 502 problem, never 1,000 bytes labelled 10,000."""
    gw = await start_gateway(upstream={"url": short_cut_upstream})
    async with client.get(gw + "/small") as resp:
        assert resp.status == 502
        assert resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["reason"] == "upstream-broken"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in the metrics")


async def test_upstream_latency_is_observed_per_proxied_request(
    gw: str, client: aiohttp.ClientSession
) -> None:
    """Each proxied request adds one sample to gateway_upstream_latency_seconds (the proxy
    times its own upstream calls; no aiohttp tracing does it any more)."""
    async with client.get(gw + "/-/metrics") as resp:
        before = _metric(await resp.text(), "gateway_upstream_latency_seconds_count")
    for path in ("/echo/1", "/stream?size=100000", "/status/404"):
        async with client.get(gw + path) as resp:
            await resp.read()
    async with client.get(gw + "/-/metrics") as resp:
        text = await resp.text()
    assert _metric(text, "gateway_upstream_latency_seconds_count") == before + 3
    assert _metric(text, "gateway_upstream_latency_seconds_sum") > 0


async def test_connection_reused_after_a_head_and_a_204(
    gw: str, client: aiohttp.ClientSession, trace: Trace
) -> None:
    """Answers without a body (HEAD, 204, 304) leave the upstream connection reusable: a run of
    them and ordinary requests one after another uses one connection."""
    sequence = [
        ("HEAD", "/echo/a"),
        ("GET", "/status/204"),
        ("GET", "/status/304"),
        ("GET", "/echo/b"),
        ("HEAD", "/echo/c"),
        ("GET", "/echo/d"),
    ]
    for method, path in sequence:
        async with client.request(method, gw + path) as resp:
            await resp.read()
    assert len(trace.peers) == 1


async def test_readyz_never_queues_behind_proxied_requests(
    start_gateway: StartGateway, client: aiohttp.ClientSession, trace: Trace
) -> None:
    """readyz pings the upstream through a connection of its own: with the one proxy connection
    held by a slow answer (4 s, twice readyz's own timeout) and another proxied request queued
    behind it, readyz finds the upstream ok while the slow answer still runs, the upstream
    seeing its ping beside the slow request."""
    gw = await start_gateway(upstream={"max_connections": 1, "pool_timeout": 10})

    async def get(path: str) -> int:
        async with client.get(gw + path) as resp:
            await resp.read()
            return resp.status

    held = asyncio.ensure_future(get("/slow?delay=4"))
    async with asyncio.timeout(5):
        while "/slow?delay=4" not in trace.paths:
            await asyncio.sleep(0.01)
    queued = asyncio.ensure_future(get("/echo/queued"))
    async with client.get(gw + "/-/readyz") as resp:
        body = await resp.json()
    assert body["checks"]["upstream"] == "ok"
    assert not held.done()
    assert await held == 200 and await queued == 200
    assert trace.paths == ["/slow?delay=4", "/", "/echo/queued"]
    assert trace.max_active == 2


async def test_request_waiting_past_pool_timeout_is_503_with_retry_after(
    start_gateway: StartGateway, client: aiohttp.ClientSession, trace: Trace
) -> None:
    """A request that finds every pooled connection busy for upstream.pool_timeout is answered
    503 problem+json with Retry-After (the wait rounded up) and is never sent; the pool serves
    the next request once a connection comes back."""
    gw = await start_gateway(upstream={"max_connections": 1, "pool_timeout": 0.4})
    held = asyncio.ensure_future(client.get(gw + "/slow?delay=1.5"))
    async with asyncio.timeout(5):
        while "/slow?delay=1.5" not in trace.paths:
            await asyncio.sleep(0.01)
    started = time.monotonic()
    async with client.get(gw + "/echo/turned-away") as resp:
        body = await resp.json(content_type=None)
        took = time.monotonic() - started
        assert resp.status == 503
        assert resp.headers["Content-Type"] == "application/problem+json"
        assert resp.headers["Retry-After"] == "1"
    assert body["reason"] == "upstream-busy"
    assert 0.35 <= took < 1.2, took
    (await held).release()
    async with client.get(gw + "/echo/after") as resp:
        assert resp.status == 200
    assert trace.paths == ["/slow?delay=1.5", "/echo/after"]


async def test_upstream_that_never_accepts_is_504_after_connect_timeout(
    start_gateway: StartGateway, client: aiohttp.ClientSession
) -> None:
    """An app whose listen queue is full takes no connection (its SYNs go unanswered): the
    client gets 504 upstream-timeout once upstream.connect_timeout has passed, as
    docs/configuration.md says, not a 502 and not a hang."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    # Connections the app never accepts fill its queue; the kernel then drops further SYNs.
    fillers = [socket.socket() for _ in range(3)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))  # EINPROGRESS: left pending, never accepted
        gw = await start_gateway(
            upstream={"url": f"http://127.0.0.1:{port}", "connect_timeout": 0.5}
        )
        started = time.monotonic()
        async with client.get(gw + "/anything") as resp:
            assert resp.status == 504
            problem = await resp.json(content_type=None)
        assert problem["reason"] == "upstream-timeout"
        assert 0.4 < time.monotonic() - started < 5
    finally:
        for filler in fillers:
            filler.close()
        listener.close()



RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_upstream() -> AsyncIterator[Callable[[RawHandler], Awaitable[str]]]:
    """``await raw_upstream(handler)``: a bare asyncio server's URL, for the misbehaviours an app
    framework will not produce on demand; closed after the test."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: RawHandler) -> str:
        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await handler(reader, writer)
            finally:
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start
    for server in servers:
        server.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


async def test_an_answer_before_the_whole_body_never_pools_the_connection(
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    raw_upstream: Callable[[RawHandler], Awaitable[str]],
) -> None:
    """An upstream that answers (413, keep-alive) before a request's body is all sent: the
    client gets that answer, and the upstream connection, left mid-body, is closed rather than
    pooled: the next request goes on a new connection instead of being read as the rest of the
    first one's body (a desync an attacker could use to smuggle a request)."""
    heads: list[bytes] = []
    leftovers: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        heads.append(head.split(b"\r\n", 1)[0])
        if head.startswith(b"POST"):
            writer.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nnope")
            await writer.drain()
            # All the gateway sends on this connection until it closes it.
            leftovers.append(await reader.read())
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
            await writer.drain()
            await reader.read()

    upstream = await raw_upstream(handler)
    gw = await start_gateway(upstream={"url": upstream, "read_timeout": 2, "max_connections": 1})
    reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.rsplit(":", 1)[1]))
    head = b"POST /early HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100000\r\n\r\n"
    writer.write(head + b"b" * 1000)
    await writer.drain()
    answer = await asyncio.wait_for(reader.readuntil(b"nope"), 5)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    writer.close()
    async with client.get(gw + "/next") as resp:
        assert (resp.status, await resp.read()) == (200, b"next")
    assert heads == [b"POST /early HTTP/1.1", b"GET /next HTTP/1.1"]
    async with asyncio.timeout(5):
        while not leftovers:
            await asyncio.sleep(0.01)
    assert b"GET" not in leftovers[0]


@pytest.mark.parametrize("body", [None, b"x" * 100_000], ids=["no-body", "streamed-body"])
async def test_an_upstream_silent_after_a_1xx_is_504(
    start_gateway: StartGateway,
    client: aiohttp.ClientSession,
    raw_upstream: Callable[[RawHandler], Awaitable[str]],
    body: bytes | None,
) -> None:
    """An upstream that sends 103 Early Hints (any 1xx) and then nothing: the client gets 504
    upstream-timeout within the upstream's timeouts, not a request (and an upstream connection)
    held for ever, with or without a body streamed first."""

    async def hints_then_nothing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if body is not None:
            assert b"\r\nContent-Length: 100000\r\n" in head
            await reader.readexactly(len(body))
        writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    upstream = await raw_upstream(hints_then_nothing)
    gw = await start_gateway(
        upstream={"url": upstream, "read_timeout": 0.5, "connect_timeout": 0.5}
    )
    started = time.monotonic()
    async with asyncio.timeout(10), client.post(gw + "/hints", data=body) as resp:
        assert resp.status == 504
        assert (await resp.json(content_type=None))["reason"] == "upstream-timeout"
    assert time.monotonic() - started < 3
