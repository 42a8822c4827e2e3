"""The proxy's header rules, function by function (gateway/headers.py)."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from gateway import headers as hdr


def _incoming(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_request_headers_drop_hop_by_hop_and_connection_named() -> None:
    """Hop-by-hop headers, and every header Connection names, belong to one hop only (RFC 9110)."""
    out = hdr.request_headers(
        _incoming(
            ("Connection", "keep-alive, X-Secret"),
            ("Connection", "X-Other"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("Proxy-Connection", "keep-alive"),
            ("Proxy-Anything", "1"),
            ("X-Secret", "hop"),
            ("X-Other", "hop"),
            ("X-Kept", "end-to-end"),
            ("Accept", "text/html"),
        )
    )
    assert list(out.items()) == [("X-Kept", "end-to-end"), ("Accept", "text/html")]


def test_request_headers_drop_host_and_client_forwarded_headers() -> None:
    """Host is the upstream's, and X-Forwarded-* / Forwarded are rebuilt by the gateway only."""
    out = hdr.request_headers(
        _incoming(
            ("Host", "gateway.example"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
            ("X_Forwarded_For", "6.6.6.6"),
            ("Forwarded", "for=6.6.6.6"),
            ("Cookie", "a=1"),
        )
    )
    assert list(out.items()) == [("Cookie", "a=1")]


def test_request_headers_keep_repeated_end_to_end_headers_in_order() -> None:
    """Repeated headers (Accept, custom lists) are forwarded as sent, every value, in order."""
    out = hdr.request_headers(_incoming(("X-L", "1"), ("Accept", "a"), ("X-L", "2")))
    assert list(out.items()) == [("X-L", "1"), ("Accept", "a"), ("X-L", "2")]


def test_request_headers_drop_extra_spoofable_and_strip_names() -> None:
    """The configured login/logout header names are removed too, in any spelling."""
    out = hdr.request_headers(
        _incoming(("x_remote_user", "mallory"), ("X-REMOTE-USER", "m"), ("X-Y", "1")),
        extra_spoofable=("X-Remote-User",),
        strip_names=("x-y",),
    )
    assert list(out.items()) == []


def test_client_connection_headers_pass_only_from_a_trusted_proxy() -> None:
    """Headers naming the client's address, scheme, port, host or prefix (every X-Forwarded-*
    among them) are dropped from a client and kept from a trusted proxy; URL overrides and Proxy
    are dropped from both, in every spelling."""
    incoming = _incoming(
        ("X-Real-IP", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("True-Client-IP", "6.6.6.6"),
        ("X-Forwarded-Port", "443"),
        ("X_Forwarded_Prefix", "/admin"),
        ("X-Original-URL", "/internal"),
        ("X_Rewrite_Url", "/internal"),
        ("Proxy", "http://evil:3128"),
        ("X-Kept", "1"),
    )
    assert list(hdr.request_headers(incoming).items()) == [("X-Kept", "1")]
    trusted = hdr.request_headers(incoming, trusted=True)
    assert list(trusted.items()) == [
        ("X-Real-IP", "6.6.6.6"),
        ("x_real_ip", "6.6.6.6"),
        ("True-Client-IP", "6.6.6.6"),
        ("X-Forwarded-Port", "443"),
        ("X_Forwarded_Prefix", "/admin"),
        ("X-Kept", "1"),
    ]


def test_valid_host_is_host_and_optional_port() -> None:
    """RFC 9110 7.2's ``uri-host [":" port]``, narrowed to names, IPv4 and bracketed IPv6:
    nothing a reader of X-Forwarded-Host could take for a list, credentials or a path."""
    for host in ("gw", "a.example.com:443", "example.com.", "10.0.0.1", "[::1]:8080", "[fe80::1]"):
        assert hdr.valid_host(host), host
    bad = ["", " gw", "a b", "a,b", "u@gw", "gw:", "gw:65536", "gw:1:2", "gw/", "[::1", "[::g]"]
    bad += ["[::1]:x", "::1", "gw%20", "\u00e9.example", "a" * 300]
    for host in bad:
        assert not hdr.valid_host(host), host


def test_upstream_cookie_joins_lines_without_the_session_cookie() -> None:
    """Several Cookie lines become one, joined with "; " (RFC 9113 8.2.3), the gateway's session
    cookie taken out of every one."""
    lines = ["a=1; gateway_session=x", "b=2", "gateway_session=y"]
    assert hdr.upstream_cookie(lines, "gateway_session") == "a=1; b=2"
    assert hdr.upstream_cookie(["gateway_session=only"], "gateway_session") == ""


_GATEWAY_ONLY = ("X-Upload-User", "X-Upload-Signature", "Idempotency-Key")


@st.composite
def _spellings(draw: st.DrawFn) -> str:
    """A gateway-only header name in random case with each '-' possibly written as '_'."""
    name = draw(st.sampled_from(_GATEWAY_ONLY))
    out = []
    for char in name:
        if char == "-":
            out.append(draw(st.sampled_from("-_")))
        else:
            out.append(char.upper() if draw(st.booleans()) else char.lower())
    return "".join(out)


@given(_spellings())
def test_gateway_only_headers_dropped_in_every_spelling(name: str) -> None:
    """X-Upload-User & co. never pass, whatever the case and with '_' for '-' (CVE-2025-64484)."""
    out = hdr.request_headers(_incoming((name, "mallory"), ("X-Fine", "1")))
    assert list(out.items()) == [("X-Fine", "1")]


def test_normalise_maps_underscore_and_case() -> None:
    """The comparison form frameworks use: lower case, '_' read as '-'."""
    assert hdr.normalise("X_Upload_USER") == "x-upload-user"


def test_response_headers_keep_every_set_cookie_and_drop_hop_by_hop() -> None:
    """Every Set-Cookie survives (a dict would keep one); hop-by-hop response headers go."""
    out = hdr.response_headers(
        _incoming(
            ("Set-Cookie", "a=1"),
            ("Connection", "close, X-Hop"),
            ("X-Hop", "1"),
            ("Set-Cookie", "b=2"),
            ("Transfer-Encoding", "chunked"),
            ("Keep-Alive", "timeout=1"),
            ("Proxy-Authenticate", "Basic"),
            ("Trailer", "X-T"),
            ("Upgrade", "foo"),
            ("Set-Cookie", "c=3"),
            ("Content-Encoding", "gzip"),
        )
    )
    assert out == [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Set-Cookie", "c=3"),
        ("Content-Encoding", "gzip"),
    ]


def test_response_headers_strip_names_in_every_spelling() -> None:
    """Names the gateway consumes (login/logout) are removed with '_' spellings too."""
    out = hdr.response_headers(
        _incoming(("X_Upload_User", "m"), ("x-upload-user", "m"), ("X-Z", "1")),
        strip_names=("X-Upload-User",),
    )
    assert out == [("X-Z", "1")]


def test_response_headers_drop_only_underscore_spellings_of_identity_headers() -> None:
    """The exact login header stays for the identity to read; its '_' spellings go."""
    out = hdr.response_headers(
        _incoming(("X_Upload_Login", "m"), ("X-Upload-Login", "alice"), ("X_Other", "1")),
        underscored=frozenset({"x-upload-login"}),
    )
    assert out == [("X-Upload-Login", "alice"), ("X_Other", "1")]


def test_connection_tokens_from_every_connection_header() -> None:
    """Tokens of all Connection headers count, trimmed and lower-cased."""
    tokens = hdr.connection_tokens(
        CIMultiDict([("Connection", " Upgrade , X-A"), ("connection", "x-b,,")])
    )
    assert tokens == {"upgrade", "x-a", "x-b"}


def test_is_trusted_by_cidr() -> None:
    """Only peers inside trusted_proxies are trusted; garbage and unset peers never are."""
    nets = hdr.parse_networks(["10.0.0.0/8", "127.0.0.1/32", "fd00::/8"])
    assert hdr.is_trusted("10.1.2.3", nets)
    assert hdr.is_trusted("127.0.0.1", nets)
    assert hdr.is_trusted("fd00::5", nets)
    assert not hdr.is_trusted("127.0.0.2", nets)
    assert not hdr.is_trusted("11.0.0.1", nets)
    assert not hdr.is_trusted("not-an-ip", nets)
    assert not hdr.is_trusted(None, nets)
    assert not hdr.is_trusted("10.1.2.3", ())


def test_is_trusted_memo_gives_the_same_answers_and_stays_bounded() -> None:
    """The per-peer memo of parse_networks' result answers as a fresh test would, every time,
    and does not grow without bound when every client is a direct peer."""
    nets = hdr.parse_networks(["10.0.0.0/8", "fd00::/8"])
    for _ in range(2):
        assert hdr.is_trusted("10.9.8.7", nets)
        assert not hdr.is_trusted("11.9.8.7", nets)
        assert hdr.is_trusted("fd00::1%eth0", nets)
        assert not hdr.is_trusted("garbage", nets)
    for n in range(3000):
        peer = f"192.0.{n // 256}.{n % 256}"
        assert not hdr.is_trusted(peer, nets)
    assert len(nets._memo) <= 1024
    assert hdr.is_trusted("10.9.8.7", nets)
    assert not hdr.is_trusted("11.9.8.7", nets)


def test_is_trusted_ignores_ipv6_zone() -> None:
    """A link-local peer with a zone id (fe80::1%eth0) is compared by its address."""
    nets = (ipaddress.ip_network("fe80::/10"),)
    assert hdr.is_trusted("fe80::1%eth0", nets)


def test_forwarded_headers_from_untrusted_peer_are_set_afresh() -> None:
    """A client's own X-Forwarded-* are replaced: an untrusted peer cannot claim another IP."""
    out = hdr.forwarded_headers(
        _incoming(("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")),
        peer="192.0.2.7",
        scheme="http",
        host="gw.example:8080",
        trusted=False,
    )
    assert out == {
        "X-Forwarded-For": "192.0.2.7",
        "X-Forwarded-Proto": "http",
        "X-Forwarded-Host": "gw.example:8080",
    }


def test_forwarded_headers_from_trusted_peer_are_extended() -> None:
    """Behind a trusted proxy the chain is kept and the proxy's address appended."""
    out = hdr.forwarded_headers(
        _incoming(
            ("X-Forwarded-For", "203.0.113.1, 198.51.100.2"),
            ("X-Forwarded-For", "198.51.100.3"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "app.example"),
        ),
        peer="10.0.0.1",
        scheme="http",
        host="internal:8080",
        trusted=True,
    )
    assert out == {
        "X-Forwarded-For": "203.0.113.1, 198.51.100.2, 198.51.100.3, 10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "app.example",
    }


def test_forwarded_headers_trusted_without_chain() -> None:
    """A trusted peer that sent no X-Forwarded-* gets the plain values."""
    out = hdr.forwarded_headers(
        _incoming(), peer="10.0.0.1", scheme="https", host="h", trusted=True
    )
    assert out == {
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "h",
    }


def test_strip_cookie_removes_only_the_session_cookie() -> None:
    """The gateway's session cookie never reaches the upstream; lookalike names do."""
    cookie = "a=1; gateway_session=secret;gateway_session2=x ;  b=2; gateway_session=again"
    assert hdr.strip_cookie(cookie, "gateway_session") == "a=1; gateway_session2=x; b=2"
    assert hdr.strip_cookie("gateway_session=only", "gateway_session") == ""
