"""The pure checks behind Fine Uploader's route (gateway/origins.py): the Host a blank page's
origin is read from; the route itself is tested through the real gateway in
tests/integration/test_fineuploader.py."""

from __future__ import annotations

import pytest

from gateway import origins
from gateway.origins import valid_host


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("example.com", True),
        ("EXAMPLE.com:443", True),
        ("localhost", True),
        ("10.0.0.1:65535", True),
        ("[2001:db8::1]", True),
        ("[::ffff:10.0.0.1]:8443", True),
        ("a" * 63 + ".example", True),
        ("a" * 64 + ".example", False),
        ("example.com:0", False),
        ("example.com:65536", False),
        ("[2001:db8::g]", False),
        ("[fe80::1%eth0]", False),
        ("", False),
        (".", False),
        ("example.com/", False),
        ("user:pass@example.com", False),
        ("example.com\r\nX: y", False),
        ("exämple.com", False),
    ],
)
def test_valid_host_is_host_and_port_and_nothing_more(host: str, valid: bool) -> None:
    """The pure check behind the blank page's origin (RFC 9110 Host: uri-host [":" port])."""
    assert valid_host(host) is valid
    assert valid_host(host) is valid  # the remembered answer is the same


def test_remembered_hosts_stay_within_their_bound() -> None:
    """Every signature checks its Host, so answers are remembered per value: at most
    HOST_CACHE_SIZE of them, however many distinct Hosts arrive, and a value longer than any
    valid host is refused before it is remembered (a valid host of the longest length is not)."""
    cache = origins._valid_host
    cache.cache_clear()
    for i in range(origins.HOST_CACHE_SIZE * 3):
        assert valid_host(f"h{i}.example:{i % 65535 + 1}")
        assert not valid_host(f"h{i}.example/evil")
        assert cache.cache_info().currsize <= origins.HOST_CACHE_SIZE
    cache.cache_clear()
    longest = ".".join(["a" * 63] * 3 + ["b" * 61]) + ":65535"
    assert len(longest) == 259 and valid_host(longest)
    assert not valid_host(longest + "0")
    assert not valid_host("a" * 10_000)
    assert cache.cache_info().currsize == 1
