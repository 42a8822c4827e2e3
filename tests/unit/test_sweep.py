"""The sweep's pure parts (gateway/completion/sweep.py): its backoff and where it reads a user hash.

The sweep itself, in real ``serve`` processes: tests/system/test_sweep.py."""

from __future__ import annotations

from gateway.completion.sweep import backoff, hash_pattern


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    """Each failed attempt doubles the wait up to retry_max; jitter keeps it in the upper half."""
    waits = [backoff(n, 1.0, 8.0, lambda: 1.0) for n in range(1, 7)]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff(3, 1.0, 8.0, lambda: 0.0) == 2.0


def test_the_user_hash_is_read_from_a_key_by_the_configured_prefix() -> None:
    """The sweep finds the user hash where the key prefix puts it, and nothing else matches."""
    pattern = hash_pattern("u/{user_hash}/")
    match = pattern.match("u/0123456789abcdef/x.png")
    assert match is not None and match.group(1) == "0123456789abcdef"
    assert pattern.match("0123456789abcdef/x.png") is None
