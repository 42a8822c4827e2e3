"""JSON log lines: one object a line, allow-listed fields, the request id from a contextvar."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

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
    }
)

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def valid_request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    return uuid.uuid4().hex


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


def configure(level: int = logging.INFO) -> None:
    """Send every gateway log line to stderr as JSON."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _user_hash(request: BaseRequest) -> str | None:
    """The caller's user hash when this request already knew who it was, else None.

    Known on upload routes (identified) and on responses that loaded the session (login,
    logout); a plain proxied request leaves the cookie undecrypted, and logging is no reason
    to pay for that on every request.
    """
    from .appkeys import IDENTITY, SESSION, USER

    identity = request.get(USER)
    if identity is not None:
        return str(identity.user_hash)
    session = request.get(SESSION)
    app = getattr(request, "app", None)  # a BaseRequest refused before routing has none
    if session is None or session.empty or app is None:
        return None
    user = session.get("user")
    if not isinstance(user, str) or not user:
        return None
    return str(app[IDENTITY].identity_for(user).user_hash)


class AccessLogger(AbstractAccessLogger):
    """One JSON line per request; the query string is never logged (presigned URLs live there)."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        from .appkeys import REQUEST_ID, ROUTE_NAME

        status = response.status
        # Refusals are the gateway doing its job (info); 5xx is the upstream, S3 or a bug.
        level = logging.INFO if status < 500 else logging.WARNING
        self.logger.log(
            level,
            "request",
            extra={
                "request_id": request.get(REQUEST_ID),
                "method": request.method,
                "path": request.path,
                "route": request.get(ROUTE_NAME, "proxy"),
                "status": status,
                "bytes": response.body_length,
                "duration_ms": round(time * 1000, 2),
                "user_hash": _user_hash(request),
            },
        )
