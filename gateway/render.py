"""Turning the gateway's errors into responses: problem+json plus each client's own fields."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .appkeys import ROUTE_NAME
from .problems import GatewayError

ProblemFields = Callable[[GatewayError], dict[str, Any]]
PROBLEM_FIELDS: web.RequestKey[ProblemFields] = web.RequestKey("problem_fields")

PROBLEM_JSON = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(
    exc: GatewayError,
    fields: ProblemFields | None,
    *,
    status: int | None = None,
    title: str | None = None,
) -> web.Response:
    """An RFC 9457 response for ``exc``, with the adapter's fields (``invalid``, ``success``...)."""
    body = exc.to_problem()
    if status is not None:
        body["status"] = status
    if title is not None:
        body["title"] = title
    if fields is not None:
        body.update(fields(exc))
    response = web.Response(
        status=body["status"],
        body=json.dumps(body).encode(),
        content_type=PROBLEM_JSON,
    )
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def route_handler(
    route_name: str, fields: ProblemFields | None = None
) -> Callable[[Handler], Handler]:
    """Mark a handler as one upload route's: names it for logs and metrics, picks its renderer."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapped(request: web.Request) -> web.StreamResponse:
            request[ROUTE_NAME] = route_name
            if fields is not None:
                request[PROBLEM_FIELDS] = fields
            return await handler(request)

        return wrapped

    return decorate
