"""Values both signed forms carry: object settings (acl, storage class, SSE, metadata), dates."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .context import SigningContext, refuse

MAX_SKEW = timedelta(minutes=15)
ALGORITHM = "AWS4-HMAC-SHA256"
TERM = "aws4_request"
STORAGE_CLASSES = frozenset({"STANDARD", "REDUCED_REDUNDANCY"})
SSE_VALUES = frozenset({"AES256", "aws:kms"})
_META_NAME_RE = re.compile(r"x-amz-meta-[a-z0-9_-]+")
PRINTABLE_RE = re.compile(r"[ -~]*")
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_HTTP_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def check_object_field(name: str, value: str, ctx: SigningContext) -> int:
    """Check acl, storage class, SSE or metadata (lower-case name); return the metadata bytes."""
    if name in ("acl", "x-amz-acl"):
        if value != ctx.acl:
            refuse("acl-not-allowed", f"Only the acl {ctx.acl!r} is allowed.")
    elif name == "x-amz-storage-class":
        if value not in STORAGE_CLASSES:
            refuse("storage-class-not-allowed", "This storage class is not allowed.")
    elif name == "x-amz-server-side-encryption":
        if value not in SSE_VALUES:
            refuse("encryption-not-allowed", "This server-side encryption is not allowed.")
    elif name.startswith("x-amz-meta-"):
        if not _META_NAME_RE.fullmatch(name):
            refuse("meta-name-invalid", "A metadata name has characters outside [a-z0-9_-].")
        if not PRINTABLE_RE.fullmatch(value):
            refuse("meta-value-invalid", "A metadata value is not printable ASCII.")
        return len(name) - len("x-amz-meta-") + len(value)
    return 0


def check_meta_total(total: int, ctx: SigningContext) -> None:
    """Refuse metadata whose names and values add up past S3's limit."""
    if total > ctx.max_meta_bytes:
        refuse("meta-too-large", f"Metadata exceeds {ctx.max_meta_bytes} bytes.")


def parse_amz_date(text: str) -> datetime:
    """The UTC time of an ``x-amz-date`` (``YYYYMMDDTHHMMSSZ``), or ``date-invalid``."""
    if _AMZ_DATE_RE.fullmatch(text):
        try:
            return datetime(
                int(text[0:4]), int(text[4:6]), int(text[6:8]),
                int(text[9:11]), int(text[11:13]), int(text[13:15]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError:
            pass
    refuse("date-invalid", "The date is not YYYYMMDDTHHMMSSZ.")


def parse_http_date(text: str) -> datetime:
    """The UTC time of an RFC 1123 GMT date whose weekday is right, or ``date-invalid``."""
    match = _HTTP_DATE_RE.fullmatch(text)
    if match:
        weekday, day, month, year, hour, minute, second = match.groups()
        try:
            stamp = datetime(
                int(year), _MONTHS.index(month) + 1, int(day),
                int(hour), int(minute), int(second), tzinfo=UTC,
            )  # fmt: skip
        except ValueError:
            pass
        else:
            if _WEEKDAYS[stamp.weekday()] == weekday:
                return stamp
    refuse("date-invalid", "The date is not an RFC 1123 GMT date.")


def check_skew(stamp: datetime, now: datetime) -> None:
    """Refuse a request dated more than MAX_SKEW from ``now``, as S3 itself would."""
    if abs(stamp - now) > MAX_SKEW:
        refuse("date-skewed", "The request date is more than 15 minutes from now.")
