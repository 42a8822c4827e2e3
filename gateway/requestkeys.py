"""The per-request scope: what the front and the handlers learn about one request, in one object
under one request key (``SCOPE``).

A module of its own, naming no service, so that the modules reading it, the front, logs,
render, identity and ops, do not depend on the wiring that depends on them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp_session import Session

from .problems import GatewayError
from .values import Identity

# A route's own fields in its problem+json answers (``invalid``, ``success``...).
ProblemFields = Callable[[GatewayError], dict[str, Any]]
# For clients that show the status line's text and never read the body (Uppy's aws-s3).
StatusText = Callable[[GatewayError], str]


# Defined here, with the scope that holds it, so that this module depends on no service.
class SessionData(Session):
    """aiohttp-session's Session with its "changed" flag readable.

    ``Session.changed`` is a method that *marks* the session changed, so testing it as a value
    is always true; aiohttp-session's own middleware reads the private flag, as this does.
    """

    @property
    def modified(self) -> bool:
        return bool(self._changed)


class RequestScope:
    """One request's values: made by the front for every request (gateway/front.py), before
    any handler runs; a request refused by aiohttp's parser has none."""

    __slots__ = (
        "ops_listener",
        "problem_fields",
        "request_id",
        "route_name",
        "session",
        "status_text",
        "user",
    )

    def __init__(self, request_id: str, *, ops_listener: bool = False) -> None:
        self.request_id = request_id
        # Set on requests that came in on the ops listener (config ``ops_listen``).
        self.ops_listener = ops_listener
        # The upload route's name for logs and metrics; "proxy" for everything proxied.
        self.route_name = "proxy"
        # How the route renders its problems (render.route_handler).
        self.problem_fields: ProblemFields | None = None
        self.status_text: StatusText | None = None
        # The session cookie, once decrypted (only requests that need it pay for that).
        self.session: SessionData | None = None
        # Who the caller is, once known (an upload route, or an answer that logs a user in).
        self.user: Identity | None = None


SCOPE = web.RequestKey("scope", RequestScope)
