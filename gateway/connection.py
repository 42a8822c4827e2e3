"""The client connection: aiohttp's server protocol with a send timeout (``limits.send_timeout``).

aiohttp waits for ever on a client that stops reading its answer: the handler's write waits for
the transport's buffer to drain, and whatever the handler holds (a pooled upstream connection
above all) is held with it. As nginx's ``send_timeout`` does, a connection whose client takes no
byte for ``send_timeout`` is aborted here; the write then fails as a hang-up does, and the
handler lets go of what it held.

Nothing is armed per request or per write. The transport calls ``pause_writing`` only when its
buffer passes the high-water mark (the client is not keeping up), and that is when the one
timer is armed; it is never cancelled on ``resume_writing``: like the forwarder's read deadline
it re-checks when it fires, and ends when the connection writes freely again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

# The event loop may run a timer up to its clock resolution early; a deadline that near is due.
_TIMER_SLACK = 0.001


class ClientConnection(RequestHandler):
    """One client connection; aborted once it has had bytes waiting for the client, none of
    them taken, for ``send_timeout`` seconds."""

    __slots__ = ("_send_timeout", "_stall_size", "_stall_timer", "_stalled_at", "_wire")

    def __init__(self, manager: web.Server, *, send_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._send_timeout = send_timeout
        # The transport itself: aiohttp drops its ``transport`` when it closes one whose
        # buffer may not have drained yet, which is a stall to watch too.
        self._wire: asyncio.Transport | None = None
        self._stalled_at = 0.0
        self._stall_size = 0
        self._stall_timer: asyncio.TimerHandle | None = None

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
        """Bytes wait for the client from now on: the deadline counts from here."""
        wire = self._wire
        if wire is None:
            return
        self._stalled_at = now = self._loop.time()
        self._stall_size = wire.get_write_buffer_size()
        if self._stall_timer is None:
            self._stall_timer = self._loop.call_at(now + self._send_timeout, self._check_stall)

    def _check_stall(self) -> None:
        self._stall_timer = None
        wire = self._wire
        if wire is None:
            return
        size = wire.get_write_buffer_size()
        if not size or not (self._paused or wire.is_closing()):
            # Writing freely again (or nothing left to send): no stall to time.
            return
        now = self._loop.time()
        due = self._stalled_at + self._send_timeout
        if now < due - _TIMER_SLACK:
            # Paused again since this timer was armed: the deadline moved.
            self._stall_timer = self._loop.call_at(due, self._check_stall)
            return
        if size < self._stall_size:
            # Some bytes went out (the client reads, slowly): a new period starts.
            self._stalled_at, self._stall_size = now, size
            self._stall_timer = self._loop.call_at(now + self._send_timeout, self._check_stall)
            return
        log.info(
            "client_send_timeout",
            extra={"bytes": size, "detail": f"no byte taken in {self._send_timeout:g}s"},
        )
        wire.abort()


class _Server(web.Server):
    """aiohttp's low-level server, making ``ClientConnection`` protocols."""

    send_timeout: float

    def __call__(self) -> RequestHandler:
        return ClientConnection(
            self, send_timeout=self.send_timeout, loop=self._loop, **self._kwargs
        )


def install(server: web.Server, *, send_timeout: float) -> None:
    """Make ``server`` (an ``AppRunner``'s, set up) open its connections as ``ClientConnection``.

    ``AppRunner`` builds its ``web.Server`` itself and offers no way to choose the protocol;
    the event loop calls the server object for every new connection, so changing its class
    (to a subclass with only ``__call__`` overridden, and no state of its own beyond the
    timeout) is the one hook."""
    server.__class__ = _Server
    cast(_Server, server).send_timeout = send_timeout
