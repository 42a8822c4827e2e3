"""The demo app's API tokens: ``Authorization: Bearer <token>`` for ``upload-gateway upload``.

A token is the user's name and an HMAC of it under a key made fresh for each run, so the app
keeps no table and the banner can print alice's before she has signed in. The gateway learns
who the caller is by asking the app (``identity.auth_request``), as it would ask yours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_MAC_HEX = 32


def api_token(key: bytes, user: str) -> str:
    """``<base64url(user)>.<hmac>``: shell-safe, and naming the user only to whoever has the key."""
    name = base64.urlsafe_b64encode(user.encode()).rstrip(b"=").decode()
    return f"{name}.{_mac(key, user)}"


def token_user(key: bytes, token: str) -> str | None:
    """The user ``token`` was made for, or None when it is not one of ours."""
    name, dot, mac = token.partition(".")
    if not dot or not name or len(name) > 128:
        return None
    try:
        user = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
    except (binascii.Error, ValueError):
        return None
    return user if hmac.compare_digest(mac, _mac(key, user)) else None


def _mac(key: bytes, user: str) -> str:
    return hmac.new(key, user.encode(), hashlib.sha256).hexdigest()[:_MAC_HEX]
