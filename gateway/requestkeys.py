"""Typed keys for the per-request values the front and the handlers set on a request.

Apart from ``appkeys`` (which names every service class) so that the modules setting these,
the front, logs, render and the session storage, do not depend on the wiring that depends on them.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp_session import Session

from .values import Identity


# Defined here, with the key it is kept under, so that the key module depends on no service.
class SessionData(Session):
    """aiohttp-session's Session with its "changed" flag readable.

    ``Session.changed`` is a method that *marks* the session changed, so testing it as a value
    is always true; aiohttp-session's own middleware reads the private flag, as this does.
    """

    @property
    def modified(self) -> bool:
        return bool(self._changed)


REQUEST_ID = web.RequestKey("request_id", str)
SESSION: web.RequestKey[SessionData] = web.RequestKey("session")
USER: web.RequestKey[Identity | None] = web.RequestKey("user")
ROUTE_NAME = web.RequestKey("route_name", str)
# Set on requests that came in on the ops listener (config ``ops_listen``).
OPS_LISTENER = web.RequestKey("ops_listener", bool)
