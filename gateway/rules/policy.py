"""POST policy documents (Fine Uploader's and Uppy's forms): checked, then tightened to sign."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from typing import Any, Literal

from .context import SigningContext, as_utc, refuse, show
from .media import content_type_allowed
from .object_keys import check_key
from .values import (
    ALGORITHM,
    TERM,
    check_meta_total,
    check_object_field,
    check_skew,
    parse_amz_date,
)

MAX_HEADER_VALUE_BYTES = 1024
_YMD_RE = re.compile(r"[0-9]{8}")

_POLICY_FIELDS = frozenset({
    "acl", "bucket", "key", "content-type", "success_action_status", "success_action_redirect",
    "cache-control", "content-disposition", "content-encoding", "x-amz-storage-class",
    "x-amz-server-side-encryption",
})  # fmt: skip
_V4_POLICY_FIELDS = frozenset({"x-amz-algorithm", "x-amz-credential", "x-amz-date"})
_FREE_HEADER_FIELDS = frozenset({"cache-control", "content-disposition", "content-encoding"})
_LENGTH_RANGE = "content-length-range"
_ALLOWED_V4 = _POLICY_FIELDS | _V4_POLICY_FIELDS
_REQUIRED = ("acl", "bucket", "key")
_REQUIRED_V4 = (*_REQUIRED, *sorted(_V4_POLICY_FIELDS))


def _length_bound(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    # Fine Uploader sends the bounds as digit strings.
    if isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        return int(value)
    refuse("length-range-invalid", "content-length-range bounds must be non-negative integers.")


def _array_condition(condition: list[Any], ctx: SigningContext) -> list[Any]:
    """The tightened ``content-length-range``; every other array form is refused."""
    operator = condition[0] if condition else None
    if not isinstance(operator, str):
        refuse("condition-malformed", "A condition array must start with its name.")
    if operator.lower() == "starts-with":
        refuse("starts-with-not-allowed", "starts-with conditions are not allowed.")
    if operator.lower() == "eq":
        refuse("eq-array-not-allowed", "Write equality as {name: value}.")
    if operator.lower() != _LENGTH_RANGE:
        refuse("condition-malformed", "Only content-length-range may be an array.")
    if len(condition) != 3:
        refuse("length-range-invalid", "content-length-range takes a minimum and a maximum.")
    low, high = _length_bound(condition[1]), _length_bound(condition[2])
    if low > high:
        refuse("length-range-invalid", "content-length-range minimum exceeds its maximum.")
    if low > ctx.max_size:
        refuse("length-range-above-max", f"The minimum size exceeds {ctx.max_size} bytes.")
    return [_LENGTH_RANGE, low, min(high, ctx.max_size)]


def _eq_condition(condition: object) -> tuple[str, str]:
    if not isinstance(condition, dict) or len(condition) != 1:
        refuse("condition-malformed", "Each condition must be {name: value} or an array.")
    ((name, value),) = condition.items()
    if not isinstance(name, str):
        refuse("condition-malformed", "A condition name must be a string.")
    if not isinstance(value, str):
        refuse("condition-value-not-string", f"The value of {show(name)} must be a string.")
    return name, value


def _check_free_header(value: str) -> None:
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        refuse("header-value-invalid", "A header value contains a control character.")
    if len(value.encode("utf-8")) > MAX_HEADER_VALUE_BYTES:
        refuse("header-value-too-long", "A header value is too long.")


def _check_credential(value: str, ctx: SigningContext, now: datetime) -> None:
    """Check ``<key id>/<YYYYMMDD>/<region>/s3/aws4_request`` against ours and today."""
    parts = value.split("/")
    if (
        len(parts) != 5
        or [parts[0], parts[2], parts[3], parts[4]] != [ctx.access_key_id, ctx.region, "s3", TERM]
        or not _YMD_RE.fullmatch(parts[1])
    ):
        refuse("credential-mismatch", "The credential is not this gateway's key and region.")
    try:
        day = date(int(parts[1][:4]), int(parts[1][4:6]), int(parts[1][6:]))
    except ValueError:
        refuse("credential-mismatch", "The credential date is not a date.")
    if abs(day - now.date()) > timedelta(days=1):
        refuse("credential-date-skewed", "The credential date is more than a day from today.")


def _check_policy_field(name: str, value: str, ctx: SigningContext, now: datetime) -> int:
    """Check one ``{name: value}`` condition (``name`` lower-cased); return its metadata bytes."""
    if name == "bucket":
        if value != ctx.uploads_bucket:
            refuse("bucket-mismatch", "The bucket is not the uploads bucket.")
    elif name == "key":
        check_key(value, ctx.key_prefix)
    elif name == "content-type":
        if not content_type_allowed(value, ctx.content_types):
            refuse("content-type-not-allowed", f"{show(value)} is not allowed here.")
    elif name == "success_action_status":
        if value != "200":
            refuse("success-status-not-allowed", 'success_action_status must be "200".')
    elif name == "success_action_redirect":
        if not ctx.blank_page_url or value != ctx.blank_page_url:
            refuse("redirect-not-allowed", "The redirect is not this route's blank page.")
    elif name in _FREE_HEADER_FIELDS:
        _check_free_header(value)
    elif name == "x-amz-algorithm":
        if value != ALGORITHM:
            refuse("algorithm-not-allowed", f"The algorithm must be {ALGORITHM}.")
    elif name == "x-amz-credential":
        _check_credential(value, ctx, now)
    elif name == "x-amz-date":
        check_skew(parse_amz_date(value), now)
    return check_object_field(name, value, ctx)


def tighten_policy(
    document: object, ctx: SigningContext, *, version: Literal[2, 4], now: datetime
) -> dict[str, Any]:
    """Check a Fine Uploader POST policy and return the gateway's own copy to sign.

    The copy keeps every condition in order, bounds content-length-range by ``max_size``
    (adding it when absent) and replaces the expiration with now + ``signature_ttl``.
    """
    now = as_utc(now)
    if not isinstance(document, dict) or not {"expiration", "conditions"} <= document.keys():
        refuse("not-a-policy", "The body is not a policy document.")
    if len(document) != 2:
        refuse("policy-extra-field", "A policy has only expiration and conditions.")
    if not isinstance(document["expiration"], str):
        refuse("expiration-invalid", "The expiration must be a string.")
    conditions = document["conditions"]
    if not isinstance(conditions, list):
        refuse("conditions-invalid", "The conditions must be a list.")
    allowed = _ALLOWED_V4 if version == 4 else _POLICY_FIELDS
    seen: dict[str, str] = {}
    tightened: list[Any] = []
    meta_bytes = 0
    for condition in conditions:
        entry: list[Any] | dict[str, str]
        if isinstance(condition, list):
            name, value, entry = _LENGTH_RANGE, "", _array_condition(condition, ctx)
        else:
            original, value = _eq_condition(condition)
            name, entry = original.lower(), {original: value}
            if name == _LENGTH_RANGE:
                # As {name: value} it would be an equality test, and no size limit at all.
                refuse("length-range-invalid", "content-length-range must be an array.")
        if name in seen:
            refuse("duplicate-condition", f"The condition {show(name)} appears twice.")
        if name not in allowed and name != _LENGTH_RANGE and not name.startswith("x-amz-meta-"):
            if name in _V4_POLICY_FIELDS:
                refuse("v4-condition-in-v2", f"{show(name)} belongs to signature version 4.")
            refuse("unknown-condition", f"The condition {show(name)} is not allowed.")
        if isinstance(entry, dict):
            meta_bytes += _check_policy_field(name, value, ctx, now)
        seen[name] = value
        tightened.append(entry)
    check_meta_total(meta_bytes, ctx)
    for name in _REQUIRED_V4 if version == 4 else _REQUIRED:
        if name not in seen:
            refuse("missing-condition", f"The condition {name!r} is required.")
    if "success_action_status" in seen and "success_action_redirect" in seen:
        refuse("success-action-conflict", "Use success_action_status or _redirect, not both.")
    # S3 derives the signing key from the credential's date; the request date must agree.
    if version == 4 and seen["x-amz-date"][:8] != seen["x-amz-credential"].split("/")[1]:
        refuse("date-credential-mismatch", "x-amz-date is not on the credential's date.")
    if _LENGTH_RANGE not in seen:
        # Fine Uploader omits the range unless the page sets a size limit.
        tightened.append([_LENGTH_RANGE, 0, ctx.max_size])
    expiration = now + timedelta(seconds=ctx.signature_ttl)
    return {"expiration": expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "conditions": tightened}
