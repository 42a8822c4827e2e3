"""Request hygiene before any handler: framing and targets no server should act on, slow bodies.

aiohttp's parser already refuses the request-smuggling classics (Content-Length with
Transfer-Encoding, duplicate lengths, obs-fold, bare LF) and cuts a slow head at
``limits.header_timeout``. What it lets through is refused here: Transfer-Encoding on HTTP/1.0,
NUL and overlong UTF-8 in the path, and request bodies slower than ``limits``.
"""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web

from .config import LimitsConfig
from .problems import BadRequest, GatewayError
from .render import problem_response

log = logging.getLogger(__name__)

# %00, and the overlong UTF-8 forms: C0/C1 lead bytes (2-byte encodings of ASCII, %c0%ae is
# "."), E0 80-9F and F0 80-8F (3- and 4-byte encodings of what fits in fewer). Legacy decoders
# (IIS, Tomcat before CVE-2008-2938's fix) turned these into "." and "/".
_UNSAFE_ESCAPE_RE = re.compile(r"%00|%c[01]|%e0%[89]|%f0%8", re.IGNORECASE)


class RequestTimeout(GatewayError):
    """The client sent its body too slowly; the connection was closed without an answer."""

    status = 408
    title = "Request timeout"
    default_reason = "body-timeout"


class ClientClosedRequest(GatewayError):
    """The client hung up before its answer (nginx logs these as 499); nobody reads this."""

    status = 499
    title = "Client closed request"
    default_reason = "client-went-away"


def unsafe_target(raw_path: str) -> str | None:
    """Why a raw request target must be refused (a problem reason), or None when it may pass."""
    path = raw_path.split("?", 1)[0]
    if "\x00" in path:
        return "nul-in-path"
    if _UNSAFE_ESCAPE_RE.search(path):
        return "nul-in-path" if "%00" in path else "overlong-utf8"
    return None


class BodyWatch:
    """Closes the connection of a request whose body arrives slower than ``limits`` allow.

    The allowance is ``body_timeout`` seconds, plus one second per ``body_min_rate`` bytes
    received, plus the time the connection spent paused by the gateway's own back-pressure.
    """

    def __init__(self, request: web.Request, limits: LimitsConfig) -> None:
        self._request = request
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._started = self._last = self._loop.time()
        self._paused = 0.0
        self._tick = min(1.0, limits.body_timeout / 4)
        self.fired = False
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._tick, self._check)

    def _check(self) -> None:
        self._handle = None
        content, transport = self._request.content, self._request.transport
        if content.is_eof() or transport is None or transport.is_closing():
            return
        now = self._loop.time()
        if not transport.is_reading():
            # aiohttp paused reading because the handler is not consuming: the wait is ours.
            self._paused += now - self._last
        self._last = now
        allowed = (
            self._limits.body_timeout
            + content.total_bytes / self._limits.body_min_rate
            + self._paused
        )
        if now - self._started > allowed:
            self.fired = True
            log.info(
                "client_body_timeout",
                extra={"path": self._request.path, "bytes": content.total_bytes},
            )
            transport.close()
            return
        self._handle = self._loop.call_later(self._tick, self._check)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def refusal(request: web.Request) -> web.Response | None:
    """The answer to framing no handler may see, or None; raises for an unsafe target."""
    if request.version < (1, 1) and "Transfer-Encoding" in request.headers:
        # RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty, whatever
        # a Content-Length says; the connection must close after the answer.
        error = BadRequest("Transfer-Encoding is not HTTP/1.0", reason="bad-framing")
        log.info("request_refused", extra={"reason": error.reason, "status": error.status})
        response = problem_response(error, None)
        response.force_close()
        return response
    reason = unsafe_target(request.raw_path)
    if reason is not None:
        raise BadRequest("the path holds a NUL or an overlong UTF-8 form", reason=reason)
    return None


def watch_body(request: web.Request, limits: LimitsConfig) -> BodyWatch | None:
    """A watch on the body still to come, if any; the caller cancels it when the handler ends."""
    if request.body_exists and not request.content.is_eof():
        return BodyWatch(request, limits)
    return None


def client_fault(
    request: web.Request, watch: BodyWatch | None, exc: Exception
) -> GatewayError | None:
    """What a handler's failure is when the client caused it (a body too slow, a hang-up), or
    None when it is the gateway's, the upstream's or S3's."""
    if watch is not None and watch.fired:
        return RequestTimeout("the request body arrived too slowly")
    if request.transport is None or request.transport.is_closing():
        # A read or a relay failed because the client hung up: not the gateway's fault nor the
        # upstream's, so neither an error traceback nor a 502 in the metrics.
        return ClientClosedRequest("the client closed the connection first")
    return None
