"""JSON log lines: one object a line, allow-listed fields, the request id read from its contextvar
(gateway/requestids.py).

Access lines skip stdlib logging's per-record machinery (a LogRecord, a stack walk, a locked
write and flush per line): they are formatted as JSON text directly and written in batches by an
``AccessLogBuffer``. Warnings and errors keep going through stdlib logging.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import select
import sys
import time
from json.encoder import encode_basestring_ascii as _json_text
from typing import Any, TextIO

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from .requestids import request_id_var
from .requestkeys import SCOPE, RequestScope

# Only these extra fields ever reach a log line: cookies, signatures, policies, presigned
# queries and keys have no field here, so they cannot be logged by accident.
ALLOWED_FIELDS = frozenset(
    {
        "method",
        "path",
        "route",
        "status",
        "bytes",
        "duration_ms",
        "user_hash",
        "reason",
        "error",
        "outcome",
        "remote",
        "upstream_status",
        "attempt",
        "detail",
        "trigger",
    }
)

ACCESS_LOGGER = "aiohttp.access"

# A write of at most PIPE_BUF bytes to a pipe is atomic (POSIX): with ``serve --workers N``
# every worker writes to one stderr pipe, so a batch goes out in whole-line pieces this size.
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 4096)

class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        # With ``serve --workers N`` several processes write to one stream: the pid says which.
        line["pid"] = record.process
        for name in ALLOWED_FIELDS:
            if name in record.__dict__:
                value = record.__dict__[name]
                if name == "path" and isinstance(value, str):
                    value = value.split("?", 1)[0]
                line[name] = value
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class AccessLogBuffer:
    """Whole log lines kept in order in memory and written in a few large writes.

    Written when ``limit`` bytes are waiting, ``delay`` seconds after the first waiting line
    (a timer on the running loop), on ``flush()`` (app cleanup, logging shutdown), or at once
    when no event loop runs.
    """

    def __init__(self, stream: TextIO, *, limit: int = 64 * 1024, delay: float = 0.1) -> None:
        self.stream = stream
        self.limit = limit
        self.delay = delay
        self._lines: list[str] = []
        self._size = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._second = -1
        self._second_text = ""

    def timestamp(self, now: float) -> str:
        """``now`` as the JSON lines' UTC time; the seconds part is formatted once a second."""
        second = int(now)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int(now * 1000) % 1000:03d}Z"

    def append(self, line: str) -> None:
        """Queue one line (no newline); it is written within ``delay`` seconds."""
        self._lines.append(line)
        self._size += len(line) + 1
        if self._size >= self.limit:
            self.flush()
            return
        timer_loop = self._timer_loop
        if timer_loop is not None and timer_loop.is_running():
            # The common case, answered without get_running_loop (a getpid syscall per call
            # in CPython 3.11): a timer is armed on the loop this runs on (one thread, one
            # running loop).
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        # A timer left on a loop that has since stopped (tests run many loops) never fires.
        if self._timer is None or timer_loop is not loop:
            self._timer = loop.call_later(self.delay, self.flush)
            self._timer_loop = loop

    def flush(self) -> None:
        """Write every waiting line now, in order, in pieces of whole lines."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_loop = None
        if not self._lines:
            return
        lines = self._lines
        self._lines = []
        self._size = 0
        piece: list[str] = []
        size = 0
        for line in lines:
            if piece and size + len(line) + 1 > _ATOMIC_WRITE:
                self._write(piece)
                piece = []
                size = 0
            piece.append(line)
            size += len(line) + 1
        self._write(piece)

    def _write(self, lines: list[str]) -> None:
        lines.append("")
        try:
            self.stream.write("\n".join(lines))
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stderr must not fail requests (stdlib logging drops the line
            # too); ValueError is what a closed file raises.
            return


class AccessLogHandler(logging.Handler):
    """The access logger's handler: holds the buffer AccessLogger writes to directly.

    Records logged the stdlib way (by anything else) go through the same buffer, in order.
    """

    def __init__(self, buffer: AccessLogBuffer) -> None:
        super().__init__()
        self.buffer = buffer
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.buffer.append(self.format(record))
        except Exception:  # logging must never raise into the caller
            self.handleError(record)

    def flush(self) -> None:
        self.buffer.flush()


def access_buffer(logger: logging.Logger) -> AccessLogBuffer | None:
    """The buffer of ``logger``'s AccessLogHandler, if ``configure`` installed one."""
    for handler in logger.handlers:
        if isinstance(handler, AccessLogHandler):
            return handler.buffer
    return None


def flush_access_log() -> None:
    """Write the access lines still waiting (app cleanup: the process may end without atexit)."""
    buffer = access_buffer(logging.getLogger(ACCESS_LOGGER))
    if buffer is not None:
        buffer.flush()


def configure(level: int = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every gateway log line to stderr (or ``stream``) as JSON; access lines batched."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    access = logging.getLogger(ACCESS_LOGGER)
    flush_access_log()
    access.handlers[:] = [AccessLogHandler(AccessLogBuffer(out))]
    access.propagate = False


def _user_hash(scope: RequestScope | None) -> str | None:
    """The caller's user hash when this request knew who it was, else None.

    Set on upload routes (identified) and on answers that carried a session user (a login, a
    refreshed session); a plain proxied request leaves the cookie undecrypted, and logging is
    no reason to pay for that on every request.
    """
    identity = None if scope is None else scope.user
    return None if identity is None else str(identity.user_hash)


class AccessLogger(AbstractAccessLogger):
    """One JSON line per request; the query string is never logged (presigned URLs live there).

    aiohttp makes one per connection; after ``configure`` they all share the access logger's
    buffer, otherwise (tests, embedding apps) lines go through stdlib logging as records.
    """

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._buffer = access_buffer(logger)
        self._pid = os.getpid()
        self._logger_name = _json_text(logger.name)

    def log(self, request: BaseRequest, response: StreamResponse, elapsed: float) -> None:
        status = response.status
        # Refusals are the gateway doing its job (info); 5xx is the upstream, S3 or a bug.
        level = logging.INFO if status < 500 else logging.WARNING
        buffer = self._buffer
        if buffer is None:
            self.logger.log(level, "request", extra=self._fields(request, response, elapsed))
            return
        if not self.logger.isEnabledFor(level):
            return
        # Written out rather than built as a dict for json.dumps: the same text (ASCII only,
        # ", " and ": ", the same key order), every string through json's own C escaping, in
        # a fraction of the time (bench/PROFILE.md).
        # None when refused before the front ran (by aiohttp's parser).
        scope = request.get(SCOPE)
        if scope is None:
            request_id, route, user_hash = None, "proxy", None
        else:
            request_id, route, user_hash = scope.request_id, scope.route_name, _user_hash(scope)
        buffer.append(
            f'{{"time": "{buffer.timestamp(time.time())}", '
            f'"level": "{"info" if level == logging.INFO else "warning"}", '
            f'"logger": {self._logger_name}, "event": "request", '
            # Absent when refused before the front ran, as JsonFormatter leaves it out.
            + ("" if request_id is None else f'"request_id": {_json_text(request_id)}, ')
            + f'"pid": {self._pid}, "method": {_json_text(request.method)}, '
            f'"path": {_json_text(request.path.split("?", 1)[0])}, '
            f'"route": {_json_text(route)}, '
            f'"status": {status}, "bytes": {response.body_length}, '
            f'"duration_ms": {round(elapsed * 1000, 2)!r}, '
            f'"user_hash": {"null" if user_hash is None else _json_text(user_hash)}}}'
        )

    @staticmethod
    def _fields(request: BaseRequest, response: StreamResponse, elapsed: float) -> dict[str, Any]:
        scope = request.get(SCOPE)
        return {
            "request_id": None if scope is None else scope.request_id,
            "method": request.method,
            "path": request.path,
            "route": "proxy" if scope is None else scope.route_name,
            "status": response.status,
            "bytes": response.body_length,
            "duration_ms": round(elapsed * 1000, 2),
            "user_hash": _user_hash(scope),
        }
