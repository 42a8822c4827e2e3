"""The proxied path's HTTP/1.1 pools against real upstreams on loopback: the reflecting app, and
raw asyncio servers for the misbehaviours an app framework will not produce on demand.

Every test of the pool's interface (gateway/pools.py's ``Pool``) runs under both
``upstream.forwarder`` kinds: the fast one (gateway/_fast/forwarder.py) and the standard one on
``ClientSession``, the fallback for an aiohttp upgrade, which must behave the same. Tests of the
fast one's own machinery (its lazy read timer) say so and run under it alone."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway._fast.forwarder import FastPool, _Connection
from gateway.pools import Pool, PoolTimeout, StandardPool, UpstreamConnectError
from tests.support.gateway import FORWARDERS
from tests.support.upstream import generated_sha256, make_upstream_app

MiB = 1024 * 1024


@dataclass
class Peers:
    """Client ports the upstream saw (one per TCP connection) and the most requests at once."""

    ports: list[int] = field(default_factory=list)
    active: int = 0
    max_active: int = 0


PEERS = web.AppKey("peers", Peers)


@web.middleware
async def _count(request: web.Request, handler: Any) -> web.StreamResponse:
    peers = request.app[PEERS]
    assert request.transport is not None
    peers.ports.append(request.transport.get_extra_info("peername")[1])
    peers.active += 1
    peers.max_active = max(peers.max_active, peers.active)
    try:
        response: web.StreamResponse = await handler(request)
        return response
    finally:
        peers.active -= 1


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    """The reflecting upstream, counting connections."""
    app = make_upstream_app()
    app[PEERS] = Peers()
    app.middlewares.append(_count)
    server: TestServer = await aiohttp_server(app)
    return server


MakePool = Callable[..., Pool]
KINDS: dict[str, Callable[..., Pool]] = {"fast": FastPool, "standard": StandardPool}


@pytest.fixture(params=FORWARDERS)
def forwarder_kind(request: pytest.FixtureRequest) -> str:
    """Each interface test runs under both ``upstream.forwarder`` kinds."""
    kind: str = request.param
    return kind


async def _made(kind: Callable[..., Pool]) -> AsyncIterator[Callable[..., Any]]:
    made: list[Pool] = []

    def make(base: str, **options: Any) -> Pool:
        settings: dict[str, Any] = {"limit": 10, "connect_timeout": 2, "read_timeout": 5}
        pool = kind(base, **(settings | options))
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.close()


@pytest.fixture
async def make_pool(forwarder_kind: str) -> AsyncIterator[MakePool]:
    """``make_pool(base, **options)``: a pool of the test's kind; every one made is closed
    after the test."""
    async for make in _made(KINDS[forwarder_kind]):
        yield make


@pytest.fixture
async def make_fast_forwarder() -> AsyncIterator[Callable[..., FastPool]]:
    """``make_fast_forwarder(base, **options)``: the fast pool, for tests of its own machinery."""
    async for make in _made(FastPool):
        yield make


def _base(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def _get(pool: Pool, target: str, method: str = "GET") -> tuple[int, bytes]:
    response = await pool.request(method, target, [("X-Test", "1")])
    try:
        return response.status, await response.content.read()
    finally:
        response.release()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """``await raw_server(handler)``: a bare asyncio server's base URL, closed after the test."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: Handler) -> str:
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
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for server in servers:
        await server.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def _until_queued(pool: Pool, count: int = 1) -> None:
    """Poll until ``count`` requests wait in the pool's line."""
    async with asyncio.timeout(5):
        while pool.waiting < count:
            await asyncio.sleep(0.005)


# ------------------------------------------------------------------ pooling


async def test_sequential_requests_reuse_one_connection(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """Keep-alive: five requests in a row use one upstream connection, pooled in between."""
    pool = make_pool(_base(upstream))
    for i in range(5):
        status, body = await _get(pool, f"/echo/{i}")
        assert status == 200
        assert json.loads(body)["raw_path"] == f"/echo/{i}"
    assert len(set(upstream.app[PEERS].ports)) == 1
    assert pool.in_use == 0


async def test_limit_queues_requests_and_never_opens_more(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """With limit 2, six concurrent slow requests run two at a time on two connections; the
    rest wait their turn instead of failing or opening more."""
    pool = make_pool(_base(upstream), limit=2)
    results = await asyncio.gather(*(_get(pool, "/slow?delay=0.1") for _ in range(6)))
    assert [status for status, _ in results] == [200] * 6
    peers = upstream.app[PEERS]
    assert peers.max_active == 2
    assert len(set(peers.ports)) == 2


async def test_a_cancelled_waiter_leaves_the_line(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """A request cancelled while queued for the pool gives up its place and takes no slot."""
    pool = make_pool(_base(upstream), limit=1)
    held = await pool.request("GET", "/echo/held", [])
    queued = asyncio.ensure_future(_get(pool, "/echo/queued"))
    await _until_queued(pool)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert (pool.waiting, pool.in_use) == (0, 1)
    await held.content.read()
    held.release()
    assert await _echoed(pool, "/echo/after") == "/echo/after"
    assert pool.in_use == 0
    assert upstream.app[PEERS].ports[-1] == upstream.app[PEERS].ports[0]


async def test_a_request_queued_past_pool_timeout_gives_up_and_leaves_the_line(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """With the one connection lent out, a queued request raises PoolTimeout after
    pool_timeout (Retry-After rounded up to whole seconds) without being sent or taking a slot;
    one that queued after it still gets the connection when it comes back."""
    pool = make_pool(_base(upstream), limit=1, pool_timeout=0.5)
    held = await pool.request("GET", "/echo/held", [])
    started = time.monotonic()
    turned_away = asyncio.ensure_future(pool.request("GET", "/echo/turned-away", []))
    await _until_queued(pool)
    # Queued half a pool_timeout later: its own deadline is still ahead when the first passes.
    await asyncio.sleep(0.25)
    later = asyncio.ensure_future(_echoed(pool, "/echo/later"))
    with pytest.raises(PoolTimeout) as caught:
        await asyncio.wait_for(turned_away, 5)
    assert 0.49 <= time.monotonic() - started < 0.7
    assert caught.value.retry_after == 1
    assert not later.done()
    assert (pool.waiting, pool.in_use) == (1, 1)
    await held.content.read()
    held.release()
    assert await later == "/echo/later"
    assert (pool.waiting, pool.in_use) == (0, 0)
    assert len(upstream.app[PEERS].ports) == 2  # held and later: turned-away never went out


async def _echoed(pool: Pool, target: str) -> str:
    """The raw path the reflecting upstream says it received."""
    status, body = await _get(pool, target)
    assert status == 200
    path: str = json.loads(body)["raw_path"]
    return path


async def test_stale_pooled_connection_is_retried_for_get_only(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """An upstream closing a kept-alive connection as the next request arrives (the keep-alive
    race): a GET is sent again on a fresh connection and answered; a POST, which the upstream
    may have acted on, is not sent twice but fails."""
    connections: list[int] = []
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        first = True
        while True:
            try:
                head = await _read_head(reader)
            except asyncio.IncompleteReadError:
                return
            requests.append(head.split(b"\r\n", 1)[0])
            if not first:
                return  # closed without an answer: the request met a connection going away
            first = False
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    pool = make_pool(await raw_server(handler))
    assert await _get(pool, "/one") == (200, b"ok")
    assert await _get(pool, "/two") == (200, b"ok")
    assert len(connections) == 2
    assert requests == [b"GET /one HTTP/1.1", b"GET /two HTTP/1.1", b"GET /two HTTP/1.1"]
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await _get(pool, "/three", method="POST")
    assert requests[-1] == b"POST /three HTTP/1.1"
    assert requests.count(b"POST /three HTTP/1.1") == 1
    assert pool.in_use == 0


async def test_connection_closed_by_the_upstream_while_idle_is_not_reused(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """An idle pooled connection the upstream has closed is dropped at once; the next request
    opens a new one (no error, no retry needed: the closed connection sees no second request)."""
    closed = asyncio.Event()
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        # Only the sending half is shut: the pool's end of the connection closes on the end of
        # file, which this then reads, so the request below comes after the pool has seen it.
        writer.write_eof()
        heads.append(await reader.read())
        closed.set()

    pool = make_pool(await raw_server(handler))
    assert await _get(pool, "/a") == (200, b"ok")
    await asyncio.wait_for(closed.wait(), 5)
    assert await _get(pool, "/b") == (200, b"ok")
    assert [head.split(b" ", 2)[:2] for head in heads if head] == [
        [b"GET", b"/a"], [b"GET", b"/b"]
    ]  # fmt: skip
    assert pool.in_use == 0


async def test_connection_close_answer_is_not_pooled(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """An answer with ``Connection: close`` ends that connection's use, even read whole: the
    next request goes on a new connection (this upstream keeps reading the old one)."""
    connections: list[list[bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads: list[bytes] = []
        connections.append(heads)
        while True:
            try:
                heads.append(await _read_head(reader))
            except asyncio.IncompleteReadError:
                return
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()

    pool = make_pool(await raw_server(handler))
    assert await _get(pool, "/a") == (200, b"ok")
    assert await _get(pool, "/b") == (200, b"ok")
    assert [len(heads) for heads in connections] == [1, 1]


async def test_closed_connections_are_freed_at_once_not_after_read_timeout(
    raw_server: Callable[[Handler], Awaitable[str]], make_fast_forwarder: Callable[..., FastPool]
) -> None:
    """The fast pool's lazy read timer (its own machinery, so fast only): a connection
    that ends (here: every answer says Connection: close) leaves nothing behind: its timer is
    cancelled, not left to hold it in the loop for read_timeout."""

    async def close_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    before = {id(o) for o in gc.get_objects() if isinstance(o, _Connection)}
    pool = make_fast_forwarder(await raw_server(close_each), read_timeout=60)
    for n in range(20):
        assert await _get(pool, f"/{n}") == (200, b"ok")
    await asyncio.sleep(0.1)  # each closed transport's connection_lost runs
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, _Connection) and id(o) not in before]
    assert alive == []


# ------------------------------------------------------------------ bodies


async def test_chunked_answer_is_relayed_whole_and_the_connection_reused(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """A chunked answer arrives as its bytes (no chunk framing) and, read to its end, leaves
    the connection reusable."""
    pool = make_pool(_base(upstream))
    size = 5 * MiB + 3
    response = await pool.request("GET", f"/stream?size={size}", [])
    assert response.headers["Transfer-Encoding"] == "chunked"
    digest = hashlib.sha256()
    received = 0
    while chunk := await response.content.readany():
        digest.update(chunk)
        received += len(chunk)
    response.release()
    assert received == size
    assert digest.hexdigest() == generated_sha256(size)
    assert pool.in_use == 0
    assert await _echoed(pool, "/echo/next") == "/echo/next"
    assert len(set(upstream.app[PEERS].ports)) == 1


async def test_head_answer_has_no_body_and_keeps_the_connection(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """HEAD: the Content-Length is the GET's, no body is read, and the connection stays usable."""
    pool = make_pool(_base(upstream))
    status, body = await _get(pool, "/stream?size=1000&length=1", method="HEAD")
    assert (status, body) == (200, b"")
    assert await _echoed(pool, "/echo/after-head") == "/echo/after-head"
    assert len(set(upstream.app[PEERS].ports)) == 1


async def test_slow_reader_holds_the_upstream_back(
    aiohttp_server: Any, make_pool: MakePool
) -> None:
    """Back-pressure: while nobody reads the answer the upstream's writes stall (socket buffers
    and one read buffer, not the 256 MiB body), and reading again finishes it intact."""
    size = 256 * MiB
    sent = [0]

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = size
        await response.prepare(request)
        block = b"z" * MiB
        while sent[0] < size:
            await response.write(block)
            sent[0] += len(block)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/big", big)
    server = await aiohttp_server(app)
    pool = make_pool(_base(server))
    response = await pool.request("GET", "/big", [])
    assert len(await response.content.readexactly(MiB)) == MiB
    stable = 0
    last = -1
    async with asyncio.timeout(10):
        while stable < 10:
            await asyncio.sleep(0.02)
            stable = stable + 1 if sent[0] == last else 0
            last = sent[0]
    assert sent[0] < 32 * MiB, sent[0]
    received = MiB
    while chunk := await response.content.readany():
        received += len(chunk)
    response.release()
    assert received == size


async def test_upstream_cut_mid_body_is_an_error_not_an_end(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """An answer cut short of its Content-Length raises while reading (never a clean short
    end), and its connection is not pooled."""
    pool = make_pool(_base(upstream))
    response = await pool.request("GET", "/cut", [])
    assert response.status == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.content.read()
    response.release()
    assert pool.in_use == 0
    assert await _echoed(pool, "/echo/next") == "/echo/next"
    assert len(set(upstream.app[PEERS].ports)) == 2


async def test_cut_chunked_answer_is_an_error(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """A chunked answer closed before its last chunk raises too: close is no end for chunked."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()

    pool = make_pool(await raw_server(handler))
    response = await pool.request("GET", "/x", [])
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.content.read()
    response.release()
    assert pool.in_use == 0


async def test_unsized_answer_ends_at_the_close(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """Neither length nor chunked (HTTP/1.0 style): the body is what came before the close."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
        await writer.drain()

    pool = make_pool(await raw_server(handler))
    assert await _get(pool, "/x") == (200, b"until the end")
    assert pool.in_use == 0


async def test_interim_100_continue_is_skipped(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """A 1xx before the answer is not the answer: the caller gets the final status."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\n!"
        )
        await writer.drain()
        await reader.read()

    pool = make_pool(await raw_server(handler))
    assert await _get(pool, "/x") == (201, b"!")


async def test_a_final_answer_stalling_after_a_1xx_times_out(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """The parser drops the deadline at the end of every answer, a 100 Continue's too: the final
    answer still gets read_timeout, so an upstream that says 100 and then nothing is a 504, not
    a request (and a pooled connection) held for ever. Any upstream may send a 1xx (103 Early
    Hints, or a 100 to a client's Expect, which the fast pool forwards). The standard pool
    bounds that wait itself (aiohttp's client leaves it unbounded), from when the request
    starts: connect_timeout plus read_timeout."""

    async def continue_then_nothing(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(10)

    pool = make_pool(
        await raw_server(continue_then_nothing), read_timeout=0.3, connect_timeout=0.5
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(4):
            await pool.request("GET", "/x", [("Expect", "100-continue")])
    assert loop.time() - started < 2
    assert pool.in_use == 0


# ------------------------------------------------------------------ the request head


async def test_head_is_sent_as_given_with_the_upstreams_host(
    raw_server: Callable[[Handler], Awaitable[str]],
    make_pool: MakePool,
    forwarder_kind: str,
) -> None:
    """Method, raw target (escapes untouched), headers in order and repeated, and Host naming
    the upstream, below the base URL's path. The one difference between the two pools: the
    standard one (aiohttp's ``ClientRequest``) adds ``Content-Length: 0`` to a request without
    a body whose method is not GET, HEAD, OPTIONS or TRACE (the same message: no content),
    which no public option turns off (README, ``upstream.forwarder``)."""
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_head(reader))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        await reader.read()

    base = await raw_server(handler)
    pool = make_pool(base + "/app/")
    headers = [("X-A", "1"), ("Cookie", "a=1"), ("X-A", "2")]
    assert await _get_with(pool, "PROPFIND", "/a%2Fb/%7e?x=%2F+&y", headers) == (204, b"")
    port = base.rsplit(":", 1)[1]
    added = b"Content-Length: 0\r\n" if forwarder_kind == "standard" else b""
    assert heads == [
        b"PROPFIND /app/a%2Fb/%7e?x=%2F+&y HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode()
        + b"\r\nX-A: 1\r\nCookie: a=1\r\nX-A: 2\r\n" + added + b"\r\n"
    ]  # fmt: skip


async def _get_with(
    pool: Pool, method: str, target: str, headers: list[tuple[str, str]]
) -> tuple[int, bytes]:
    response = await pool.request(method, target, headers)
    try:
        return response.status, await response.content.read()
    finally:
        response.release()


@pytest.mark.parametrize("header", [("X-A", "1\r\nX-Evil: 1"), ("X-A\r\nX-Evil", "1"), ("X", "\r")])
async def test_a_line_break_in_a_header_is_refused(
    upstream: TestServer, make_pool: MakePool, header: tuple[str, str]
) -> None:
    """A CR or LF in a name or value would split the head (request smuggling): nothing is sent."""
    pool = make_pool(_base(upstream))
    # The fast pool says "line break"; aiohttp's "forbidden control character".
    with pytest.raises(ValueError):
        await pool.request("GET", "/echo/x", [header])
    assert upstream.app[PEERS].ports == []
    assert pool.in_use == 0


# ------------------------------------------------------------------ failures


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_refused_connection_is_a_connect_error(make_pool: MakePool) -> None:
    """Nothing listening: UpstreamConnectError (the gateway's upstream-refused), slot freed."""
    pool = make_pool(f"http://127.0.0.1:{_closed_port()}", limit=1)
    for _ in range(2):
        with pytest.raises(UpstreamConnectError):
            await pool.request("GET", "/", [])
    assert pool.in_use == 0


async def test_silent_upstream_times_out_after_read_timeout(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """No answer within read_timeout is a TimeoutError (the gateway's 504), connection dropped."""
    pool = make_pool(_base(upstream), read_timeout=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await pool.request("GET", "/slow?delay=3", [])
    assert 0.25 <= loop.time() - started < 2
    assert pool.in_use == 0


async def test_read_timeout_is_between_reads_not_for_the_whole_answer(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """An answer trickling in (a piece every 0.1 s for 1 s) is not cut by a 0.3 s read_timeout:
    each read moves the deadline on; and the connection is then pooled and reused."""
    connections: list[int] = []

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        for _ in range(2):
            await _read_head(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
            for _ in range(10):
                await asyncio.sleep(0.1)
                writer.write(b"x")
                await writer.drain()

    pool = make_pool(await raw_server(trickle), read_timeout=0.3)
    assert await _get(pool, "/a") == (200, b"x" * 10)
    assert await _get(pool, "/b") == (200, b"x" * 10)
    assert len(connections) == 1


async def test_answer_stalling_mid_body_times_out_after_read_timeout(
    raw_server: Callable[[Handler], Awaitable[str]], make_pool: MakePool
) -> None:
    """A body that stops halfway fails its reader about read_timeout after the last byte."""

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nxxxxx")
        await writer.drain()
        await asyncio.sleep(5)

    pool = make_pool(await raw_server(stall), read_timeout=0.3)
    response = await pool.request("GET", "/a", [])
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises((TimeoutError, aiohttp.ClientError)):
            await response.content.read()
    finally:
        response.release()
    assert 0.2 <= loop.time() - started < 1.5
    assert pool.in_use == 0


async def test_a_pooled_connection_idle_past_read_timeout_still_serves(
    upstream: TestServer, make_pool: MakePool
) -> None:
    """A timer armed for an answer that came in time never fires on the idle connection."""
    pool = make_pool(_base(upstream), read_timeout=0.2)
    assert (await _get(pool, "/echo/one"))[0] == 200
    await asyncio.sleep(0.5)
    assert (await _get(pool, "/echo/two"))[0] == 200
    assert len(upstream.app[PEERS].ports) == 2
    assert len(set(upstream.app[PEERS].ports)) == 1


async def test_a_request_with_expect_is_sent_whole_to_an_upstream_that_never_says_100(
    raw_server: Callable[[Handler], Awaitable[str]],
    make_pool: MakePool,
    forwarder_kind: str,
) -> None:
    """The gateway has answered a client's ``Expect: 100-continue`` itself and holds the body:
    it sends it at once, without waiting for a 100 the upstream may never send (RFC 9110
    10.1.1 lets a server just read the body). Aiohttp's ClientSession waits for that 100, with
    no read timeout running, so the standard pool drops the header (the fast one forwards it)."""

    heads: list[bytes] = []

    async def reads_the_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_head(reader))
        body = await reader.readexactly(5)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n" + body)
        await writer.drain()
        await reader.read()

    pool = make_pool(await raw_server(reads_the_body), read_timeout=2)
    headers = [("Expect", "100-continue"), ("Content-Length", "5")]
    response = await asyncio.wait_for(pool.request("POST", "/x", headers, b"hello"), 5)
    try:
        assert (response.status, await response.content.read()) == (200, b"hello")
    finally:
        response.release()
    assert (b"\r\nExpect: 100-continue\r\n" in heads[0]) == (forwarder_kind == "fast")
