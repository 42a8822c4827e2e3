"""The pure parts of identity: the keyed user hash (gateway/keys.py); sessions, login and
auth_request are tested through the real gateway in tests/integration/test_identity.py."""

from __future__ import annotations

from gateway.keys import user_hash
from tests.support.gateway import OTHER_SESSION_KEY, SESSION_KEY


def test_user_hash_is_a_keyed_16_hex_digest() -> None:
    """16 hex characters, different per user and per (first) key: not guessable from the name."""
    alice = user_hash(SESSION_KEY, "alice")
    assert len(alice) == 16 and int(alice, 16) >= 0
    assert alice != user_hash(SESSION_KEY, "bob")
    assert alice != user_hash(OTHER_SESSION_KEY, "alice")
    assert alice == user_hash(SESSION_KEY, "alice")
