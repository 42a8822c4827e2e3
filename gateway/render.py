"""Turning the gateway's errors into responses: problem+json plus each client's own fields."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable

from aiohttp import web

from .problems import GatewayError
from .requestkeys import SCOPE
from .requestkeys import ProblemFields as ProblemFields
from .requestkeys import StatusText as StatusText

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
    scope = request[SCOPE]
    return problem_response(exc, scope.problem_fields, status_text=scope.status_text)


def route_handler(
    route_name: str, fields: ProblemFields | None = None, *, status_text: StatusText | None = None
) -> Callable[[Handler], Handler]:
    """Mark a handler as one upload route's: names it for logs and metrics, picks its renderer."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            scope = request[SCOPE]
            scope.route_name = route_name
            scope.problem_fields = fields
            scope.status_text = status_text
            return await handler(request)

        return wrapped

    return decorate
