"""One adapter per client protocol: parse the client's request, call the core, shape the answer.

``ADAPTERS`` is the static registry: a route's ``protocol`` (config) names the function that
adds its routes. A new protocol is one module here, one entry below and one name in the
config's ``protocol`` choices.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from aiohttp import web

from . import api, fineuploader, uppy

# Each adapter takes its own protocol's route model (config.AnyRouteConfig), which the route's
# protocol, the key below, picked when the config was read; a Callable cannot say so, hence Any.
AddRoutes = Callable[[web.Application, Any], None]

ADAPTERS: Mapping[str, AddRoutes] = MappingProxyType(
    {
        "fineuploader": fineuploader.add_routes,
        "uppy": uppy.add_routes,
        "api": api.add_routes,
    }
)
