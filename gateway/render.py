"""Turning the gateway's errors into responses: problem+json plus each client's own fields."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .problems import GatewayError
from .requestkeys import ROUTE_NAME

ProblemFields = Callable[[GatewayError], dict[str, Any]]
PROBLEM_FIELDS: web.RequestKey[ProblemFields] = web.RequestKey("problem_fields")
# For clients that show the status line's text and never read the body (Uppy's aws-s3).
StatusText = Callable[[GatewayError], str]
PROBLEM_STATUS_TEXT: web.RequestKey[StatusText] = web.RequestKey("problem_status_text")

PROBLEM_JSON = "application/problem+json"
REASON_PHRASE_LIMIT = 200

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reason_phrase(text: str) -> str | None:
    """``text`` as an HTTP/1.1 reason phrase (RFC 9112 section 4): one line of printable
    ASCII, bounded; None (the standard phrase) when nothing printable is left."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return printable[:REASON_PHRASE_LIMIT].strip() or None


def problem_response(
    exc: GatewayError,
    fields: ProblemFields | None,
    *,
    status: int | None = None,
    title: str | None = None,
    status_text: StatusText | None = None,
) -> web.Response:
    """An RFC 9457 response for ``exc``, with the adapter's fields (``invalid``, ``success``...)
    and, for adapters that ask, ``status_text(exc)`` as the status line's reason phrase."""
    body = exc.to_problem()
    if status is not None:
        body["status"] = status
    if title is not None:
        body["title"] = title
    if fields is not None:
        body.update(fields(exc))
    response = web.Response(
        status=body["status"],
        reason=None if status_text is None else reason_phrase(status_text(exc)),
        body=json.dumps(body).encode(),
        content_type=PROBLEM_JSON,
    )
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def problem_for(request: web.Request, exc: GatewayError) -> web.Response:
    """``exc`` rendered the way the request's route asked (``route_handler``)."""
    return problem_response(
        exc, request.get(PROBLEM_FIELDS), status_text=request.get(PROBLEM_STATUS_TEXT)
    )


def route_handler(
    route_name: str, fields: ProblemFields | None = None, *, status_text: StatusText | None = None
) -> Callable[[Handler], Handler]:
    """Mark a handler as one upload route's: names it for logs and metrics, picks its renderer."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            request[ROUTE_NAME] = route_name
            if fields is not None:
                request[PROBLEM_FIELDS] = fields
            if status_text is not None:
                request[PROBLEM_STATUS_TEXT] = status_text
            return await handler(request)

        return wrapped

    return decorate
