"""CSRF defence of the upload routes: state-changing requests must come from an allowed origin."""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from aiohttp import web

from .problems import BadRequest, OriginRefused

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# host[:port] (RFC 9110 section 7.2 over RFC 3986's authority, without userinfo): a DNS name or
# IPv4 address of letters, digits, "-", "_" and dots, or an IPv6 literal in brackets; a port of
# up to 5 digits. Nothing else may reach a URL the gateway builds.
_HOST_RE = re.compile(
    r"(?:(?P<name>[A-Za-z0-9_.-]{1,253})|\[(?P<ip6>[0-9A-Fa-f:.]{2,45})\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
)
_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# The longest value _HOST_RE admits: a 253-character name and a 5-digit port. Longer is refused
# before the cache, so a client sending ever-new long Hosts cannot fill it with large keys.
_LONGEST_HOST = 253 + 6
# Distinct Host values remembered: a gateway is reached under a few names, and every signing
# request checks its Host (page_origin); the oldest answers go first past the bound.
HOST_CACHE_SIZE = 256


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, lower-case, or None when it has none."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


def own_origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}".lower()


def check_origin(request: web.Request, allowed: frozenset[str]) -> None:
    """Refuse a state-changing request whose Origin (or, lacking one, Referer) is not allowed.

    With no ``public_origins`` configured only the gateway's own origin is allowed. A request
    with neither header is a non-browser client (curl, the CLI), which CSRF cannot forge.
    """
    if request.method in SAFE_METHODS:
        return
    permitted = {o.lower() for o in allowed} or {own_origin(request)}
    origin = request.headers.get("Origin")
    if origin is not None:
        if origin.lower() in permitted:
            return
        raise OriginRefused(f"origin {origin!r} may not call this route", reason="origin-refused")
    referer = request.headers.get("Referer")
    if referer is not None:
        if origin_of(referer) in permitted:
            return
        raise OriginRefused("the referring page may not call this route", reason="origin-refused")


def valid_host(host: str) -> bool:
    """Whether a Host header value is ``host[:port]`` and nothing more (no path, query, user);
    remembered per value (the answer depends on the value alone)."""
    return len(host) <= _LONGEST_HOST and _valid_host(host)


@functools.lru_cache(maxsize=HOST_CACHE_SIZE)
def _valid_host(host: str) -> bool:
    match = _HOST_RE.fullmatch(host)
    if match is None:
        return False
    port = match["port"]
    if port is not None and not 0 < int(port) <= 65535:
        return False
    if match["ip6"] is not None:
        try:
            ipaddress.IPv6Address(match["ip6"])
        except ValueError:
            return False
        return True
    labels = match["name"].removesuffix(".").split(".")
    return all(_LABEL_RE.fullmatch(label) for label in labels)


def page_origin(
    public_origins: Sequence[str],
    *,
    origin: str | None,
    referer: str | None,
    scheme: str,
    host: str | None,
) -> str:
    """The origin of the page that uploads, to make the route's blank page absolute against.

    From ``public_origins``: the one the request's Origin (or, lacking one, Referer) names,
    else the first. With none configured: ``scheme`` and the Host, which must be ``host[:port]``
    (400 ``bad-host`` otherwise, as the front already answers). Never a path, query or other
    text the request chose, so a signed ``success_action_redirect`` cannot send browsers
    anywhere else.
    """
    if public_origins:
        configured = [o.rstrip("/") for o in public_origins]
        named = origin if origin is not None else (origin_of(referer) if referer else None)
        if named is not None:
            for candidate in configured:
                if candidate.lower() == named.lower():
                    return candidate
        return configured[0]
    if host is None or not valid_host(host):
        raise BadRequest("the Host header must be host[:port]", reason="bad-host")
    return f"{scheme.lower()}://{host.lower()}"
