"""Signing and verifying the completion message the gateway sends to the upstream app.

The gateway sends ``X-Upload-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>`` with every completion (SPEC "The completion", step 3). An upstream app written
in Python checks it over the raw body, before parsing it, for example with aiohttp::

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
recognise a retry of a completion it has already recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time

HEADER = "X-Upload-Signature"

_SCHEME = "v1"
# Fifteen digits reach far past any real clock and keep int() away from huge inputs.
_TIMESTAMP_RE = re.compile(r"\d{1,15}")
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")


class InvalidSignature(ValueError):
    """The signature header is missing, malformed, does not match, or is out of tolerance."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Upload-Signature`` value for ``body``; ``timestamp`` defaults to now."""
    t = int(time.time()) if timestamp is None else timestamp
    if t < 0:
        raise ValueError("timestamp must not be negative")
    return f"t={t},{_SCHEME}={_mac(secret, t, body)}"


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
