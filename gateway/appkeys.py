"""Typed keys for the state ``create_app`` builds; the per-request scope is in ``requestkeys``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .values import Clock

if TYPE_CHECKING:
    from .completion import Completion
    from .completion.owners import OwnerBook
    from .config import Config
    from .front import Front
    from .identity import IdentityService
    from .metrics import Metrics
    from .signing import SigningKeys
    from .storage import Storage
    from .tokens import TokenSealer
    from .upstream import Upstream

CONFIG: web.AppKey[Config] = web.AppKey("config")
CLOCK: web.AppKey[Clock] = web.AppKey("clock")
UPSTREAM: web.AppKey[Upstream] = web.AppKey("upstream")
STORAGE: web.AppKey[Storage] = web.AppKey("storage")
COMPLETION: web.AppKey[Completion] = web.AppKey("completion")
OWNERS: web.AppKey[OwnerBook] = web.AppKey("owners")
IDENTITY: web.AppKey[IdentityService] = web.AppKey("identity")
SIGNING_KEYS: web.AppKey[SigningKeys] = web.AppKey("signing_keys")
TOKENS: web.AppKey[TokenSealer] = web.AppKey("tokens")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
FRONT: web.AppKey[Front] = web.AppKey("front")

# Re-exported: the clock's type was defined here before.
__all__ = [
    "CLOCK",
    "COMPLETION",
    "CONFIG",
    "FRONT",
    "IDENTITY",
    "METRICS",
    "SIGNING_KEYS",
    "STORAGE",
    "TOKENS",
    "UPSTREAM",
    "Clock",
]
