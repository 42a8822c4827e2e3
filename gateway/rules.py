"""What the gateway may sign: Fine Uploader POST policies, REST strings of chunked uploads, files.

Pure functions over plain values; the clock comes in as ``now``. Each refusal raises
``PolicyRefused`` (400) with its own kebab-case reason. The rules are those of
shared/reference/fineuploader-protocol.md §2.1, written against the payloads of §1.1-§1.3.
Decisions the issue left open:

- Active content types (HTML, MHTML, XHTML, SVG, any XML, JavaScript, XSL, Flash) are allowed
  only when the route lists them literally: ``*/*``, ``text/*`` and ``image/*`` never reach them.
- A policy may carry ``success_action_status`` (``"200"``) or ``success_action_redirect``
  (the route's blank page) or neither (S3 answers 204), but never both.
- A missing ``Content-Type`` (the browser knew no type) is allowed: S3 stores an inert
  ``binary/octet-stream``, and the completion checks the stored object's type anyway.
- Storage classes: STANDARD and REDUCED_REDUNDANCY only (what Fine Uploader sends); the
  infrequent-access classes bill 30-day minimums for objects the uploads bucket keeps a day.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, NoReturn
from urllib.parse import quote, unquote_to_bytes

from gateway.problems import BadRequest, PayloadTooLarge, PolicyRefused, UnsupportedMediaType

MAX_SKEW = timedelta(minutes=15)
MAX_REST_LENGTH = 16 * 1024
MAX_HEADER_VALUE_BYTES = 1024
MAX_PARTS = 10_000
ALGORITHM = "AWS4-HMAC-SHA256"
_TERM = "aws4_request"
STORAGE_CLASSES = frozenset({"STANDARD", "REDUCED_REDUNDANCY"})
SSE_VALUES = frozenset({"AES256", "aws:kms"})
COMPLETE_CONTENT_TYPES = frozenset({"application/xml; charset=utf-8", "application/xml"})
ACTIVE_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
    "text/javascript", "application/javascript", "application/x-javascript",
    "application/ecmascript", "text/ecmascript", "text/xsl", "application/xslt+xml",
    "application/x-shockwave-flash", "multipart/x-mixed-replace", "message/rfc822",
    "multipart/related", "application/x-mimearchive",
})  # fmt: skip
_ACTIVE_WORDS = ("html", "javascript", "ecmascript", "jscript")

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(rf"{_TCHARS}/{_TCHARS}")
_PARAM_RE = re.compile(rf"[ \t]*{_TCHARS}=(?:{_TCHARS}|\"(?:[\t !#-\[\]-~]|\\[\t -~])*\")[ \t]*")
_META_NAME_RE = re.compile(r"x-amz-meta-[a-z0-9_-]+")
_PRINTABLE_RE = re.compile(r"[ -~]*")
_AMZ_DATE_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_YMD_RE = re.compile(r"[0-9]{8}")
_HTTP_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), ([0-9]{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" ([0-9]{4}) ([0-9]{2}):([0-9]{2}):([0-9]{2}) GMT"
)
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ESCAPED_PATH_RE = re.compile(r"(?:[A-Za-z0-9_.~/-]|%[0-9A-F]{2})*")
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9._~+/=%-]{1,1024}")
_HEADER_NAME_RE = re.compile(r"[a-z0-9_-]+")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_MD5_B64_RE = re.compile(r"[A-Za-z0-9+/]{22}==")

_POLICY_FIELDS = frozenset({
    "acl", "bucket", "key", "content-type", "success_action_status", "success_action_redirect",
    "cache-control", "content-disposition", "content-encoding", "x-amz-storage-class",
    "x-amz-server-side-encryption",
})  # fmt: skip
_V4_POLICY_FIELDS = frozenset({"x-amz-algorithm", "x-amz-credential", "x-amz-date"})
_FREE_HEADER_FIELDS = frozenset({"cache-control", "content-disposition", "content-encoding"})
_LENGTH_RANGE = "content-length-range"
# Headers that shape the stored object: S3 reads them on initiate only (fineuploader-protocol §1.2).
_OBJECT_HEADERS = frozenset({"x-amz-acl", "x-amz-storage-class", "x-amz-server-side-encryption"})
_V4_HEADERS = frozenset(
    {"host", "x-amz-date", "x-amz-content-sha256", "content-type", "content-md5"}
)
_V2_HEADERS = frozenset({"x-amz-date"})
Operation = Literal["initiate", "part", "complete", "abort"]
# (method, subresource form) -> the multipart operation; nothing else is ever signed.
_OPERATIONS: dict[tuple[str, str], Operation] = {
    ("POST", "uploads"): "initiate",
    ("PUT", "part"): "part",
    ("POST", "upload"): "complete",
    ("DELETE", "upload"): "abort",
}
_METHODS = frozenset(method for method, _ in _OPERATIONS)


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


def _refuse(reason: str, detail: str) -> NoReturn:
    raise PolicyRefused(detail, reason=reason)


def _show(text: str) -> str:
    # Client text goes back in the error body: quoted and cut short.
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


# --- shared value rules --------------------------------------------------------------------------


def _media_essence(content_type: str) -> str | None:
    """``type/subtype`` in lower case, or None when the value is not a well-formed media type."""
    if len(content_type) > 255:
        return None
    essence, *params = content_type.split(";")
    # A declared type is concrete: "*" belongs to the route's patterns only.
    if not _MEDIA_TYPE_RE.fullmatch(essence) or "*" in essence:
        return None
    if not all(_PARAM_RE.fullmatch(param) for param in params):
        return None
    return essence.lower()


def _is_active(essence: str) -> bool:
    # Anything a browser may render as a document or run as script: HTML and MHTML, every XML
    # flavour (XHTML, SVG, XSLT), every JavaScript spelling, Flash.
    subtype = essence.partition("/")[2]
    if essence in ACTIVE_TYPES or subtype == "xml" or subtype.endswith("+xml"):
        return True
    return any(word in subtype for word in _ACTIVE_WORDS)


def content_type_allowed(content_type: str, patterns: Sequence[str]) -> bool:
    """Whether a declared media type matches the route's allow-list (parameters are ignored).

    ``type/*`` and ``*/*`` match inert types only; active types need a literal entry.
    """
    essence = _media_essence(content_type)
    if essence is None:
        return False
    wanted = {pattern.strip().lower() for pattern in patterns}
    if essence in wanted:
        return True
    if _is_active(essence):
        return False
    return "*/*" in wanted or essence.partition("/")[0] + "/*" in wanted


def _bad_key_char(char: str) -> bool:
    # Control characters, surrogates (not encodable) and line separators break logs and
    # headers; a backslash becomes a path separator on the Windows side of some consumers.
    return char == "\\" or unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp")


def check_key(key: str, prefix: str, *, max_bytes: int = 1024) -> None:
    """Refuse an object key outside ``prefix`` (which ends with ``/``) or not a plain path."""
    if not prefix.endswith("/"):
        raise ValueError("a key prefix must end with '/'")
    if any(_bad_key_char(char) for char in key):
        _refuse("key-bad-character", "The key contains a control character or a backslash.")
    if len(key.encode("utf-8")) > max_bytes:
        _refuse("key-too-long", f"The key is longer than {max_bytes} bytes.")
    # The prefix ends with "/", so user "admin" can never write under "admin2/".
    if not key.startswith(prefix):
        _refuse("key-outside-prefix", "The key is outside this user's prefix.")
    for segment in key[len(prefix) :].split("/"):
        if segment == "":
            _refuse("key-empty-segment", "The key has an empty path segment.")
        if segment in (".", ".."):
            _refuse("key-dot-segment", "The key has a '.' or '..' segment.")


def _check_object_field(name: str, value: str, ctx: SigningContext) -> int:
    """Check acl, storage class, SSE or metadata (lower-case name); return the metadata bytes."""
    if name in ("acl", "x-amz-acl"):
        if value != ctx.acl:
            _refuse("acl-not-allowed", f"Only the acl {ctx.acl!r} is allowed.")
    elif name == "x-amz-storage-class":
        if value not in STORAGE_CLASSES:
            _refuse("storage-class-not-allowed", "This storage class is not allowed.")
    elif name == "x-amz-server-side-encryption":
        if value not in SSE_VALUES:
            _refuse("encryption-not-allowed", "This server-side encryption is not allowed.")
    elif name.startswith("x-amz-meta-"):
        if not _META_NAME_RE.fullmatch(name):
            _refuse("meta-name-invalid", "A metadata name has characters outside [a-z0-9_-].")
        if not _PRINTABLE_RE.fullmatch(value):
            _refuse("meta-value-invalid", "A metadata value is not printable ASCII.")
        return len(name) - len("x-amz-meta-") + len(value)
    return 0


def _check_meta_total(total: int, ctx: SigningContext) -> None:
    if total > ctx.max_meta_bytes:
        _refuse("meta-too-large", f"Metadata exceeds {ctx.max_meta_bytes} bytes.")


def _parse_amz_date(text: str) -> datetime:
    if _AMZ_DATE_RE.fullmatch(text):
        try:
            return datetime(
                int(text[0:4]), int(text[4:6]), int(text[6:8]),
                int(text[9:11]), int(text[11:13]), int(text[13:15]), tzinfo=UTC,
            )  # fmt: skip
        except ValueError:
            pass
    _refuse("date-invalid", "The date is not YYYYMMDDTHHMMSSZ.")


def _parse_http_date(text: str) -> datetime:
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
    _refuse("date-invalid", "The date is not an RFC 1123 GMT date.")


def _check_skew(stamp: datetime, now: datetime) -> None:
    if abs(stamp - now) > MAX_SKEW:
        _refuse("date-skewed", "The request date is more than 15 minutes from now.")


# --- POST policies -------------------------------------------------------------------------------


def _length_bound(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    # Fine Uploader sends the bounds as digit strings (fineuploader-protocol §1.1, row 11).
    if isinstance(value, str) and 0 < len(value) <= 20 and value.isascii() and value.isdigit():
        return int(value)
    _refuse("length-range-invalid", "content-length-range bounds must be non-negative integers.")


def _array_condition(condition: list[Any], ctx: SigningContext) -> list[Any]:
    """The tightened ``content-length-range``; every other array form is refused."""
    operator = condition[0] if condition else None
    if not isinstance(operator, str):
        _refuse("condition-malformed", "A condition array must start with its name.")
    if operator.lower() == "starts-with":
        _refuse("starts-with-not-allowed", "starts-with conditions are not allowed.")
    if operator.lower() == "eq":
        _refuse("eq-array-not-allowed", "Write equality as {name: value}.")
    if operator.lower() != _LENGTH_RANGE:
        _refuse("condition-malformed", "Only content-length-range may be an array.")
    if len(condition) != 3:
        _refuse("length-range-invalid", "content-length-range takes a minimum and a maximum.")
    low, high = _length_bound(condition[1]), _length_bound(condition[2])
    if low > high:
        _refuse("length-range-invalid", "content-length-range minimum exceeds its maximum.")
    if low > ctx.max_size:
        _refuse("length-range-above-max", f"The minimum size exceeds {ctx.max_size} bytes.")
    return [_LENGTH_RANGE, low, min(high, ctx.max_size)]


def _eq_condition(condition: object) -> tuple[str, str]:
    if not isinstance(condition, dict) or len(condition) != 1:
        _refuse("condition-malformed", "Each condition must be {name: value} or an array.")
    ((name, value),) = condition.items()
    if not isinstance(name, str):
        _refuse("condition-malformed", "A condition name must be a string.")
    if not isinstance(value, str):
        _refuse("condition-value-not-string", f"The value of {_show(name)} must be a string.")
    return name, value


def _check_free_header(value: str) -> None:
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in value):
        _refuse("header-value-invalid", "A header value contains a control character.")
    if len(value.encode("utf-8")) > MAX_HEADER_VALUE_BYTES:
        _refuse("header-value-too-long", "A header value is too long.")


def _check_credential(value: str, ctx: SigningContext, now: datetime) -> None:
    """Check ``<key id>/<YYYYMMDD>/<region>/s3/aws4_request`` against ours and today."""
    parts = value.split("/")
    if (
        len(parts) != 5
        or [parts[0], parts[2], parts[3], parts[4]] != [ctx.access_key_id, ctx.region, "s3", _TERM]
        or not _YMD_RE.fullmatch(parts[1])
    ):
        _refuse("credential-mismatch", "The credential is not this gateway's key and region.")
    try:
        day = date(int(parts[1][:4]), int(parts[1][4:6]), int(parts[1][6:]))
    except ValueError:
        _refuse("credential-mismatch", "The credential date is not a date.")
    if abs(day - now.date()) > timedelta(days=1):
        _refuse("credential-date-skewed", "The credential date is more than a day from today.")


def _check_policy_field(name: str, value: str, ctx: SigningContext, now: datetime) -> int:
    """Check one ``{name: value}`` condition (``name`` lower-cased); return its metadata bytes."""
    if name == "bucket":
        if value != ctx.uploads_bucket:
            _refuse("bucket-mismatch", "The bucket is not the uploads bucket.")
    elif name == "key":
        check_key(value, ctx.key_prefix)
    elif name == "content-type":
        if not content_type_allowed(value, ctx.content_types):
            _refuse("content-type-not-allowed", "This content type is not allowed here.")
    elif name == "success_action_status":
        if value != "200":
            _refuse("success-status-not-allowed", 'success_action_status must be "200".')
    elif name == "success_action_redirect":
        if not ctx.blank_page_url or value != ctx.blank_page_url:
            _refuse("redirect-not-allowed", "The redirect is not this route's blank page.")
    elif name in _FREE_HEADER_FIELDS:
        _check_free_header(value)
    elif name == "x-amz-algorithm":
        if value != ALGORITHM:
            _refuse("algorithm-not-allowed", f"The algorithm must be {ALGORITHM}.")
    elif name == "x-amz-credential":
        _check_credential(value, ctx, now)
    elif name == "x-amz-date":
        _check_skew(_parse_amz_date(value), now)
    return _check_object_field(name, value, ctx)


def tighten_policy(
    document: object, ctx: SigningContext, *, version: Literal[2, 4], now: datetime
) -> dict[str, Any]:
    """Check a Fine Uploader POST policy and return the gateway's own copy to sign.

    The copy keeps every condition in order, bounds content-length-range by ``max_size``
    (adding it when absent) and replaces the expiration with now + ``signature_ttl``.
    """
    now = _utc(now)
    if not isinstance(document, dict) or not {"expiration", "conditions"} <= document.keys():
        _refuse("not-a-policy", "The body is not a policy document.")
    if len(document) != 2:
        _refuse("policy-extra-field", "A policy has only expiration and conditions.")
    if not isinstance(document["expiration"], str):
        _refuse("expiration-invalid", "The expiration must be a string.")
    conditions = document["conditions"]
    if not isinstance(conditions, list):
        _refuse("conditions-invalid", "The conditions must be a list.")
    allowed = _POLICY_FIELDS | (_V4_POLICY_FIELDS if version == 4 else frozenset())
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
                _refuse("length-range-invalid", "content-length-range must be an array.")
        if name in seen:
            _refuse("duplicate-condition", f"The condition {_show(name)} appears twice.")
        if name not in allowed and name != _LENGTH_RANGE and not name.startswith("x-amz-meta-"):
            if name in _V4_POLICY_FIELDS:
                _refuse("v4-condition-in-v2", f"{_show(name)} belongs to signature version 4.")
            _refuse("unknown-condition", f"The condition {_show(name)} is not allowed.")
        if isinstance(entry, dict):
            meta_bytes += _check_policy_field(name, value, ctx, now)
        seen[name] = value
        tightened.append(entry)
    _check_meta_total(meta_bytes, ctx)
    required = ("acl", "bucket", "key", *(sorted(_V4_POLICY_FIELDS) if version == 4 else ()))
    for name in required:
        if name not in seen:
            _refuse("missing-condition", f"The condition {name!r} is required.")
    if "success_action_status" in seen and "success_action_redirect" in seen:
        _refuse("success-action-conflict", "Use success_action_status or _redirect, not both.")
    # S3 derives the signing key from the credential's date; the request date must agree.
    if version == 4 and seen["x-amz-date"][:8] != seen["x-amz-credential"].split("/")[1]:
        _refuse("date-credential-mismatch", "x-amz-date is not on the credential's date.")
    if _LENGTH_RANGE not in seen:
        # Fine Uploader omits the range unless the page sets a size limit (§1.1).
        tightened.append([_LENGTH_RANGE, 0, ctx.max_size])
    expiration = now + timedelta(seconds=ctx.signature_ttl)
    return {"expiration": expiration.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "conditions": tightened}


# --- REST strings of chunked uploads -------------------------------------------------------------


def _rest_lines(raw: str) -> list[str]:
    if len(raw) > MAX_REST_LENGTH:
        _refuse("rest-too-long", "The string to sign is too long.")
    lines = raw.split("\n")
    if not all(_PRINTABLE_RE.fullmatch(line) for line in lines):
        _refuse("rest-bad-format", "The string to sign has characters outside printable ASCII.")
    return lines


def escape_key(key: str) -> str:
    """A key as Fine Uploader escapes it: RFC 3986 unreserved characters kept, per segment."""
    # encodeURIComponent plus !'()* (fineuploader-protocol §1.2) leaves exactly A-Za-z0-9-_.~,
    # which is also what quote() keeps with no extra safe characters.
    return "/".join(quote(segment, safe="") for segment in key.split("/"))


def _decode_key(escaped: str, ctx: SigningContext) -> str:
    """The key named by an escaped path, accepted only in Fine Uploader's exact encoding."""
    if _ESCAPED_PATH_RE.fullmatch(escaped):
        try:
            key = unquote_to_bytes(escaped).decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if escape_key(key) == escaped:
                check_key(key, ctx.key_prefix)
                return key
    _refuse("rest-uri-invalid", "The object path is not a canonically escaped key.")


def _part_number(text: str, ctx: SigningContext) -> None:
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()) or str(int(text)) != text:
        _refuse("rest-query-not-allowed", "partNumber must be a plain decimal number.")
    if not 1 <= int(text) <= ctx.max_part_number:
        _refuse("part-number-out-of-range", f"partNumber must be 1..{ctx.max_part_number}.")


def _operation(method: str, query: str, uploads_form: str, ctx: SigningContext) -> Operation:
    """Which of the four multipart calls this is; any other method or query is refused."""
    if method not in _METHODS:
        _refuse("rest-method-not-allowed", f"{_show(method)} requests are never signed.")
    pairs = query.split("&")
    part: str | None = None
    if query == uploads_form:
        form = "uploads"
    elif len(pairs) == 1 and pairs[0].startswith("uploadId="):
        form = "upload"
    elif (
        len(pairs) == 2 and pairs[0].startswith("partNumber=") and pairs[1].startswith("uploadId=")
    ):
        form, part = "part", pairs[0].removeprefix("partNumber=")
    else:
        _refuse("rest-query-not-allowed", "Only the four multipart upload queries are signed.")
    if form != "uploads" and not _UPLOAD_ID_RE.fullmatch(pairs[-1].removeprefix("uploadId=")):
        _refuse("rest-query-not-allowed", "The uploadId is malformed.")
    operation = _OPERATIONS.get((method, form))
    if operation is None:
        _refuse("rest-method-not-allowed", f"{_show(method)} does not fit this query.")
    if part is not None:
        _part_number(part, ctx)
    return operation


def _check_content_type(operation: Operation, value: str, ctx: SigningContext) -> None:
    if value == "":
        return
    if operation == "initiate":
        ok = content_type_allowed(value, ctx.content_types)
    else:
        ok = operation == "complete" and value.lower() in COMPLETE_CONTENT_TYPES
    if not ok:
        _refuse("content-type-not-allowed", "This content type is not allowed here.")


def _rest_headers(
    lines: list[str], allowed: frozenset[str], operation: Operation, ctx: SigningContext
) -> dict[str, str]:
    """Parse sorted lower-case ``name:value`` lines against the allow-list for this operation."""
    headers: dict[str, str] = {}
    meta_bytes = 0
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _HEADER_NAME_RE.fullmatch(name):
            _refuse("rest-header-malformed", "A header line is not lower-case name:value.")
        if name in headers:
            _refuse("rest-header-duplicate", f"The header {_show(name)} appears twice.")
        if headers and name < next(reversed(headers)):
            _refuse("rest-header-order", "Header lines must be sorted by name.")
        headers[name] = value
        object_header = name in _OBJECT_HEADERS or name.startswith("x-amz-meta-")
        if not (name in allowed or (object_header and operation == "initiate")):
            _refuse("rest-header-not-allowed", f"The header {_show(name)} is not allowed here.")
        meta_bytes += _check_object_field(name, value, ctx)
    _check_meta_total(meta_bytes, ctx)
    if "x-amz-date" not in headers:
        _refuse("rest-header-missing", "The x-amz-date header is required.")
    content_md5 = headers.get("content-md5")
    if content_md5 is not None and not _MD5_B64_RE.fullmatch(content_md5):
        _refuse("content-md5-invalid", "Content-MD5 must be the base64 of 16 bytes.")
    _check_content_type(operation, headers.get("content-type", ""), ctx)
    return headers


def check_rest_v4(raw: str, ctx: SigningContext, *, now: datetime) -> str:
    """Check Fine Uploader's raw v4 string (canonical request unhashed); return the real one.

    Only initiate, upload part, complete and abort of a key under the user's prefix pass.
    """
    now = _utc(now)
    lines = _rest_lines(raw)
    # algorithm, date, scope, method, URI, query, >= 1 header, "", signed headers, payload hash
    if len(lines) < 10 or lines[-3] != "":
        _refuse("rest-bad-format", "The string is not a v4 string to sign.")
    algorithm, amz_date, scope, method, uri, query = lines[:6]
    signed, payload_hash = lines[-2:]
    if algorithm != ALGORITHM:
        _refuse("algorithm-not-allowed", f"The algorithm must be {ALGORITHM}.")
    _check_skew(_parse_amz_date(amz_date), now)
    if scope != f"{amz_date[:8]}/{ctx.region}/s3/aws4_request":
        _refuse("rest-scope-mismatch", "The scope is not today's scope for this region.")
    operation = _operation(method, query, "uploads=", ctx)
    if not uri.startswith("/"):
        _refuse("rest-uri-invalid", "The canonical URI must start with '/'.")
    _decode_key(uri[1:], ctx)
    # A real hash binds the signature to the body; UNSIGNED-PAYLOAD/STREAMING-* would not.
    if not _HEX64_RE.fullmatch(payload_hash):
        _refuse("rest-payload-hash-invalid", "The payload hash must be 64 lower-case hex.")
    headers = _rest_headers(lines[6:-3], _V4_HEADERS, operation, ctx)
    for required in ("host", "x-amz-content-sha256"):
        if required not in headers:
            _refuse("rest-header-missing", f"The {required} header is required.")
    if headers["host"] != ctx.bucket_host:
        _refuse("rest-host-mismatch", "The host is not the uploads bucket's host.")
    if headers["x-amz-date"] != amz_date:
        _refuse("rest-date-mismatch", "x-amz-date differs from the string's date.")
    if headers["x-amz-content-sha256"] != payload_hash:
        _refuse("rest-payload-hash-mismatch", "x-amz-content-sha256 differs from the hash line.")
    if signed != ";".join(headers):
        _refuse("rest-signed-headers-mismatch", "The signed headers are not the headers given.")
    canonical = "\n".join(lines[3:])
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    return f"{algorithm}\n{amz_date}\n{scope}\n{digest}"


def check_rest_v2(raw: str, ctx: SigningContext, *, now: datetime) -> str:
    """Check a v2 string to sign of a chunked upload and return it unchanged.

    Only initiate, upload part, complete and abort of a key under the user's prefix pass.
    """
    now = _utc(now)
    lines = _rest_lines(raw)
    # method, Content-MD5, Content-Type, Date, x-amz header lines, resource
    if len(lines) < 5:
        _refuse("rest-bad-format", "The string is not a v2 string to sign.")
    method, content_md5, content_type, date_line = lines[:4]
    if date_line:
        # A value here is a query-string Expires: the signature would be a presigned URL
        # with an expiry of the caller's choosing (fineuploader-protocol §2.3).
        _refuse("rest-presign-not-allowed", "The Date line must be empty.")
    path, question, query = lines[-1].partition("?")
    operation = _operation(method, query if question else "", "uploads", ctx)
    bucket, slash, escaped = path.removeprefix("/").partition("/")
    if not path.startswith("/") or bucket != ctx.uploads_bucket or not slash:
        _refuse("bucket-mismatch", "The resource is not in the uploads bucket.")
    _decode_key(escaped, ctx)
    if content_md5 and not _MD5_B64_RE.fullmatch(content_md5):
        _refuse("content-md5-invalid", "Content-MD5 must be the base64 of 16 bytes.")
    _check_content_type(operation, content_type, ctx)
    headers = _rest_headers(lines[4:-1], _V2_HEADERS, operation, ctx)
    _check_skew(_parse_http_date(headers["x-amz-date"]), now)
    return raw


# --- files declared by API and Uppy clients ------------------------------------------------------


def check_declared_file(*, size: int, content_type: str, ctx: SigningContext) -> None:
    """Refuse a declared file that is too large, of a disallowed type, or of a nonsense size."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadRequest("The size must be a non-negative integer.", reason="size-invalid")
    if size > ctx.max_size:
        raise PayloadTooLarge(f"The file is larger than {ctx.max_size} bytes.", reason="too-large")
    if not content_type_allowed(content_type, ctx.content_types):
        raise UnsupportedMediaType(
            f"{_show(content_type)} is not allowed here.", reason="content-type-not-allowed"
        )
