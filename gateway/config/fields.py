"""Field types and the cross-field error shared by the config models (tokens, CIDRs, origins)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError


def rule(message: str, *at: str | int) -> PydanticCustomError:
    """A cross-field error pinned to the key ``at`` (below the model raising it) that breaks it."""
    return PydanticCustomError("config_rule", "{message}", {"message": message, "at": at})


def _token(what: str) -> AfterValidator:
    def check(value: str) -> str:
        # RFC 9110 token: what header and cookie names may contain.
        if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", value):
            raise ValueError(f"is not a valid {what}")
        return value

    return AfterValidator(check)


def cidr(value: str) -> str:
    """An IP network such as ``10.0.0.0/8`` (host bits allowed), else ValueError."""
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError("is not a CIDR (e.g. 10.0.0.0/8)") from None
    return value


_MEDIA_TYPE_RE = re.compile(r"^[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)$")


def media_type(value: str) -> str:
    """A lower-cased ``type/subtype``, ``type/*`` or ``*/*`` for a route's allow-list."""
    value = value.lower()
    if value != "*/*" and not _MEDIA_TYPE_RE.match(value):
        raise ValueError("is not a media type or type/*")
    return value


def origin(value: AnyHttpUrl) -> AnyHttpUrl:
    """A ``scheme://host[:port]`` URL, as browsers send in the Origin header."""
    # Browsers send Origin as scheme://host[:port]; anything more would never match it.
    if value.path not in (None, "", "/") or value.query or value.fragment or value.username:
        raise ValueError("is not an origin: write scheme://host[:port], without a path")
    return value


HeaderName = Annotated[str, _token("header name")]
CookieName = Annotated[str, _token("cookie name")]


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, and the parsed value is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _booleans_are_not_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 and 1 as true: `port: true` would bind port 1. The JSON
        # Schema keeps the two apart too, so an editor and check-config agree.
        if info.field_name is None or not isinstance(value, int | float):
            return value
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and annotation in (int, float):
            raise ValueError("is a boolean, not a number")
        if not isinstance(value, bool) and annotation is bool:
            raise ValueError("is a number, not true or false")
        return value
