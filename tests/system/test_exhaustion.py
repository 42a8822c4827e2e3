"""Clients that try to hold the gateway's resources, against a real ``python -m gateway serve``.

Clients that stop reading their answers (raw sockets with a small receive buffer), and
WebSocket messages that never end; the gateway's memory is sampled from /proc while they run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
import pytest

from gateway.buckets import BucketNames
from tests.support.gateway import FORWARDERS
from tests.support.processes import GatewayProcess, RssSampler, StartProcess, rss_bytes

MiB = 1024 * 1024
P = "/uploads/photos"
MAX_CONNECTIONS = 4
POOL_TIMEOUT = 1.0
SEND_TIMEOUT = 6.0
# Far more than every buffer between the upstream and a client (socket buffers are a few MiB).
HUGE_ANSWER = 64 * MiB
# What a stalled client may cost the gateway: a few socket-sized buffers each, never its answer.
GROWTH_LIMIT = 32 * MiB


def _photos_route() -> dict[str, Any]:
    return {
        "name": "photos",
        "protocol": "fineuploader",
        "path": P,
        "max_size": "1MB",
        "forward": "/internal/uploads/photos",
    }


def _port(gateway: GatewayProcess) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


async def stalled_client(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A client that asks for ``path``, reads the first bytes of the answer and then nothing:
    its receive buffer is made small so that the gateway's writes block soon."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
    first = await loop.sock_recv(sock, 64)
    return sock, first


async def drained(sock: socket.socket, timeout: float) -> int:
    """Read ``sock`` until the gateway closes it (EOF or reset); the bytes read. Raises
    TimeoutError when it is still open after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    total = 0
    async with asyncio.timeout(timeout):
        while True:
            try:
                data = await loop.sock_recv(sock, 1 << 20)
            except ConnectionError:
                return total
            if not data:
                return total
            total += len(data)


async def timed(client: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, float, Any]:
    """Status, seconds taken and headers of one GET."""
    started = time.monotonic()
    async with client.get(url, **kw) as resp:
        await resp.read()
        return resp.status, time.monotonic() - started, resp.headers


@pytest.mark.parametrize("forwarder", FORWARDERS)
async def test_clients_that_stop_reading_never_hold_the_gateway(
    gateway_process: StartProcess, s3_endpoint: str, buckets: BucketNames, forwarder: str
) -> None:
    """Twice max_connections clients ask for 64 MiB answers, read a few bytes and stop. The
    first max_connections hold the proxy pool; the rest, and every ordinary request meanwhile,
    get 503 with Retry-After once pool_timeout passes, never hang; an auth_request identity and
    /-/readyz answer at once (pools of their own). Once no byte has been taken for
    send_timeout the stalled clients are disconnected, their upstream connections closed, and
    ordinary requests are answered 200 again; the gateway's RSS stays bounded throughout. Under
    both forwarders: the pools' limits and back-pressure are their interface."""
    gateway = await gateway_process(
        upstream={
            "max_connections": MAX_CONNECTIONS,
            "pool_timeout": POOL_TIMEOUT,
            "reserved_connections": 2,
            "read_timeout": 30,
            "forwarder": forwarder,
        },
        limits={"send_timeout": SEND_TIMEOUT},
        identity={"auth_request": {"path": "/api/me"}},
        s3={
            "endpoint_url": s3_endpoint,
            "uploads_bucket": buckets.uploads,
            "storage_bucket": buckets.storage,
        },
        routes=[_photos_route()],
    )
    port = _port(gateway)
    baseline = rss_bytes(gateway.pid)
    timeout = aiohttp.ClientTimeout(total=SEND_TIMEOUT + 10)
    async with aiohttp.ClientSession(timeout=timeout) as client:
        with RssSampler(gateway.pid) as rss:
            started = time.monotonic()
            stalled = await asyncio.gather(
                *(
                    stalled_client(port, f"/stream?size={HUGE_ANSWER}&length=1&n={i}")
                    for i in range(2 * MAX_CONNECTIONS)
                )
            )
            heads = [first.split(b"\r\n", 1)[0] for _, first in stalled]
            holding = [sock for sock, first in stalled if first.startswith(b"HTTP/1.1 200")]
            assert len(holding) == MAX_CONNECTIONS, heads
            assert heads.count(b"HTTP/1.1 503 Service Unavailable") == MAX_CONNECTIONS, heads

            # The pool is held: an ordinary request is turned away once pool_timeout passes.
            status, took, headers = await timed(client, gateway.url + "/echo/ordinary")
            assert status == 503 and headers["Retry-After"] == "1"
            assert POOL_TIMEOUT - 0.05 <= took < POOL_TIMEOUT + 1.0, took
            # auth_request and readyz do not wait for the proxy pool at all.
            auth = {"Authorization": "Bearer bob"}
            status, took, _ = await timed(client, f"{gateway.url}{P}/config", headers=auth)
            assert status == 200 and took < POOL_TIMEOUT, took
            async with client.get(gateway.url + "/-/readyz") as resp:
                assert resp.status == 200, await resp.text()
            assert time.monotonic() - started < SEND_TIMEOUT - 1, "checks ran too late"

            # Once no byte has been taken for send_timeout the stalled clients are cut off and
            # their connections come back: an ordinary request is answered again (each try
            # before then is another 503 after pool_timeout).
            while True:
                status, took, _ = await timed(client, gateway.url + "/echo/after")
                if status == 200:
                    break
                assert status == 503 and time.monotonic() - started < SEND_TIMEOUT + 5
            back = time.monotonic() - started
            assert SEND_TIMEOUT - 0.5 <= back < SEND_TIMEOUT + 3, back
            for sock in holding:
                # What the client had not read yet, then the end: never the whole answer.
                assert await drained(sock, 2.0) < HUGE_ANSWER
        for sock, _ in stalled:
            sock.close()

    mib = rss.peak / MiB
    print(f"\npool back after {back:.2f}s; gateway RSS {baseline / MiB:.1f} -> {mib:.1f} MiB")
    assert rss.samples > 10
    assert rss.peak - baseline < GROWTH_LIMIT, (baseline, rss.peak)
    log = gateway.log()
    assert log.count("client_send_timeout") == MAX_CONNECTIONS, log[-3000:]


@pytest.mark.parametrize("forwarder", FORWARDERS)
async def test_a_client_reading_in_bursts_keeps_its_answer(
    gateway_process: StartProcess, forwarder: str
) -> None:
    """send_timeout counts a stall, not the answer: a client that takes 512 KiB, then nothing
    for 0.7 s, over and over (8 MiB in some 8 s, many times send_timeout of 1 s) gets the whole
    answer; the gateway's writes block in every pause, and each pause is a stall of its own.
    Under both forwarders: the upstream's answer waits, paused, through every pause."""
    gateway = await gateway_process(limits={"send_timeout": 1}, upstream={"forwarder": forwarder})
    size = 8 * MiB
    sock, first = await stalled_client(_port(gateway), f"/stream?size={size}&length=1")
    loop = asyncio.get_running_loop()
    try:
        head, _, body = first.partition(b"\r\n\r\n")
        while not _:
            more = await loop.sock_recv(sock, 4096)
            assert more, first
            first += more
            head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        received = len(body)
        async with asyncio.timeout(60):
            while received < size:
                # The pause: shorter than send_timeout, long enough for the gateway to block.
                await asyncio.sleep(0.7)
                burst = 0
                while burst < 512 * 1024 and received < size:
                    data = await loop.sock_recv(sock, 65536)
                    assert data, f"cut after {received} of {size} bytes"
                    burst += len(data)
                    received += len(data)
        assert received == size
    finally:
        sock.close()
    assert "client_send_timeout" not in gateway.log()


async def test_no_answer_size_lets_a_non_reading_client_keep_its_connection(
    gateway_process: StartProcess,
) -> None:
    """Non-reading clients ask, with ``Connection: close``, for answers of every size from
    64 KiB to 3 MiB (16 KiB apart): whether the gateway's writes blocked (the answer larger
    than the socket buffers) or the answer was handed over whole and the connection closed
    with bytes still unsent, no connection is still the gateway's after send_timeout (a
    transport closed with unsent bytes keeps its socket until the client takes them)."""
    send_timeout = 2.0
    gateway = await gateway_process(limits={"send_timeout": send_timeout})
    port = _port(gateway)
    loop = asyncio.get_running_loop()
    clients: dict[int, socket.socket] = {}
    try:
        for size in range(64 * 1024, 3 * MiB, 16 * 1024):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients[id(sock)] = sock
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            request = f"GET /stream?size={size}&length=1 HTTP/1.1\r\nHost: gw\r\n"
            await loop.sock_sendall(sock, (request + "Connection: close\r\n\r\n").encode())
        ports = {sock.getsockname()[1] for sock in clients.values()}
        started = time.monotonic()
        gateway_side = psutil.Process(gateway.pid)
        while True:
            held = [c for c in gateway_side.net_connections() if c.raddr and c.raddr.port in ports]
            if not held or time.monotonic() - started > send_timeout + 4:
                break
            await asyncio.sleep(0.1)
        assert held == [], f"{len(held)} of {len(ports)} connections still held"
    finally:
        for sock in clients.values():
            sock.close()


# --------------------------------------------------------------------------- WebSockets


def _frame(opcode: int, payload_length: int, *, fin: bool) -> bytes:
    """A masked client frame's head (mask key 0: the payload goes as it is)."""
    first = (0x80 if fin else 0) | opcode
    if payload_length < 126:
        return bytes([first, 0x80 | payload_length]) + b"\0\0\0\0"
    if payload_length < 1 << 16:
        return struct.pack("!BBH", first, 0x80 | 126, payload_length) + b"\0\0\0\0"
    return struct.pack("!BBQ", first, 0x80 | 127, payload_length) + b"\0\0\0\0"


@pytest.fixture
async def websocket(
    gateway_process: StartProcess,
) -> AsyncIterator[tuple[GatewayProcess, socket.socket]]:
    """A gateway process (default limits) and a raw WebSocket to the upstream's echo through it."""
    gateway = await gateway_process()
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", _port(gateway)))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            sock,
            (
                "GET /ws HTTP/1.1\r\nHost: gw\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            # One byte at a time: nothing after the head may be taken here.
            byte = await loop.sock_recv(sock, 1)
            assert byte, head
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        yield gateway, sock
    finally:
        sock.close()


def _close_code(received: bytes) -> int | None:
    """The code of the close frame among the server's frames ``received``, if it is there."""
    at = 0
    while at + 2 <= len(received):
        first, second = received[at], received[at + 1]
        length, at = second & 0x7F, at + 2
        if length == 126:
            (length,), at = struct.unpack_from("!H", received, at), at + 2
        elif length == 127:
            (length,), at = struct.unpack_from("!Q", received, at), at + 8
        if at + length > len(received):
            return None
        if first & 0x0F == 0x8:
            code: int = struct.unpack_from("!H", received, at)[0]
            return code
        at += length
    return None


@pytest.mark.parametrize("shape", ["one-frame", "continuations"])
async def test_websocket_message_past_the_limit_is_closed_1009_in_bounded_memory(
    websocket: tuple[GatewayProcess, socket.socket], shape: str
) -> None:
    """A client sending one endless message, as one frame announcing 256 MiB or as binary
    continuation frames that never end, is closed with 1009 once the message passes
    limits.websocket_max_message (4 MiB by default), having sent at most 64 MiB; the gateway
    buffers no more than the limit (its RSS grows by less than 32 MiB)."""
    gateway, sock = websocket
    loop = asyncio.get_running_loop()
    baseline = rss_bytes(gateway.pid)
    block = bytes(64 * 1024)
    received = bytearray()

    async def receive() -> None:
        while _close_code(received) is None:
            try:
                data = await loop.sock_recv(sock, 65536)
            except ConnectionError:
                return
            if not data:
                return
            received.extend(data)

    receiving = asyncio.ensure_future(receive())
    sent = 0
    with RssSampler(gateway.pid, interval=0.01) as rss:
        try:
            if shape == "one-frame":
                await loop.sock_sendall(sock, _frame(0x2, 256 * MiB, fin=True))
            else:
                await loop.sock_sendall(sock, _frame(0x2, len(block), fin=False) + block)
            while sent < 64 * MiB and not receiving.done():
                if shape == "continuations":
                    await loop.sock_sendall(sock, _frame(0x0, len(block), fin=False))
                await loop.sock_sendall(sock, block)
                sent += len(block)
        except ConnectionError:
            pass
        # The close frame is on its way, or (all 64 MiB taken) the gateway never sends one.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(receiving, 10)
    print(f"\n{shape}: sent {sent / MiB:.0f} MiB before the close; gateway RSS "
          f"{baseline / MiB:.1f} -> peak {rss.peak / MiB:.1f} MiB")  # fmt: skip
    assert rss.peak - baseline < GROWTH_LIMIT, (baseline, rss.peak)
    assert _close_code(received) == 1009, bytes(received[:64])
