"""CSRF defence of the upload routes: state-changing requests must come from an allowed origin."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from .problems import OriginRefused

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


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
