"""The ``upload`` client's resolver: names under localhost are loopback (RFC 6761 section 6.3),
so the demo's presigned ``http://<bucket>.localhost:<port>`` URLs work without a DNS that knows
them; every other name is the default resolver's."""

from __future__ import annotations

import socket

from gateway.localnames import LocalhostResolver, is_localhost_name


def test_localhost_names_are_recognised_and_lookalikes_are_not() -> None:
    """localhost and names under it, in any case and with the root dot; nothing else."""
    for name in ("localhost", "LOCALHOST.", "demo-uploads.localhost", "a.b.Localhost"):
        assert is_localhost_name(name), name
    for name in ("localhost.example.com", "notlocalhost", "localhostx", "127.0.0.1", ""):
        assert not is_localhost_name(name), name


async def test_names_under_localhost_resolve_to_loopback_only() -> None:
    """IPv4 first; only the family asked for; never a DNS answer."""
    resolver = LocalhostResolver()
    try:
        v4 = await resolver.resolve("demo-uploads.localhost", 9000)
        both = await resolver.resolve("demo-uploads.localhost", 9000, socket.AF_UNSPEC)
        other = await resolver.resolve("127.0.0.1", 80)
    finally:
        await resolver.close()
    assert [(r["host"], r["port"], r["family"]) for r in v4] == [
        ("127.0.0.1", 9000, socket.AF_INET)
    ]
    assert [r["host"] for r in both] == ["127.0.0.1", "::1"]
    assert [r["host"] for r in other] == ["127.0.0.1"]  # the default resolver's answer
