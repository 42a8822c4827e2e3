"""Signing and verifying the messages the gateway sends to the upstream app.

Every message (an upload completed, an upload deleted) carries two signatures over the same
body, made with the same key at the same second (docs/webhooks.md has the whole contract):

- ``X-Upload-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>``, the
  gateway's own header, which ``verify`` below checks;
- the Standard Webhooks headers (https://www.standardwebhooks.com/, spec 1.0.0):
  ``webhook-id`` (the message id, also sent as ``Idempotency-Key``), ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<t>.<body>")>``, which the maintained
  ``standardwebhooks`` libraries (and Svix's) check in any language.

The key is the secret's bytes: for a ``whsec_<base64>`` secret (the form those libraries take)
the base64-decoded bytes, for any other secret its UTF-8 bytes. So a plain secret ``s`` and
``"whsec_" + base64(s)`` are one key: ``standard_secret`` gives the form to hand a library.

An upstream app written in Python can check ``X-Upload-Signature`` over the raw body, before
parsing it, for example with aiohttp::

    from gateway import webhook

    async def upload_completed(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            webhook.verify(SECRET, request.headers.get(webhook.HEADER, ""), body)
        except webhook.InvalidSignature as exc:
            raise web.HTTPUnauthorized(text=str(exc)) from None
        event = json.loads(body)

Any framework works the same way: the secret, the header's value and the exact body bytes.
``verify`` bounds replays to ``tolerance`` seconds; the ``Idempotency-Key`` header lets the app
recognise a retry of a message it has already recorded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time

HEADER = "X-Upload-Signature"

# The Standard Webhooks header names, spelt as the spec spells them.
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 - the marker of the form, not a secret
# The spec's floor for a symmetric signing secret (192 bits), and the gateway's for a plain one.
MIN_STANDARD_KEY_BYTES = 24
MIN_PLAIN_CHARACTERS = 16

_SCHEME = "v1"
# Fifteen digits reach far past any real clock and keep int() away from huge inputs.
_TIMESTAMP_RE = re.compile(r"\d{1,15}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
# Padded standard base64, the only form every library decodes (Go's StdEncoding wants the '=').
_BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# Visible ASCII but '.': the spec forbids '.' in the id, which joins it to the timestamp.
_MESSAGE_ID_RE = re.compile(r"[!-\-/-~]{1,256}")


class InvalidSignature(ValueError):
    """The signature header is missing, malformed, does not match, or is out of tolerance."""


def secret_key(secret: str) -> bytes:
    """The HMAC key both headers use: base64-decoded after ``whsec_``, else the UTF-8 bytes.

    Raises ValueError (saying what is wrong, never showing the secret) for a ``whsec_`` secret
    that is not padded standard base64, the one form every library decodes alike.
    """
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    encoded = secret[len(SECRET_PREFIX) :]
    if not encoded or not _BASE64_RE.fullmatch(encoded):
        raise ValueError(
            "starts with whsec_ but what follows is not standard base64 (A-Z, a-z, 0-9, + and /, "
            "padded with = to a multiple of 4 characters)"
        )
    return base64.b64decode(encoded, validate=True)


def check_secret(secret: str) -> None:
    """Raise ValueError unless ``secret`` is fit to sign with: a ``whsec_`` secret of at least
    24 bytes (the spec's floor), or a plain one of at least 16 characters."""
    if secret.startswith(SECRET_PREFIX):
        size = len(secret_key(secret))
        if size < MIN_STANDARD_KEY_BYTES:
            raise ValueError(
                f"starts with whsec_ but decodes to {size} bytes: Standard Webhooks secrets "
                f"are at least {MIN_STANDARD_KEY_BYTES} bytes"
            )
    elif len(secret) < MIN_PLAIN_CHARACTERS:
        raise ValueError(f"is too short: use at least {MIN_PLAIN_CHARACTERS} characters")


def standard_secret(secret: str) -> str:
    """The ``whsec_`` form of ``secret``, to give a Standard Webhooks library: the same key."""
    return SECRET_PREFIX + base64.b64encode(secret_key(secret)).decode("ascii")


def _now(timestamp: int | None) -> int:
    t = int(time.time()) if timestamp is None else timestamp
    if t < 0:
        raise ValueError("timestamp must not be negative")
    return t


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Upload-Signature`` value for ``body``; ``timestamp`` defaults to now."""
    t = _now(timestamp)
    return f"t={t},{_SCHEME}={_mac(secret, t, body)}"


def standard_headers(
    secret: str, message_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers of one delivery of ``body``; ``timestamp`` defaults to now.

    ``message_id`` stays the same on every delivery of one message; the timestamp is the
    delivery's own. Raises ValueError for an id that is empty, longer than 256 characters, or
    holds anything but visible ASCII without '.'.
    """
    if not _MESSAGE_ID_RE.fullmatch(message_id):
        raise ValueError("message id must be 1-256 visible ASCII characters without '.'")
    t = _now(timestamp)
    signed = f"{message_id}.{t}.".encode("ascii") + body
    mac = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(t),
        SIGNATURE_HEADER: f"{_SCHEME},{base64.b64encode(mac).decode('ascii')}",
    }


def _parse(header: str) -> tuple[int, list[str]]:
    if not header.strip():
        raise InvalidSignature(f"no {HEADER} header")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise InvalidSignature(f"malformed {HEADER}: {item.strip()[:20]!r} is not name=value")
        if name == "t":
            if timestamp is not None:
                raise InvalidSignature(f"malformed {HEADER}: more than one t=")
            if not _TIMESTAMP_RE.fullmatch(value):
                raise InvalidSignature(f"malformed {HEADER}: t= is not unix seconds")
            timestamp = int(value)
        elif name == _SCHEME:
            if not _SIGNATURE_RE.fullmatch(value):
                raise InvalidSignature(f"malformed {HEADER}: v1= is not 64 hex digits")
            signatures.append(value.lower())
        # Other schemes (a future v2) are skipped, so a sender can add one before receivers know it.
    if timestamp is None:
        raise InvalidSignature(f"malformed {HEADER}: no t=")
    if not signatures:
        raise InvalidSignature(f"malformed {HEADER}: no v1= signature")
    return timestamp, signatures


def verify(
    secret: str, header: str, body: bytes, tolerance: int = 300, *, now: float | None = None
) -> int:
    """The signed timestamp, once ``header`` is proven to sign ``body`` within ``tolerance`` s.

    Raises InvalidSignature otherwise. Any of several ``v1=`` entries may match (the sender
    rotating its secret). ``now`` (unix seconds) defaults to the current time.
    """
    if tolerance < 0:
        raise ValueError("tolerance must not be negative")
    timestamp, signatures = _parse(header)
    expected = _mac(secret, timestamp, body)
    # Every candidate is compared, in constant time each, so timing tells nothing about which.
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise InvalidSignature(f"{HEADER} does not match the body (wrong secret or altered body)")
    current = time.time() if now is None else now
    if timestamp < current - tolerance:
        raise InvalidSignature(f"{HEADER} timestamp is too old (tolerance {tolerance}s)")
    if timestamp > current + tolerance:
        raise InvalidSignature(
            f"{HEADER} timestamp is too far in the future (tolerance {tolerance}s)"
        )
    return timestamp
