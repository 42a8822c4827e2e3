"""The proxied path's HTTP/1.1 client: a pool of keep-alive connections to the one upstream.

``ClientSession`` costs more per request than the rest of the gateway (bench/PROFILE.md): URL,
request and response objects, auto headers, connector bookkeeping. This writes the request head
as one buffer and reads the answer with aiohttp's own protocol and llhttp parser
(``ResponseHandler``, the same pairing ``ClientSession`` uses underneath), so parsing, read
timeouts and back-pressure (the transport's reading paused while the payload buffer is full)
behave as before.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from collections.abc import Iterable

from aiohttp import ClientOSError, ServerDisconnectedError
from aiohttp.client_proto import ResponseHandler
from aiohttp.streams import StreamReader
from multidict import CIMultiDictProxy
from yarl import URL

from ..pools import PoolTimeout, UpstreamConnectError

# RFC 9110 9.2.2: a request with one of these methods may be sent again when a reused
# connection turns out to have been closed by the upstream before it answered.
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# The parser's limits, as ClientSession's defaults (8190 per line and per field).
_MAX_LINE = 8190
_MAX_FIELD = 8190
_READ_BUFSIZE = 2**16

_INFORMATIONAL = range(100, 200)

# The event loop may run a timer up to its clock resolution early; a deadline that near is due.
_TIMER_SLACK = 0.001


class _Connection(ResponseHandler):
    """aiohttp's response protocol, also noting whether any byte of the current answer arrived
    (a stale keep-alive connection closes without one, which is what makes a retry safe)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.answered = False
        # The final (not 1xx) answer's head is in: read_timeout is then the parser's business.
        self.final = False
        # Whether the current parser is HEAD's (no body); None before the first request.
        self.parser_for_head: bool | None = None

    def data_received(self, data: bytes) -> None:
        if data:
            self.answered = True
        super().data_received(data)

    # read_timeout as a lazy timer: ResponseHandler cancels and re-arms a TimerHandle at the
    # start of every answer and on every read (two of each per small answer; what that costs:
    # bench/PROFILE.md); here a read only moves the deadline, and the one timer, when it
    # fires early, re-arms itself for the deadline as it now stands. A deadline only moves
    # later (read_timeout is the same for every answer on a connection), so the armed timer
    # is never late.
    _deadline: float | None = None

    def _reschedule_timeout(self) -> None:
        timeout = self._read_timeout
        if not timeout:
            self._deadline = None
            return
        self._deadline = deadline = self._loop.time() + timeout
        if self._read_timeout_handle is None:
            self._read_timeout_handle = self._loop.call_at(deadline, self._check_deadline)

    def _drop_timeout(self) -> None:
        # Between answers: a timer still armed finds no deadline and ends (it is re-armed for
        # the next answer if it is still there, which is the point of keeping it).
        self._deadline = None

    def _cancel_timer(self) -> None:
        # A closed connection's timer goes at once: armed, it would hold the connection (parser,
        # buffers) in the loop's timer queue for up to read_timeout after its end.
        self._deadline = None
        handle = self._read_timeout_handle
        if handle is not None:
            handle.cancel()
            self._read_timeout_handle = None

    def close(self) -> None:
        self._cancel_timer()
        super().close()

    def abort(self) -> None:
        self._cancel_timer()
        super().abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _check_deadline(self) -> None:
        self._read_timeout_handle = None
        deadline = self._deadline
        if deadline is None:
            return
        if self._loop.time() < deadline - _TIMER_SLACK:
            self._read_timeout_handle = self._loop.call_at(deadline, self._check_deadline)
            return
        self._on_read_timeout()

    def resume_reading(self, resume_parser: bool = True) -> None:
        # StreamReader asks for this after every read; with reading not paused there is
        # nothing to resume, and ResponseHandler would re-feed its parser and transport anyway.
        if self._reading_paused:
            super().resume_reading(resume_parser)

    async def drain(self) -> None:
        """Wait while the transport's write buffer is above its high-water mark."""
        if self.writing_paused or self.transport is None:
            await self._drain_helper()


class FastAnswer:
    """The upstream's answer: status line and headers parsed, the body still to read."""

    __slots__ = ("_conn", "_pool", "_released", "_sender", "content", "headers", "reason",
                 "status", "version")  # fmt: skip

    def __init__(
        self,
        pool: FastPool,
        conn: _Connection,
        sender: asyncio.Task[None] | None,
        status: int,
        reason: str,
        headers: CIMultiDictProxy[str],
        content: StreamReader,
        version: tuple[int, int],
    ) -> None:
        self._pool = pool
        self._conn = conn
        self._sender = sender
        self._released = False
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content = content
        self.version = version

    def release(self) -> None:
        """Give the connection back: pooled if the answer was read whole, closed otherwise."""
        if self._released:
            return
        self._released = True
        sender = self._sender
        body_sent = sender is None or (sender.done() and not sender.cancelled()
                                       and sender.exception() is None)  # fmt: skip
        if sender is not None and not sender.done():
            sender.cancel()
        reusable = body_sent and self.content.is_eof() and not self._conn.should_close
        self._pool.pool_release(self._conn, reuse=reusable)


class FastPool:
    """Keep-alive connections to one upstream, at most ``limit`` at once (callers queue, first
    come first served, at most ``pool_timeout`` seconds: then ``PoolTimeout``); ``request``
    sends one request and returns its answer's head."""

    def __init__(
        self,
        base: str,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float | None = None,
        keepalive: float = 15.0,
    ) -> None:
        url = URL(base)
        if url.scheme not in ("http", "https") or url.raw_host is None or url.port is None:
            raise ValueError(f"not an http(s) URL: {base}")
        self._host = url.raw_host
        self._port = url.port
        self._ssl: ssl.SSLContext | None = (
            ssl.create_default_context() if url.scheme == "https" else None
        )
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if url.is_default_port() else f"{host}:{self._port}"
        # A base URL with a path puts every proxied target below it, as ``Upstream.url`` does.
        self._prefix = url.raw_path.rstrip("/")
        self._limit = limit
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._pool_timeout = pool_timeout
        self._keepalive = keepalive
        self._loop: asyncio.AbstractEventLoop | None = None
        self._idle: collections.deque[tuple[_Connection, float]] = collections.deque()
        # Each resolves True when a connection may be free (or the pool closed), False when
        # its request has waited pool_timeout.
        self._waiters: collections.deque[asyncio.Future[bool]] = collections.deque()
        self._in_use = 0
        self._closed = False

    @property
    def in_use(self) -> int:
        """Connections lent out or being opened."""
        return self._in_use

    @property
    def idle(self) -> int:
        """Pooled connections waiting for a request."""
        return len(self._idle)

    @property
    def waiting(self) -> int:
        """Requests queued for a connection."""
        return len(self._waiters)

    # ------------------------------------------------------------------ the pool

    async def _acquire(self, *, fresh: bool = False) -> tuple[_Connection, bool]:
        """A connection and whether it was reused; waits in line when ``limit`` are lent out,
        at most ``pool_timeout`` seconds in all (then ``PoolTimeout``)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        first = True
        deadline: float | None = None
        while True:
            if self._closed:
                raise UpstreamConnectError("the upstream pool is closed")
            if not fresh:
                conn = self._take_idle(loop.time())
                if conn is not None:
                    self._in_use += 1
                    return conn, True
            if self._in_use < self._limit:
                break
            waiter: asyncio.Future[bool] = loop.create_future()
            # One woken but overtaken keeps its place at the front of the line.
            if first:
                self._waiters.append(waiter)
            else:
                self._waiters.appendleft(waiter)
            first = False
            # Only a request that has to queue pays for a timer; its wait is counted from the
            # first time it queued, however often it is overtaken.
            timer: asyncio.TimerHandle | None = None
            if self._pool_timeout is not None:
                if deadline is None:
                    deadline = loop.time() + self._pool_timeout
                timer = loop.call_at(deadline, _expire, waiter)
            try:
                free = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.result():
                    # Woken, then cancelled before taking the connection: the next one gets it.
                    self._wake_one()
                else:
                    self._forget(waiter)
                raise
            finally:
                if timer is not None:
                    timer.cancel()
            if not free:
                self._forget(waiter)
                # (Only the timer answers False, so pool_timeout is set.)
                raise PoolTimeout(self._pool_timeout or 0.0)
        self._in_use += 1
        try:
            conn = await self._connect(loop)
        except BaseException:
            self._in_use -= 1
            self._wake_one()
            raise
        return conn, False

    def _forget(self, waiter: asyncio.Future[bool]) -> None:
        # Deadlines pass in the order requests queued, so the one to drop is at or near the
        # front: the search is short even with a long line.
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _take_idle(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            conn, since = idle.pop()
            if now - since < self._keepalive and conn.is_connected() and not conn.should_close:
                return conn
            conn.close()
        return None

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop),
                    self._host,
                    self._port,
                    ssl=self._ssl,
                    server_hostname=self._host if self._ssl is not None else None,
                )
        except TimeoutError:
            raise
        except OSError as exc:
            raise UpstreamConnectError(f"cannot connect to the upstream: {exc}") from exc
        return conn

    def pool_release(self, conn: _Connection, *, reuse: bool) -> None:
        """Return a lent connection; ``reuse`` only if its last answer was read whole."""
        self._in_use -= 1
        if reuse and not self._closed and conn.is_connected():
            self._idle.append((conn, self._loop.time() if self._loop else 0.0))
        else:
            conn.close()
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                return

    async def close(self) -> None:
        """Close every pooled connection; lent ones close when given back."""
        self._closed = True
        while self._idle:
            self._idle.pop()[0].close()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)

    # ------------------------------------------------------------------ one exchange

    def _head(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], chunked: bool
    ) -> bytes:
        lines = [f"{method} {self._prefix}{target} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        head = "\r\n".join(lines)
        # Every name and value came through a parser that refuses CR and LF, but a header
        # split here would be request smuggling: one line per header or nothing is sent.
        if head.count("\n") != len(lines) - 1 or "\r" in head.replace("\r\n", ""):
            raise ValueError("a header name or value holds a line break")
        return (head + "\r\n\r\n").encode("utf-8", "surrogateescape")

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: StreamReader | bytes | None = None,
        *,
        chunked: bool = False,
    ) -> FastAnswer:
        """Send ``method target`` with ``headers`` (no Host: the upstream's is added) and
        ``body`` (bytes, or streamed and re-chunked when ``chunked``; the framing header, when
        not chunked, is the caller's); return once the answer's head is in.

        ``target`` is the raw path and query, sent byte for byte. Failures raise
        ``UpstreamConnectError``, ``TimeoutError`` or aiohttp's ``ClientError`` kinds.
        """
        head = self._head(method, target, headers, chunked)
        whole: bytes | None = None
        if isinstance(body, bytes):
            whole, body = body, None
        elif body is not None and body.is_eof():
            # The whole body is already here (most small requests): one write, and the bytes
            # stay in hand, so the request can be sent again on a fresh connection.
            whole, body = body.read_nowait(-1), None
        if whole is not None and chunked:
            whole = (b"%x\r\n%b\r\n0\r\n\r\n" % (len(whole), whole)) if whole else b"0\r\n\r\n"
        retry = method in IDEMPOTENT and body is None
        message = head if whole is None else head + whole
        conn, reused = await self._acquire()
        while True:
            sender: asyncio.Task[None] | None = None
            try:
                sender = self._send(conn, method, message, body, chunked)
                while True:
                    raw, payload = await conn.read()
                    if raw.code not in _INFORMATIONAL:
                        break
                    # The parser drops the deadline at the end of each answer, 1xx ones too:
                    # the final answer gets read_timeout afresh (the sender starts it instead
                    # when the body is still going out).
                    if sender is None or sender.done():
                        conn.start_timeout()
                # The final answer's head is in: read_timeout is now the parser's business.
                conn.final = True
                return FastAnswer(
                    self,
                    conn,
                    sender,
                    raw.code,
                    raw.reason,
                    raw.headers,
                    payload,
                    (raw.version.major, raw.version.minor),
                )
            except (ServerDisconnectedError, ClientOSError):
                _stop(sender)
                self.pool_release(conn, reuse=False)
                if not (retry and reused and not conn.answered):
                    raise
            except BaseException:
                _stop(sender)
                self.pool_release(conn, reuse=False)
                raise
            # The upstream closed a kept-alive connection as this request went out on it.
            conn, reused = await self._acquire(fresh=True)

    def _send(
        self,
        conn: _Connection,
        method: str,
        message: bytes,
        body: StreamReader | None,
        chunked: bool,
    ) -> asyncio.Task[None] | None:
        """Write the request (head, and the body when in hand) and start the read timeout;
        a body still to come is streamed by the task returned."""
        skip_payload = method == "HEAD"
        if conn.parser_for_head is not skip_payload:
            # llhttp starts afresh after each complete answer, so a pooled connection keeps
            # its parser; only HEAD (an answer without a body) needs another kind.
            conn.set_response_params(
                skip_payload=skip_payload,
                read_until_eof=True,
                auto_decompress=False,
                read_timeout=self._read_timeout,
                read_bufsize=_READ_BUFSIZE,
                max_line_size=_MAX_LINE,
                max_field_size=_MAX_FIELD,
            )
            conn.parser_for_head = skip_payload
        conn.answered = conn.final = False
        transport = conn.transport
        if transport is None:
            raise ServerDisconnectedError()
        transport.write(message)
        if body is None:
            # read_timeout counts from the end of the request: a slow upload is not the
            # upstream's delay.
            conn.start_timeout()
            return None
        return asyncio.ensure_future(_send_body(conn, body, chunked))


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _stop(sender: asyncio.Task[None] | None) -> None:
    if sender is not None and not sender.done():
        sender.cancel()


async def _send_body(conn: _Connection, body: StreamReader, chunked: bool) -> None:
    """Stream the client's body to the upstream, reading no faster than the upstream takes it.

    A failure on either side closes the upstream connection and is handed to the reader of the
    answer, so a request whose body broke off is never taken as complete.
    """
    try:
        while True:
            chunk = await body.readany()
            transport = conn.transport
            if transport is None or transport.is_closing():
                raise ServerDisconnectedError()
            if not chunk:
                if chunked:
                    transport.write(b"0\r\n\r\n")
                break
            if chunked:
                transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                transport.write(chunk)
            await conn.drain()
        if not conn.final:
            conn.start_timeout()
    except asyncio.CancelledError:
        conn.abort()
        raise
    except Exception as exc:
        conn.set_exception(exc)
        conn.abort()
