"""One adapter per client protocol: parse the client's request, call the core, shape the answer.

Every adapter is a ``base.UploadRoute``: constructed with the app's services and one route's
config, it fills in a routes table that the base registers. ``ADAPTERS`` is the static
registry: a route's ``protocol`` (config) names its adapter class. A new protocol is one
subclass here, one entry below and one name in the config's ``protocol`` choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .api import ApiRoute
from .base import UploadRoute
from .fineuploader import FineUploaderRoute
from .uppy import UppyRoute

ADAPTERS: Mapping[str, type[UploadRoute[Any]]] = MappingProxyType(
    {
        "fineuploader": FineUploaderRoute,
        "uppy": UppyRoute,
        "api": ApiRoute,
    }
)

__all__ = ["ADAPTERS", "UploadRoute"]
