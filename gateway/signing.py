"""The gateway's one signer: SigV4 and SigV2 for POST policies, REST strings and presigned URLs.

Pure functions over plain values: no I/O, no clock reads (callers pass ``now``), no caches hidden
in the module. The only state is ``SigningKeys``, a small cache the caller creates and owns.
``presign_v4`` produces the same URL, byte for byte, as botocore's ``generate_presigned_url``
for S3 with ``signature_version="s3v4"`` at the same instant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

__all__ = [
    "SigningKeys",
    "amz_date",
    "derive_signing_key",
    "encode_policy",
    "format_expiration",
    "presign_v4",
    "scope",
    "sign_v2",
    "sign_v4",
    "string_to_sign_v4",
    "uri_escape_path",
]

_ALGORITHM = "AWS4-HMAC-SHA256"
_TERMINATOR = "aws4_request"
# S3 presigned URLs never hash the body: the signer cannot know it (AWS "Authenticating Requests:
# Using Query Parameters").
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# SigV4 presigned URLs live at most seven days; S3 refuses a longer X-Amz-Expires.
_MAX_EXPIRES = 7 * 24 * 3600
# Query names and values: only RFC 3986 unreserved characters stay literal ("/" is encoded).
_QUERY_SAFE = "-_.~"
# Object paths: as query, but "/" separates segments and stays. S3 does not encode twice.
_PATH_SAFE = "/~"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The signer adds these itself; a caller's copy would put two of them in the signed query.
_AUTH_PARAMS = frozenset(
    name.lower()
    for name in (
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
    )
)
# Enough for today and yesterday (clock skew around midnight) in a few regions.
_MAX_KEYS = 8


def _hmac_sha256(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("utf-8"), "sha256")


def derive_signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    """The SigV4 signing key for one YYYYMMDD date, region and service (HMAC chain from "AWS4")."""
    k_date = _hmac_sha256(("AWS4" + secret).encode("utf-8"), date)
    k_region = _hmac_sha256(k_date, region)
    k_service = _hmac_sha256(k_region, service)
    return _hmac_sha256(k_service, _TERMINATOR)


class SigningKeys:
    """Signing keys for one secret, derived once per (date, region, service) and kept few.

    The caller owns it (one per credential); the oldest dates are dropped first when it is full.
    """

    __slots__ = ("_keys", "_secret")

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def get(self, date: str, region: str, service: str = "s3") -> bytes:
        """The signing key for this YYYYMMDD date, region and service."""
        scope_key = (date, region, service)
        key = self._keys.get(scope_key)
        if key is None:
            key = derive_signing_key(self._secret, date, region, service)
            if len(self._keys) >= _MAX_KEYS:
                # YYYYMMDD sorts by time, so min() is the oldest date: the one least likely needed.
                self._keys.pop(min(self._keys), None)
            self._keys[scope_key] = key
        return key

    def __repr__(self) -> str:
        return f"SigningKeys(secret=<hidden>, cached={len(self._keys)})"


def sign_v4(key: bytes, string_to_sign: str) -> str:
    """Lower-case hex HMAC-SHA256 of a SigV4 string to sign (or a base64 POST policy)."""
    return hmac.digest(key, string_to_sign.encode("utf-8"), "sha256").hex()


def sign_v2(secret: str, string_to_sign: str) -> str:
    """Base64 HMAC-SHA1: SigV2 signature of a base64 POST policy or a REST string to sign."""
    digest = hmac.digest(secret.encode("utf-8"), string_to_sign.encode("utf-8"), "sha1")
    return base64.b64encode(digest).decode("ascii")


def encode_policy(document: Mapping[str, Any]) -> str:
    """Base64 of the policy as compact ASCII JSON: the exact string that gets signed."""
    # allow_nan=False: NaN/Infinity are not JSON, and S3 would refuse the policy after we signed it.
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return base64.b64encode(text.encode("ascii")).decode("ascii")


def _as_utc(moment: datetime) -> datetime:
    # Naive datetimes are taken as UTC, as botocore's own clock produces them.
    return moment if moment.tzinfo is None else moment.astimezone(UTC)


def format_expiration(dt: datetime) -> str:
    """A POST policy ``expiration``: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC, milliseconds truncated."""
    t = _as_utc(dt)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond // 1000:03d}Z"
    )


def amz_date(now: datetime) -> str:
    """The SigV4 timestamp ``YYYYMMDDTHHMMSSZ`` (UTC) of ``now``."""
    t = _as_utc(now)
    return f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}Z"


def scope(date: str, region: str, service: str = "s3") -> str:
    """The SigV4 credential scope ``<date>/<region>/<service>/aws4_request``."""
    return f"{date}/{region}/{service}/{_TERMINATOR}"


def string_to_sign_v4(amz_date: str, scope: str, canonical_request: str) -> str:
    """The SigV4 string to sign: algorithm, timestamp, scope and the canonical request's hash."""
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return f"{_ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def uri_escape_path(key: str) -> str:
    """An object path as S3's SigV4 canonical URI: UTF-8, %XX per segment, ``/`` kept."""
    return quote(key, safe=_PATH_SAFE)


def _query_escape(value: str) -> str:
    return quote(value, safe=_QUERY_SAFE)


def _split_endpoint(endpoint: str) -> tuple[str, str]:
    """The URL prefix as given and the signed ``host`` value (lower case, no default port)."""
    parts = urlsplit(endpoint)
    hostname = parts.hostname
    if (
        parts.scheme not in _DEFAULT_PORTS
        or not hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError(f"endpoint must be scheme://host[:port], got {endpoint!r}")
    host = f"[{hostname}]" if ":" in hostname else hostname
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS[parts.scheme]:
        host = f"{host}:{port}"
    return endpoint.removesuffix("/"), host


def _canonical_headers(host: str, headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """Signed headers as sorted (name, value): names lower case, values trimmed, repeats joined."""
    merged: dict[str, list[str]] = {}
    if headers:
        for name, value in headers.items():
            # SigV4 "Trimall": outer whitespace dropped, inner runs folded to one space.
            merged.setdefault(name.strip().lower(), []).append(" ".join(value.split()))
    if "host" not in merged:
        merged["host"] = [host]
    return [(name, ",".join(values)) for name, values in sorted(merged.items())]


def presign_v4(
    *,
    method: str,
    endpoint: str,
    path: str,
    access_key_id: str,
    keys: SigningKeys,
    region: str,
    now: datetime,
    expires: int,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> str:
    """A SigV4 query-string presigned S3 URL (UNSIGNED-PAYLOAD), identical to botocore's.

    ``path`` is the unescaped object path (with the bucket first for path style); ``query`` keeps
    its order in the URL; ``headers`` must be sent as signed, and ``host`` is always signed.
    """
    if not path.startswith("/"):
        raise ValueError(f"path must begin with '/', got {path!r}")
    if not 1 <= expires <= _MAX_EXPIRES:
        raise ValueError(f"expires must be 1..{_MAX_EXPIRES} seconds, got {expires}")
    base, host = _split_endpoint(endpoint)

    operation: list[tuple[str, str]] = []
    if query:
        for name, value in query.items():
            if name.lower() in _AUTH_PARAMS:
                raise ValueError(f"query must not carry the signer's own parameter {name!r}")
            operation.append((_query_escape(name), _query_escape(value)))

    stamp = amz_date(now)
    date = stamp[:8]
    credential_scope = scope(date, region)
    signed = _canonical_headers(host, headers)
    signed_names = ";".join(name for name, _ in signed)
    auth = [
        ("X-Amz-Algorithm", _ALGORITHM),
        ("X-Amz-Credential", _query_escape(f"{access_key_id}/{credential_scope}")),
        ("X-Amz-Date", stamp),
        ("X-Amz-Expires", str(expires)),
        ("X-Amz-SignedHeaders", _query_escape(signed_names)),
    ]

    canonical_uri = uri_escape_path(path)
    canonical_query = "&".join(f"{k}={v}" for k, v in sorted(operation + auth))
    canonical_headers = "".join(f"{name}:{value}\n" for name, value in signed)
    canonical_request = (
        f"{method.upper()}\n{canonical_uri}\n{canonical_query}\n"
        f"{canonical_headers}\n{signed_names}\n{_UNSIGNED_PAYLOAD}"
    )
    signature = sign_v4(
        keys.get(date, region),
        string_to_sign_v4(stamp, credential_scope, canonical_request),
    )
    # Operation parameters first, then the signer's: the order botocore (and AWS's example) use.
    url_query = "&".join(f"{k}={v}" for k, v in operation + auth)
    return f"{base}{canonical_uri}?{url_query}&X-Amz-Signature={signature}"
