"""One adapter per client protocol: parse the client's request, call the core, shape the answer.

``ADAPTERS`` is the static registry: a route's ``protocol`` (config) names the function that
adds its routes. A new protocol is one module here, one entry below and one name in the
config's ``protocol`` choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from aiohttp import web

from ..config import RouteConfig
from . import api, fineuploader, uppy

AddRoutes = Callable[[web.Application, RouteConfig], None]

ADAPTERS: Mapping[str, AddRoutes] = MappingProxyType(
    {
        "fineuploader": fineuploader.add_routes,
        "uppy": uppy.add_routes,
        "api": api.add_routes,
    }
)
