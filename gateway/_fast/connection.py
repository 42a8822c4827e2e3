"""The client connection: aiohttp's server protocol with a send timeout (``limits.send_timeout``),
answering what aiohttp's parser refuses without quoting it (``guard.parser_refusal``).

aiohttp waits for ever on a client that stops reading its answer: the handler's write waits for
the transport's buffer to drain, and whatever the handler holds (a pooled upstream connection
above all) is held with it. As nginx's ``send_timeout`` does, a connection whose client takes no
byte for ``send_timeout`` is aborted here; the write then fails as a hang-up does, and the
handler lets go of what it held.

Nothing is armed per request or per write. The transport calls ``pause_writing`` only when its
buffer passes the high-water mark (the client is not keeping up), and that is when a timer is
armed; it is never cancelled on ``resume_writing``: it looks again when it fires, and ends once
the connection writes freely. While the stall lasts it samples, every quarter of the timeout,
the bytes not yet taken (the transport's buffer and, on Linux, the socket's send queue, which
shrinks as the client reads even while the socket is not yet writable again), so a client that
reads slowly is never taken for one that reads nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import struct
import termios
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from ..guard import parser_refusal

# Linux's SIOCOUTQ: bytes in a TCP socket's send queue the peer has not acknowledged. Where
# there is none, only the transport's buffer is watched.
_OUTQ: int | None = getattr(termios, "TIOCOUTQ", None)

log = logging.getLogger(__name__)

# The event loop may run a timer up to its clock resolution early; a deadline that near is due.
_TIMER_SLACK = 0.001


class ClientConnection(RequestHandler):
    """One client connection; aborted once it has had bytes waiting for the client, none of
    them taken, for ``send_timeout`` seconds."""

    __slots__ = ("_send_timeout", "_stall_since", "_stall_size", "_stall_timer", "_tick", "_wire")

    def __init__(self, manager: web.Server, *, send_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._send_timeout = send_timeout
        self._tick = send_timeout / 4
        # The transport itself: aiohttp drops its ``transport`` when it closes one whose
        # buffer may not have drained yet, which is a stall to watch too.
        self._wire: asyncio.Transport | None = None
        # The bytes not yet taken at the last look (-1: not looked since the stall began) and
        # since when that many have waited.
        self._stall_size = -1
        self._stall_since = 0.0
        self._stall_timer: asyncio.TimerHandle | None = None

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # What aiohttp's parser refuses is answered the gateway's way: aiohttp's own answer and
        # error log line (with traceback) quote the offending line, which may be a Cookie or
        # Authorization header or a presigned query.
        if isinstance(exc, HttpProcessingError):
            return parser_refusal(exc)
        return super().handle_error(request, status, exc, message)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._wire = cast(asyncio.Transport, transport)
        super().connection_made(transport)
        task = self._task_handler
        if task is not None:
            # Closed with bytes still unsent (a keep-alive expiry, ``Connection: close``), the
            # transport waits for the client to take them before it lets go of the socket.
            task.add_done_callback(self._handler_ended)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._wire = None
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled()

    def _handler_ended(self, task: asyncio.Task[None]) -> None:
        wire = self._wire
        if wire is not None and wire.get_write_buffer_size():
            self._stalled()

    def _stalled(self) -> None:
        # A new pause follows a drain below the low-water mark: bytes were taken, so the stall
        # counts afresh from the next look.
        self._stall_size = -1
        if self._stall_timer is None and self._wire is not None:
            self._stall_timer = self._loop.call_later(self._tick, self._check_stall)

    def _check_stall(self) -> None:
        self._stall_timer = None
        wire = self._wire
        if wire is None or not (self._paused or wire.is_closing()):
            # Gone, or writing freely again: no stall to time.
            return
        size = _unsent(wire)
        if not size:
            return
        now = self._loop.time()
        if self._stall_size < 0 or size < self._stall_size:
            # The first look at this stall, or bytes were taken since the last one.
            self._stall_size, self._stall_since = size, now
        elif now - self._stall_since >= self._send_timeout - _TIMER_SLACK:
            log.info(
                "client_send_timeout",
                extra={"bytes": size, "detail": f"no byte taken in {self._send_timeout:g}s"},
            )
            wire.abort()
            return
        due = min(now + self._tick, self._stall_since + self._send_timeout)
        self._stall_timer = self._loop.call_at(due, self._check_stall)


def _unsent(wire: asyncio.Transport) -> int:
    """Bytes the client has not taken: the transport's buffer, and the socket's send queue
    where the system tells it."""
    size = wire.get_write_buffer_size()
    sock = wire.get_extra_info("socket")
    if _OUTQ is not None and sock is not None:
        try:
            queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0" * 4))[0]
        except OSError:
            return size
        size += queued
    return size


class _Server(web.Server):
    """aiohttp's low-level server, making ``ClientConnection`` protocols."""

    send_timeout: float

    def __call__(self) -> RequestHandler:
        return ClientConnection(
            self, send_timeout=self.send_timeout, loop=self._loop, **self._kwargs
        )


def install(
    server: web.Server,
    *,
    send_timeout: float,
    handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]] | None = None,
) -> None:
    """Make ``server`` (an ``AppRunner``'s, set up) open its connections as ``ClientConnection``
    and, given ``handler``, hand every request to it (the front's dispatcher, past the
    Application's own handler).

    ``AppRunner`` builds its ``web.Server`` itself and offers no way to choose the protocol or
    the handler; the event loop calls the server object for every new connection, so changing
    its class (to a subclass with only ``__call__`` overridden, and no state of its own beyond
    the timeout) is the one hook, and each connection calls the server's ``request_handler``
    attribute as it stands."""
    if handler is not None:
        server.request_handler = handler
    server.__class__ = _Server
    cast(_Server, server).send_timeout = send_timeout
