"""Purpose-separated keys: HKDF derivation, the user hash, rotating Fernets per purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.fernet import Fernet, InvalidToken

from gateway import keys

KEY = base64.urlsafe_b64encode(bytes(range(32))).decode()
OTHER = base64.urlsafe_b64encode(bytes(range(32, 64))).decode()


def _hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out with hmac alone, as an independent check of the library call."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def test_derive_matches_rfc5869_with_the_fixed_salt() -> None:
    """Derivation is pinned (salt, info, input): changing it would move every user's prefix."""
    expected = _hkdf_sha256(bytes(range(32)), b"upload-gateway", b"some/purpose/v1", 32)
    assert keys.derive(KEY, "some/purpose/v1") == expected
    assert keys.derive(KEY, "some/purpose/v1", 48) == _hkdf_sha256(
        bytes(range(32)), b"upload-gateway", b"some/purpose/v1", 48
    )


def test_derive_separates_purposes_and_keys() -> None:
    """One configured key gives unrelated keys per purpose, and none equals the key itself."""
    a = keys.derive(KEY, keys.USER_HASH_PURPOSE)
    b = keys.derive(KEY, keys.UPLOAD_TOKEN_PURPOSE)
    c = keys.derive(OTHER, keys.USER_HASH_PURPOSE)
    assert len({a, b, c, bytes(range(32))}) == 4


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="empty"),
        pytest.param("not a key", id="not-base64"),
        pytest.param(base64.urlsafe_b64encode(b"x" * 16).decode(), id="16-bytes"),
        pytest.param("clé" * 15, id="non-ascii"),
    ],
)
def test_derive_refuses_what_is_not_a_fernet_key(bad: str) -> None:
    """Only a real 32-byte key is derived from, so a typo never becomes a weak secret."""
    with pytest.raises(ValueError, match="not a Fernet key"):
        keys.derive(bad, "p")


def test_derive_needs_a_purpose() -> None:
    """An empty purpose would let two careless callers share a key."""
    with pytest.raises(ValueError, match="purpose"):
        keys.derive(KEY, "")


def test_user_hash_known_answer() -> None:
    """HMAC-SHA256 under the derived key, first 16 hex chars (stable across releases)."""
    derived = _hkdf_sha256(bytes(range(32)), b"upload-gateway", b"upload-gateway/user-hash/v1", 32)
    expected = hmac.new(derived, b"alice", hashlib.sha256).hexdigest()[:16]
    assert keys.user_hash(KEY, "alice") == expected


def test_user_hash_shape_and_separation() -> None:
    """16 lowercase hex chars, different per user and per key, not keyed by the raw session key."""
    digest = keys.user_hash(KEY, "alice")
    assert len(digest) == 16
    assert int(digest, 16) >= 0
    assert digest == digest.lower()
    assert keys.user_hash(KEY, "alice") == digest
    assert keys.user_hash(KEY, "bob") != digest
    assert keys.user_hash(KEY, "Alice") != digest
    assert keys.user_hash(OTHER, "alice") != digest
    raw = hmac.new(bytes(range(32)), b"alice", hashlib.sha256).hexdigest()[:16]
    raw_text = hmac.new(KEY.encode(), b"alice", hashlib.sha256).hexdigest()[:16]
    assert digest not in (raw, raw_text)


def test_user_hash_of_non_ascii_names() -> None:
    """Names are hashed as UTF-8 (pinned), so a non-ASCII user gets a stable hash of their own."""
    derived = _hkdf_sha256(bytes(range(32)), b"upload-gateway", b"upload-gateway/user-hash/v1", 32)
    expected = hmac.new(derived, "zoë".encode(), hashlib.sha256).hexdigest()[:16]
    assert keys.user_hash(KEY, "zoë") == expected
    assert keys.user_hash(KEY, "zoë") != keys.user_hash(KEY, "zoe")


def test_fernet_for_rotation() -> None:
    """A token made under the old key opens with [new, old]; [new, old] encrypts with new."""
    purpose = "test/rotation/v1"
    old_only = keys.fernet_for([OTHER], purpose)
    rotated = keys.fernet_for([KEY, OTHER], purpose)
    assert rotated.decrypt(old_only.encrypt(b"made before rotation")) == b"made before rotation"
    fresh = rotated.encrypt(b"made after rotation")
    assert keys.fernet_for([KEY], purpose).decrypt(fresh) == b"made after rotation"
    with pytest.raises(InvalidToken):
        old_only.decrypt(fresh)


def test_fernet_for_separates_purposes() -> None:
    """A value sealed for one purpose, or with the raw key, never opens under another purpose."""
    upload_ids = keys.fernet_for([KEY], keys.UPLOAD_TOKEN_PURPOSE)
    other = keys.fernet_for([KEY], "upload-gateway/something-else/v1")
    with pytest.raises(InvalidToken):
        other.decrypt(upload_ids.encrypt(b"x"))
    with pytest.raises(InvalidToken):
        upload_ids.decrypt(Fernet(KEY).encrypt(b"x"))
    with pytest.raises(InvalidToken):
        Fernet(KEY).decrypt(upload_ids.encrypt(b"x"))


def test_fernet_for_needs_a_key() -> None:
    """An empty key list is a programming error, not a Fernet that can never decrypt."""
    with pytest.raises(ValueError, match="key"):
        keys.fernet_for([], "p")
