"""Opaque upload tokens for API clients: the upload's state, sealed with the session keys.

An ``api`` route hands the client an ``upload_id`` that only the gateway can read and check
(Fernet: AES-128-CBC plus HMAC-SHA256, under keys derived for this purpose alone), so no
server-side storage is needed and any gateway instance can finish an upload another began.
Tokens travel in URL paths: the JSON inside uses one-letter names and the text has no padding.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import InvalidToken

from .keys import UPLOAD_TOKEN_PURPOSE, fernet_for
from .problems import Forbidden, Gone

# Well above any real token (a few hundred characters), low enough to refuse junk unread.
_MAX_LENGTH = 4096
_TEXT_RE = re.compile(r"[A-Za-z0-9_-]+")

# field -> (JSON name, accepted types); None is accepted where the field is optional.
_FIELDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "route": ("r", (str,)),
    "user": ("u", (str,)),
    "key": ("k", (str,)),
    "multipart_id": ("m", (str, type(None))),
    "size": ("s", (int,)),
    "content_type": ("c", (str,)),
    "filename": ("f", (str,)),
    "sha256": ("h", (str, type(None))),
    "part_size": ("p", (int, type(None))),
    "expires_at": ("e", (int,)),
}


@dataclass(frozen=True)
class UploadToken:
    """What an API upload was granted: where it goes, for whom, how big, and until when."""

    route: str
    user: str
    key: str
    multipart_id: str | None
    size: int
    content_type: str
    filename: str
    sha256: str | None
    part_size: int | None
    expires_at: int  # unix seconds


class TokenSealer:
    """Seals UploadTokens into URL-safe text and opens them for the route and user they name."""

    def __init__(self, session_keys: Sequence[str]) -> None:
        self._fernet = fernet_for(session_keys, UPLOAD_TOKEN_PURPOSE)

    def seal(self, token: UploadToken) -> str:
        """The token as url-safe base64 text without ``=`` padding, fit for a path segment."""
        if token.expires_at < 0:
            raise ValueError("expires_at must not be negative")
        fields = {
            name: getattr(token, attr)
            for attr, (name, _) in _FIELDS.items()
            if getattr(token, attr) is not None
        }
        plain = json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()
        # Fernet's own timestamp is set to the expiry, not the issue time: sealing reads no
        # clock, and open() checks the expiry in the payload against the caller's `now`.
        return self._fernet.encrypt_at_time(plain, token.expires_at).decode().rstrip("=")

    def open(self, text: str, *, route: str, user: str, now: datetime) -> UploadToken:
        """The token, if sealed here, for this route and user, and not expired at ``now``.

        Raises Forbidden (token-invalid, token-other-user, token-other-route) or
        Gone (token-expired); ``now`` must be timezone-aware.
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        token = self._decode(text)
        if token.user != user:
            raise Forbidden("This upload belongs to another user.", reason="token-other-user")
        if token.route != route:
            raise Forbidden("This upload belongs to another route.", reason="token-other-route")
        # Like a JWT's exp: the token is valid strictly before expires_at.
        if now.timestamp() >= token.expires_at:
            raise Gone("This upload has expired; start a new one.", reason="token-expired")
        return token

    def _decode(self, text: str) -> UploadToken:
        invalid = Forbidden("The upload id is not valid.", reason="token-invalid")
        if len(text) > _MAX_LENGTH or not _TEXT_RE.fullmatch(text):
            raise invalid
        padded = text + "=" * (-len(text) % 4)
        try:
            raw = base64.urlsafe_b64decode(padded)
        except binascii.Error:
            raise invalid from None
        # base64 decoding ignores the unused low bits of the last character, so several texts
        # would open to one token; only the canonical one is accepted, one token one text.
        if base64.urlsafe_b64encode(raw).decode().rstrip("=") != text:
            raise invalid
        try:
            plain = self._fernet.decrypt(padded)
            fields = json.loads(plain)
        except (InvalidToken, ValueError):
            raise invalid from None
        parsed = _from_fields(fields)
        if parsed is None:
            raise invalid
        return parsed


def _from_fields(fields: Any) -> UploadToken | None:
    if not isinstance(fields, dict) or not set(fields) <= {n for n, _ in _FIELDS.values()}:
        return None
    values: dict[str, Any] = {}
    for attr, (name, types) in _FIELDS.items():
        value = fields.get(name)
        # bool is an int to isinstance; a size of `true` is junk, not 1.
        if isinstance(value, bool) or not isinstance(value, types):
            return None
        values[attr] = value
    return UploadToken(**values)
