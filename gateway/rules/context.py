"""Who may have what signed (``SigningContext``), and the refusal helpers every rule uses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NoReturn

from ..problems import PolicyRefused

# S3's limit on the parts of one multipart upload.
MAX_PARTS = 10_000


@dataclass(frozen=True)
class SigningContext:
    """What one user of one route may have signed, taken from the config and the identity."""

    uploads_bucket: str
    bucket_host: str  # host[:port] a v4 canonical request must name
    key_prefix: str  # the user's prefix, ends with "/"
    acl: str
    content_types: tuple[str, ...]  # lower-case allow-list: "image/*", "application/pdf", "*/*"
    max_size: int
    signature_ttl: int  # seconds
    blank_page_url: str  # absolute URL of the route's blank page (iframe path)
    access_key_id: str
    region: str
    max_meta_bytes: int = 2048  # S3's own cap on user metadata, names plus values
    part_size: int = 5 * 1024 * 1024

    @property
    def max_part_number(self) -> int:
        """The highest part number a chunked upload of at most ``max_size`` bytes can need."""
        return min(MAX_PARTS, -(-self.max_size // self.part_size))


def refuse(reason: str, detail: str) -> NoReturn:
    """Raise ``PolicyRefused`` (400) with this reason."""
    raise PolicyRefused(detail, reason=reason)


def show(text: str) -> str:
    """Client text as it may go back in an error body: quoted and cut short."""
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def as_utc(now: datetime) -> datetime:
    """``now`` in UTC; a naive time is a caller's bug, not a client's."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)
