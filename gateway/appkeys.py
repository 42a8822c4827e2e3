"""Typed keys for what is still read from the app by key; the per-request keys live in
``requestkeys``.

The services are built once (gateway/services.py) and passed to constructors; the app holds
them under ``services.SERVICES`` for tests and tools. These three remain for the modules that
still read them from the app: the server (config, front), the proxy and identity (upstream).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .values import Clock

if TYPE_CHECKING:
    from .config import Config
    from .front import Front
    from .upstream import Upstream

CONFIG: web.AppKey[Config] = web.AppKey("config")
UPSTREAM: web.AppKey[Upstream] = web.AppKey("upstream")
FRONT: web.AppKey[Front] = web.AppKey("front")

# Re-exported: the clock's type was defined here before.
__all__ = [
    "CONFIG",
    "FRONT",
    "UPSTREAM",
    "Clock",
]
