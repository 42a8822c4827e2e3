"""The YAML config: pydantic models, ``${VAR}`` interpolation, sizes, errors with YAML paths.

``load(path, environ)`` is the only place that reads the environment; everything after it gets a
frozen, typed ``Config``. Interpolation runs on the parsed tree, inside string scalars only, so a
variable's value can never change the shape of the document.
"""

from __future__ import annotations

from .errors import ConfigError, ConfigProblem
from .fields import CookieName, HeaderName
from .interpolation import interpolate
from .loading import load, parse
from .models import (
    RESERVED_PREFIX,
    AnyRouteConfig,
    ApiRouteConfig,
    AuthRequestConfig,
    CompletionConfig,
    Config,
    FineUploaderRouteConfig,
    IdentityConfig,
    LimitsConfig,
    ListenConfig,
    OpsListenConfig,
    RouteConfig,
    S3Config,
    SessionConfig,
    UppyRouteConfig,
    UpstreamConfig,
    WebhookConfig,
)
from .sizes import GiB, MiB, Size, parse_size

__all__ = [
    "RESERVED_PREFIX",
    "AnyRouteConfig",
    "ApiRouteConfig",
    "AuthRequestConfig",
    "CompletionConfig",
    "Config",
    "ConfigError",
    "ConfigProblem",
    "CookieName",
    "FineUploaderRouteConfig",
    "GiB",
    "HeaderName",
    "IdentityConfig",
    "LimitsConfig",
    "ListenConfig",
    "MiB",
    "OpsListenConfig",
    "RouteConfig",
    "S3Config",
    "SessionConfig",
    "Size",
    "UppyRouteConfig",
    "UpstreamConfig",
    "WebhookConfig",
    "interpolate",
    "load",
    "parse",
    "parse_size",
]
