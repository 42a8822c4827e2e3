"""Header rules of the proxy: hop-by-hop removal, spoofed identity headers, X-Forwarded-*.

Pure functions over multidicts, so each rule is tested on its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from multidict import CIMultiDict, CIMultiDictProxy

# RFC 9110 7.6.1 and the de-facto ones nginx also drops; Proxy-* is matched by prefix below.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

# Only the gateway may speak these to the upstream (SPEC.md, "The completion").
GATEWAY_ONLY = frozenset({"x-upload-user", "x-upload-signature", "idempotency-key"})

FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalise(name: str) -> str:
    """Compare header names as upstream frameworks may read them: X_Upload_User is X-Upload-User.

    Several frameworks (CGI/WSGI/PHP) map ``-`` and ``_`` to the same name, so stripping by exact
    name lets a client smuggle an identity header through (oauth2-proxy's CVE-2025-64484).
    """
    return name.lower().replace("_", "-")


def connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> set[str]:
    """Header names listed in Connection, which are hop-by-hop for this one hop."""
    tokens: set[str] = set()
    for value in headers.getall("Connection", ()):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def _is_hop_by_hop(lower: str, named: set[str]) -> bool:
    return lower in HOP_BY_HOP or lower in named or lower.startswith("proxy-")


def request_headers(
    incoming: CIMultiDictProxy[str],
    *,
    strip_names: Iterable[str] = (),
    extra_spoofable: Iterable[str] = (),
) -> CIMultiDict[str]:
    """Headers to send upstream: no hop-by-hop, no Host, no gateway-only or forwarded headers."""
    named = connection_tokens(incoming)
    spoofable = GATEWAY_ONLY | {normalise(n) for n in extra_spoofable}
    strip = {n.lower() for n in strip_names}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        normalised = normalise(name)
        # Forwarded names are compared normalised too: X_Forwarded_For reaches a WSGI/PHP app as
        # HTTP_X_FORWARDED_FOR, the same variable as the gateway's own header.
        if (
            _is_hop_by_hop(lower, named)
            or lower == "host"
            or lower in strip
            or normalised in FORWARDED
            or normalised in spoofable
        ):
            continue
        out.add(name, value)
    return out


def response_headers(
    incoming: CIMultiDictProxy[str], *, strip_names: Iterable[str] = ()
) -> CIMultiDict[str]:
    """Headers to send back to the client: every Set-Cookie kept, hop-by-hop dropped."""
    named = connection_tokens(incoming)
    strip = {normalise(n) for n in strip_names}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        if _is_hop_by_hop(lower, named) or normalise(name) in strip:
            continue
        out.add(name, value)
    return out


def parse_networks(cidrs: Sequence[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def is_trusted(peer: str | None, networks: Sequence[Network]) -> bool:
    """Whether the direct peer is one of ``trusted_proxies``."""
    if not peer or not networks:
        return False
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])
    except ValueError:
        return False
    return any(address in net for net in networks)


def forwarded_headers(
    incoming: CIMultiDictProxy[str],
    *,
    peer: str | None,
    scheme: str,
    host: str | None,
    trusted: bool,
) -> dict[str, str]:
    """X-Forwarded-For/-Proto/-Host: extended from a trusted proxy, set afresh otherwise."""
    peer_text = peer or "unknown"
    if trusted:
        chain = ", ".join(v.strip() for v in incoming.getall("X-Forwarded-For", ()) if v.strip())
        return {
            "X-Forwarded-For": f"{chain}, {peer_text}" if chain else peer_text,
            "X-Forwarded-Proto": incoming.get("X-Forwarded-Proto", scheme),
            "X-Forwarded-Host": incoming.get("X-Forwarded-Host", host or ""),
        }
    return {
        "X-Forwarded-For": peer_text,
        "X-Forwarded-Proto": scheme,
        "X-Forwarded-Host": host or "",
    }


def strip_cookie(cookie_header: str, name: str) -> str:
    """The Cookie header without the gateway's own session cookie (the upstream never needs it)."""
    kept = [
        part
        for part in (p.strip() for p in cookie_header.split(";"))
        if part and part.split("=", 1)[0].strip() != name
    ]
    return "; ".join(kept)
