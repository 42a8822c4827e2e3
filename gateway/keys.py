"""Purpose-separated keys derived from the configured session keys.

The config holds one list of Fernet keys (``session.keys``). The session cookie uses them as
they are; every other use goes through HKDF-SHA256 (RFC 5869) with a purpose string as ``info``,
so a value made for one purpose (a session cookie, a user hash, an upload token) is never
accepted for another, and one leaked derived key reveals neither the configured key nor its
siblings.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

USER_HASH_PURPOSE = "upload-gateway/user-hash/v1"
UPLOAD_TOKEN_PURPOSE = "upload-gateway/upload-token/v1"  # noqa: S105 - a key-derivation label

# Fixed, not random: every gateway instance must derive the same keys. The input is already a
# uniformly random 32-byte Fernet key, so RFC 5869 (section 3.1) asks nothing more of the salt.
_SALT = b"upload-gateway"


def _key_bytes(key: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("not a Fernet key: 32 url-safe base64 bytes expected")
    return raw


def derive(key: str, purpose: str, length: int = 32) -> bytes:
    """``length`` bytes for ``purpose`` (HKDF info) from one configured Fernet key."""
    if not purpose:
        raise ValueError("a derived key needs a purpose")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=_SALT, info=purpose.encode())
    return hkdf.derive(_key_bytes(key))


def user_hash_key(session_key: str) -> bytes:
    """The HMAC key of user hashes; derive it once and pass it to ``hash_user``."""
    return derive(session_key, USER_HASH_PURPOSE)


def hash_user(hash_key: bytes, user: str) -> str:
    """16 hex chars naming ``user`` in object keys, without revealing the name."""
    return hmac.new(hash_key, user.encode(), hashlib.sha256).hexdigest()[:16]


def user_hash(session_key: str, user: str) -> str:
    """``hash_user`` under the key derived from ``session_key`` (derives it on every call)."""
    return hash_user(user_hash_key(session_key), user)


def fernet_for(keys: Sequence[str], purpose: str) -> MultiFernet:
    """A MultiFernet over each key's derivation for ``purpose``: the first encrypts, all decrypt."""
    if not keys:
        raise ValueError("at least one key is needed")
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derive(k, purpose))) for k in keys])
