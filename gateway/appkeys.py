"""Typed keys for the state ``create_app`` builds and the per-request values handlers set."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from aiohttp import web

from .config import Config

if TYPE_CHECKING:
    from .completion import Completion
    from .front import Front
    from .identity import Identity, IdentityService, SessionData
    from .metrics import Metrics
    from .signing import SigningKeys
    from .storage import Storage
    from .tokens import TokenSealer
    from .upstream import Upstream

Clock = Callable[[], datetime]

CONFIG = web.AppKey("config", Config)
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
UPSTREAM: web.AppKey[Upstream] = web.AppKey("upstream")
STORAGE: web.AppKey[Storage] = web.AppKey("storage")
COMPLETION: web.AppKey[Completion] = web.AppKey("completion")
IDENTITY: web.AppKey[IdentityService] = web.AppKey("identity")
SIGNING_KEYS: web.AppKey[SigningKeys] = web.AppKey("signing_keys")
TOKENS: web.AppKey[TokenSealer] = web.AppKey("tokens")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
FRONT: web.AppKey[Front] = web.AppKey("front")

REQUEST_ID = web.RequestKey("request_id", str)
SESSION: web.RequestKey[SessionData] = web.RequestKey("session")
USER: web.RequestKey[Identity | None] = web.RequestKey("user")
ROUTE_NAME = web.RequestKey("route_name", str)
# Set on requests that came in on the ops listener (config ``ops_listen``).
OPS_LISTENER = web.RequestKey("ops_listener", bool)
