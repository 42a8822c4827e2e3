"""Header rules of the proxy: hop-by-hop removal, spoofed identity headers, X-Forwarded-*,
client-connection and URL-override headers, Host, Cookie.

Pure functions over multidicts, so each rule is tested on its own.
"""

from __future__ import annotations

import functools
import ipaddress
import re
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

# Only the gateway may speak these to the upstream (docs/webhooks.md).
GATEWAY_ONLY = frozenset({"x-upload-user", "x-upload-signature", "idempotency-key"})

FORWARDED = frozenset({"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded"})

# Headers by which a proxy tells the app about the client's connection: its address, scheme,
# port, host or path prefix. Frameworks read them for the client's IP (rate limits, audit logs),
# for the URLs they build (redirects, password-reset links) and for access rules. Like
# X-Forwarded-For they are kept only from trusted_proxies; every other X-Forwarded-* name
# (-Port, -Prefix, -Ssl, -Server, ...) is one of them too (matched by prefix below).
CLIENT_CONNECTION = frozenset(
    {
        "x-real-ip",
        "client-ip",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
        "x-originating-ip",
        "x-remote-ip",
        "x-remote-addr",
        "x-proxyuser-ip",
        "forwarded-for",
        "x-forwarded",
        "x-url-scheme",
        "front-end-https",
        "x-host",
        "x-original-host",
        "x-http-host-override",
    }
)

# Headers some stacks take as the request's URL in place of the request line (IIS URL Rewrite,
# Symfony and Laravel before CVE-2018-14773, ...): a way to a message path that no path check
# sees. Removed from everyone, trusted proxies too; and "Proxy", which CGI-style stacks expose
# as HTTP_PROXY, their outgoing proxy (httpoxy, CVE-2016-5385).
URL_OVERRIDES = frozenset(
    {
        "x-original-url",
        "x-rewrite-url",
        "x-override-url",
        "x-original-uri",
        "x-forwarded-uri",
        "x-forwarded-path",
        "x-envoy-original-path",
        "proxy",
    }
)

# Name prefixes dropped (after normalise): Proxy-* is hop-by-hop; X-Forwarded* describes the
# client's connection, believed only from a trusted proxy.
_PREFIXES_TRUSTED = ("proxy-",)
_PREFIXES_UNTRUSTED = ("proxy-", "x-forwarded")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


# Peers remembered per TrustedNetworks; past this many distinct peers (a gateway facing clients
# directly sees one per client) the memo starts over, so it stays bounded.
_MEMO_PEERS = 1024


def normalise(name: str) -> str:
    """Compare header names as upstream frameworks may read them: X_Upload_User is X-Upload-User.

    Several frameworks (CGI/WSGI/PHP) map ``-`` and ``_`` to the same name, so stripping by exact
    name lets a client smuggle an identity header through (oauth2-proxy's CVE-2025-64484).
    """
    return name.lower().replace("_", "-")


def _normalised_lower(lower: str) -> str:
    """``normalise`` of an already lower-cased name; most names have no ``_`` to replace."""
    return lower.replace("_", "-") if "_" in lower else lower


def connection_tokens(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Header names listed in Connection, which are hop-by-hop for this one hop."""
    values = headers.getall("Connection", ())
    if len(values) == 1:
        return _tokens(values[0])
    return frozenset().union(*map(_tokens, values))


@functools.lru_cache(maxsize=64)
def _tokens(value: str) -> frozenset[str]:
    # Nearly every answer says "keep-alive" or "close": the same few values, parsed once.
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


@functools.lru_cache(maxsize=16)
def _dropped(extra: tuple[str, ...], trusted: bool) -> frozenset[str]:
    """Normalised names no client may send upstream: GATEWAY_ONLY, the config's identity
    headers, the forwarded ones the gateway rebuilds, URL overrides, and the client-connection
    headers unless ``trusted`` (the same few sets every time)."""
    always = GATEWAY_ONLY.union(map(normalise, extra), FORWARDED, URL_OVERRIDES)
    return always if trusted else always | CLIENT_CONNECTION


def request_headers(
    incoming: CIMultiDictProxy[str],
    *,
    strip_names: Iterable[str] = (),
    extra_spoofable: Iterable[str] = (),
    trusted: bool = False,
) -> CIMultiDict[str]:
    """Headers to send upstream: no hop-by-hop, no Host, no gateway-only, forwarded or
    URL-override headers, and client-connection headers only from a ``trusted`` proxy."""
    named = connection_tokens(incoming) if "Connection" in incoming else ()
    dropped = _dropped(tuple(extra_spoofable), trusted)
    prefixes = _PREFIXES_TRUSTED if trusted else _PREFIXES_UNTRUSTED
    strip = {n.lower() for n in strip_names}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        lower = name.lower()
        normalised = _normalised_lower(lower)
        # Names are compared normalised: X_Forwarded_For reaches a WSGI/PHP app as
        # HTTP_X_FORWARDED_FOR, the same variable as the gateway's own header.
        # Hop-by-hop: the fixed set, what Connection names, and every Proxy-* header.
        if (
            lower in HOP_BY_HOP
            or lower in named
            or normalised.startswith(prefixes)
            or lower == "host"
            or lower in strip
            or normalised in dropped
        ):
            continue
        out.add(name, value)
    return out


# host[:port] (RFC 9110 7.2), narrower than the URI grammar's reg-name: a DNS name or IPv4
# address (letters, digits, "-", ".", "_"), or an IPv6 literal in brackets; no userinfo, comma,
# space or escape, which a reader of X-Forwarded-Host could take for a list or credentials.
_HOST_RE = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|[A-Za-z0-9_][A-Za-z0-9_.-]*)(?::([0-9]{1,5}))?")
# A DNS name is at most 253 characters; with brackets and a port, 262 covers every valid Host.
_LONGEST_HOST = 262


def valid_host(value: str) -> bool:
    """Whether a Host header value is ``host[:port]``; remembered per value (a gateway sees
    the same few), and a value too long for any host is refused before it is remembered."""
    return len(value) <= _LONGEST_HOST and _valid_host(value)


@functools.lru_cache(maxsize=256)
def _valid_host(value: str) -> bool:
    match = _HOST_RE.fullmatch(value)
    if match is None:
        return False
    literal, port = match.groups()
    if port is not None and int(port) > 65535:
        return False
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return False
    return True


def response_headers(
    incoming: CIMultiDictProxy[str],
    *,
    strip_names: Iterable[str] = (),
    underscored: frozenset[str] = frozenset(),
) -> list[tuple[str, str]]:
    """Headers to send back to the client: every Set-Cookie kept, hop-by-hop dropped.

    ``strip_names`` go in every spelling; ``underscored`` (normalised names, the identity's
    login/logout headers) go only when spelt with ``_``: the exact name is the identity's to
    read and take out, and a ``_`` spelling reaches a WSGI/PHP client as the same header.
    """
    named = connection_tokens(incoming) if "Connection" in incoming else ()
    strip = frozenset(map(normalise, strip_names))
    kept: list[tuple[str, str]] = []
    for name, value in incoming.items():
        lower = name.lower()
        if (
            lower in HOP_BY_HOP
            or lower in named
            or lower.startswith("proxy-")
            or (strip and _normalised_lower(lower) in strip)
            or ("_" in lower and lower.replace("_", "-") in underscored)
        ):
            continue
        kept.append((name, value))
    return kept


class TrustedNetworks(tuple[Network, ...]):
    """The ``trusted_proxies`` networks, remembering the answer for each peer already tested.

    A tuple, so it is any ``Sequence[Network]``; the peers of a gateway are few (its load
    balancers), and parsing and testing the address on every request is needless work.
    """

    _memo: dict[str, bool]

    def __new__(cls, networks: Iterable[Network]) -> TrustedNetworks:
        self = super().__new__(cls, networks)
        self._memo = {}
        return self

    def trusts(self, peer: str) -> bool:
        """``is_trusted`` for this set, remembered per peer string."""
        known = self._memo.get(peer)
        if known is None:
            known = _trusted(peer, self)
            if len(self._memo) >= _MEMO_PEERS:
                self._memo.clear()
            self._memo[peer] = known
        return known


def parse_networks(cidrs: Sequence[str]) -> TrustedNetworks:
    """The ``trusted_proxies`` CIDRs, parsed once (hosts bits allowed, as nginx does)."""
    return TrustedNetworks(ipaddress.ip_network(c, strict=False) for c in cidrs)


def is_trusted(peer: str | None, networks: Sequence[Network]) -> bool:
    """Whether the direct peer is one of ``trusted_proxies``."""
    if not peer or not networks:
        return False
    if isinstance(networks, TrustedNetworks):
        return networks.trusts(peer)
    return _trusted(peer, networks)


def _trusted(peer: str, networks: Sequence[Network]) -> bool:
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


def upstream_cookie(lines: Sequence[str], session_cookie: str) -> str:
    """The client's Cookie lines as the one Cookie header the upstream gets, without the
    gateway's session cookie (empty when nothing is left). Several lines are joined with "; ",
    as RFC 9113 8.2.3 has an HTTP/2 to HTTP/1.1 hop do: a framework reading one line would
    otherwise see some of the cookies and the gateway's callers others."""
    return strip_cookie(lines[0] if len(lines) == 1 else "; ".join(lines), session_cookie)


def strip_cookie(cookie_header: str, name: str) -> str:
    """The Cookie header without the gateway's own session cookie (the upstream never needs it)."""
    kept = [
        part
        for part in (p.strip() for p in cookie_header.split(";"))
        if part and part.split("=", 1)[0].strip() != name
    ]
    return "; ".join(kept)
