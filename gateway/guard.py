"""Request hygiene before any handler: framing and targets no server should act on, slow bodies.

aiohttp's parser already refuses the request-smuggling classics (Content-Length with
Transfer-Encoding, duplicate lengths, obs-fold, bare LF) and cuts a slow head at
``limits.header_timeout``. What it lets through is refused here: Transfer-Encoding on HTTP/1.0,
a fragment, NUL or overlong UTF-8 in the target (gateway/targets.py), a Host that is not
``host[:port]``, and request bodies slower than ``limits``. The front calls ``refusal`` on every
request, whichever way it takes (its fast path to the proxy, or aiohttp's router).
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)

from . import targets
from .config import LimitsConfig
from .headers import valid_host
from .problems import BadRequest, GatewayError
from .render import problem_response

log = logging.getLogger(__name__)


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
    reason = targets.refusal(request.raw_path)
    if reason is not None:
        raise BadRequest(targets.REFUSALS[reason], reason=reason)
    host = request.headers.get("Host")
    if host is not None and not valid_host(host):
        # It would reach the upstream as X-Forwarded-Host, where a comma, a space or an "@"
        # reads as a list, a second value or credentials.
        raise BadRequest("the Host header must be host[:port]", reason="bad-host")
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


# The reason of a parser refusal, from the first line of aiohttp's message (llhttp's own
# description, never the client's bytes, which follow it); the first text found wins.
_PARSER_REASONS = (
    ("Duplicate '", "duplicate-header"),
    ("Too many headers", "too-many-headers"),
    ("Missing 'Host'", "no-host"),
    ("Content-Length", "bad-framing"),
    ("Transfer-Encoding", "bad-framing"),
    ("chunk", "bad-framing"),
    ("Chunk", "bad-framing"),
    ("header", "bad-header"),
)

PARSER_DETAILS = {
    "line-too-long": "the request line or a header line is longer than the gateway accepts",
    "bad-method": "the request line's method is not an HTTP method",
    "bad-request-line": "the request line is not METHOD TARGET HTTP/1.x",
    "bad-target": "the request target is not a path or an http(s) URL",
    "bad-framing": "the body's framing (Content-Length, Transfer-Encoding, chunks) is invalid",
    "bad-header": "a header line is malformed or holds a character HTTP does not allow",
    "duplicate-header": "a header that may appear once appears twice",
    "too-many-headers": "the request has more header lines than the gateway accepts",
    "no-host": "an HTTP/1.1 request must have a Host header",
    "bad-request": "the request is not valid HTTP/1.1",
}


def parser_reason(exc: HttpProcessingError) -> str:
    """The problem reason (a key of PARSER_DETAILS) of what aiohttp's parser refused."""
    if isinstance(exc, LineTooLong):
        return "line-too-long"
    if isinstance(exc, BadHttpMethod):
        return "bad-method"
    if isinstance(exc, BadStatusLine):
        return "bad-request-line"
    if isinstance(exc, InvalidURLError):
        return "bad-target"
    if isinstance(exc, PayloadEncodingError):
        return "bad-framing"
    if isinstance(exc, InvalidHeader):
        return "bad-header"
    first_line = exc.message.split("\n", 1)[0]
    for text, reason in _PARSER_REASONS:
        if text in first_line:
            return reason
    return "bad-request"


def parser_refusal(exc: HttpProcessingError) -> web.Response:
    """The answer to a request aiohttp's parser refused: one info line and a 400 problem, with
    the reason and never the request's text (aiohttp's own answer and log line quote the
    offending line, which may be a Cookie or Authorization header, or a presigned query)."""
    reason = parser_reason(exc)
    log.info("request_refused", extra={"reason": reason, "status": 400})
    response = problem_response(BadRequest(PARSER_DETAILS[reason], reason=reason), None)
    response.force_close()
    return response
