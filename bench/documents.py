"""The signing requests a browser sends, built for the bench's user, bucket and clock.

Shapes follow what Fine Uploader 5.16 sends (docs/protocols/fineuploader.md): the v4 POST
policy, conditions in its fixed order, and the raw v4 string of a chunked upload's part. The key
lies under the user's prefix, the credential names today and the configured region, and
x-amz-date is ``now``: the gateway's rules accept them as a real page's.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta

from gateway.signing import amz_date, format_expiration, scope

# Any 64-hex payload hash: the part's bytes never reach the signer.
PART_SHA256 = hashlib.sha256(b"bench part").hexdigest()


def policy_v4(
    *,
    key_prefix: str,
    bucket: str,
    access_key_id: str,
    region: str,
    now: datetime,
    key: str | None = None,
) -> dict[str, object]:
    """A v4 POST policy of a 1 MB JPEG, as Fine Uploader builds it (fixed condition order);
    for ``key``, else a fresh one under ``key_prefix``."""
    stamp = amz_date(now)
    return {
        "expiration": format_expiration(now + timedelta(minutes=5)),
        "conditions": [
            {"acl": "private"},
            {"bucket": bucket},
            {"Content-Type": "image/jpeg"},
            {"success_action_status": "200"},
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"key": key or f"{key_prefix}{uuid.uuid4()}.jpg"},
            {"x-amz-credential": f"{access_key_id}/{stamp[:8]}/{region}/s3/aws4_request"},
            {"x-amz-date": stamp},
            {"x-amz-meta-qqfilename": "photo.jpg"},
            ["content-length-range", "0", "15000000"],
        ],
    }


def rest_v4_part(*, key_prefix: str, bucket_host: str, region: str, now: datetime) -> str:
    """The raw v4 string Fine Uploader sends to sign part 1 of a chunked (multipart) upload."""
    stamp = amz_date(now)
    key = f"{key_prefix}{uuid.uuid4()}.jpg"
    return (
        f"AWS4-HMAC-SHA256\n{stamp}\n{scope(stamp[:8], region)}\n"
        f"PUT\n/{key}\npartNumber=1&uploadId=BENCHUPLOADID\n"
        f"host:{bucket_host}\nx-amz-content-sha256:{PART_SHA256}\nx-amz-date:{stamp}\n"
        f"\nhost;x-amz-content-sha256;x-amz-date\n{PART_SHA256}"
    )


def as_body(document: object) -> bytes:
    """A document as the JSON body Fine Uploader POSTs (compact, like ``JSON.stringify``)."""
    return json.dumps(document, separators=(",", ":")).encode()


def utc_now() -> datetime:
    return datetime.now(UTC)
