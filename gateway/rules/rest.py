"""REST strings to sign of chunked uploads (SigV2 and SigV4): the four multipart calls only."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Literal
from urllib.parse import quote, unquote_to_bytes

from .context import SigningContext, as_utc, refuse, show
from .media import content_type_allowed
from .object_keys import check_key
from .values import (
    ALGORITHM,
    PRINTABLE_RE,
    check_meta_total,
    check_object_field,
    check_skew,
    parse_amz_date,
    parse_http_date,
)

MAX_REST_LENGTH = 16 * 1024
COMPLETE_CONTENT_TYPES = frozenset({"application/xml; charset=utf-8", "application/xml"})
_ESCAPED_PATH_RE = re.compile(r"(?:[A-Za-z0-9_.~/-]|%[0-9A-F]{2})*")
_UPLOAD_ID_RE = re.compile(r"[A-Za-z0-9._~+/=%-]{1,1024}")
_HEADER_NAME_RE = re.compile(r"[a-z0-9_-]+")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_MD5_B64_RE = re.compile(r"[A-Za-z0-9+/]{22}==")
# Headers that shape the stored object: S3 reads them on initiate only.
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


def _rest_lines(raw: str) -> list[str]:
    if len(raw) > MAX_REST_LENGTH:
        refuse("rest-too-long", "The string to sign is too long.")
    lines = raw.split("\n")
    if not all(PRINTABLE_RE.fullmatch(line) for line in lines):
        refuse("rest-bad-format", "The string to sign has characters outside printable ASCII.")
    return lines


def escape_key(key: str) -> str:
    """A key as Fine Uploader escapes it: RFC 3986 unreserved characters kept, per segment."""
    # encodeURIComponent plus !'()* (Fine Uploader's escaping) leaves exactly A-Za-z0-9-_.~,
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
    refuse("rest-uri-invalid", "The object path is not a canonically escaped key.")


def _part_number(text: str, ctx: SigningContext) -> None:
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()) or str(int(text)) != text:
        refuse("rest-query-not-allowed", "partNumber must be a plain decimal number.")
    if not 1 <= int(text) <= ctx.max_part_number:
        refuse("part-number-out-of-range", f"partNumber must be 1..{ctx.max_part_number}.")


def _operation(method: str, query: str, uploads_form: str, ctx: SigningContext) -> Operation:
    """Which of the four multipart calls this is; any other method or query is refused."""
    if method not in _METHODS:
        refuse("rest-method-not-allowed", f"{show(method)} requests are never signed.")
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
        refuse("rest-query-not-allowed", "Only the four multipart upload queries are signed.")
    if form != "uploads" and not _UPLOAD_ID_RE.fullmatch(pairs[-1].removeprefix("uploadId=")):
        refuse("rest-query-not-allowed", "The uploadId is malformed.")
    operation = _OPERATIONS.get((method, form))
    if operation is None:
        refuse("rest-method-not-allowed", f"{show(method)} does not fit this query.")
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
        refuse("content-type-not-allowed", f"{show(value)} is not allowed here.")


def _rest_headers(
    lines: list[str], allowed: frozenset[str], operation: Operation, ctx: SigningContext
) -> dict[str, str]:
    """Parse sorted lower-case ``name:value`` lines against the allow-list for this operation."""
    headers: dict[str, str] = {}
    meta_bytes = 0
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not _HEADER_NAME_RE.fullmatch(name):
            refuse("rest-header-malformed", "A header line is not lower-case name:value.")
        if name in headers:
            refuse("rest-header-duplicate", f"The header {show(name)} appears twice.")
        if headers and name < next(reversed(headers)):
            refuse("rest-header-order", "Header lines must be sorted by name.")
        headers[name] = value
        object_header = name in _OBJECT_HEADERS or name.startswith("x-amz-meta-")
        if not (name in allowed or (object_header and operation == "initiate")):
            refuse("rest-header-not-allowed", f"The header {show(name)} is not allowed here.")
        meta_bytes += check_object_field(name, value, ctx)
    check_meta_total(meta_bytes, ctx)
    if "x-amz-date" not in headers:
        refuse("rest-header-missing", "The x-amz-date header is required.")
    content_md5 = headers.get("content-md5")
    if content_md5 is not None and not _MD5_B64_RE.fullmatch(content_md5):
        refuse("content-md5-invalid", "Content-MD5 must be the base64 of 16 bytes.")
    _check_content_type(operation, headers.get("content-type", ""), ctx)
    return headers


def check_rest_v4(raw: str, ctx: SigningContext, *, now: datetime) -> str:
    """Check Fine Uploader's raw v4 string (canonical request unhashed); return the real one.

    Only initiate, upload part, complete and abort of a key under the user's prefix pass.
    """
    now = as_utc(now)
    lines = _rest_lines(raw)
    # algorithm, date, scope, method, URI, query, >= 1 header, "", signed headers, payload hash
    if len(lines) < 10 or lines[-3] != "":
        refuse("rest-bad-format", "The string is not a v4 string to sign.")
    algorithm, amz_date, scope, method, uri, query = lines[:6]
    signed, payload_hash = lines[-2:]
    if algorithm != ALGORITHM:
        refuse("algorithm-not-allowed", f"The algorithm must be {ALGORITHM}.")
    check_skew(parse_amz_date(amz_date), now)
    if scope != f"{amz_date[:8]}/{ctx.region}/s3/aws4_request":
        refuse("rest-scope-mismatch", "The scope is not today's scope for this region.")
    operation = _operation(method, query, "uploads=", ctx)
    if not uri.startswith("/"):
        refuse("rest-uri-invalid", "The canonical URI must start with '/'.")
    _decode_key(uri[1:], ctx)
    # A real hash binds the signature to the body; UNSIGNED-PAYLOAD/STREAMING-* would not.
    if not _HEX64_RE.fullmatch(payload_hash):
        refuse("rest-payload-hash-invalid", "The payload hash must be 64 lower-case hex.")
    headers = _rest_headers(lines[6:-3], _V4_HEADERS, operation, ctx)
    for required in ("host", "x-amz-content-sha256"):
        if required not in headers:
            refuse("rest-header-missing", f"The {required} header is required.")
    if headers["host"] != ctx.bucket_host:
        refuse("rest-host-mismatch", "The host is not the uploads bucket's host.")
    if headers["x-amz-date"] != amz_date:
        refuse("rest-date-mismatch", "x-amz-date differs from the string's date.")
    if headers["x-amz-content-sha256"] != payload_hash:
        refuse("rest-payload-hash-mismatch", "x-amz-content-sha256 differs from the hash line.")
    if signed != ";".join(headers):
        refuse("rest-signed-headers-mismatch", "The signed headers are not the headers given.")
    canonical = "\n".join(lines[3:])
    digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
    return f"{algorithm}\n{amz_date}\n{scope}\n{digest}"


def check_rest_v2(raw: str, ctx: SigningContext, *, now: datetime) -> str:
    """Check a v2 string to sign of a chunked upload and return it unchanged.

    Only initiate, upload part, complete and abort of a key under the user's prefix pass.
    """
    now = as_utc(now)
    lines = _rest_lines(raw)
    # method, Content-MD5, Content-Type, Date, x-amz header lines, resource
    if len(lines) < 5:
        refuse("rest-bad-format", "The string is not a v2 string to sign.")
    method, content_md5, content_type, date_line = lines[:4]
    if date_line:
        # A value here is a query-string Expires: the signature would be a presigned URL
        # with an expiry of the caller's choosing.
        refuse("rest-presign-not-allowed", "The Date line must be empty.")
    path, question, query = lines[-1].partition("?")
    operation = _operation(method, query if question else "", "uploads", ctx)
    bucket, slash, escaped = path.removeprefix("/").partition("/")
    if not path.startswith("/") or bucket != ctx.uploads_bucket or not slash:
        refuse("bucket-mismatch", "The resource is not in the uploads bucket.")
    _decode_key(escaped, ctx)
    if content_md5 and not _MD5_B64_RE.fullmatch(content_md5):
        refuse("content-md5-invalid", "Content-MD5 must be the base64 of 16 bytes.")
    _check_content_type(operation, content_type, ctx)
    headers = _rest_headers(lines[4:-1], _V2_HEADERS, operation, ctx)
    check_skew(parse_http_date(headers["x-amz-date"]), now)
    return raw
