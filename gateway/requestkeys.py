"""Typed keys for the per-request values the front and the handlers set on a request.

Apart from ``appkeys`` (which names every service class) so that the modules setting these,
the front, logs and render, do not depend on the wiring that depends on them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .values import Identity

if TYPE_CHECKING:
    from .identity import SessionData

REQUEST_ID = web.RequestKey("request_id", str)
SESSION: web.RequestKey[SessionData] = web.RequestKey("session")
USER: web.RequestKey[Identity | None] = web.RequestKey("user")
ROUTE_NAME = web.RequestKey("route_name", str)
# Set on requests that came in on the ops listener (config ``ops_listen``).
OPS_LISTENER = web.RequestKey("ops_listener", bool)
