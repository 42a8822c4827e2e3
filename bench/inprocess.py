"""In-process costs, no HTTP: verify+sign of one signing document, and presigned URLs.

``verify+sign`` is what the gateway does with a signature request's body once it has read it:
parse the JSON, check it against the rules (tightening a policy), and sign. Presigning compares
the gateway's ``presign_v4`` with botocore's ``generate_presigned_url`` for the same PUT, which
the gateway's test suite shows to be byte-identical.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from bench import documents
from bench.gateway_server import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, UPLOADS_BUCKET
from gateway.rules import SigningContext, check_rest_v4, tighten_policy
from gateway.signing import SigningKeys, encode_policy, presign_v4, sign_v4

PREFIX = "0123456789abcdef/"


def context(bucket_host: str) -> SigningContext:
    """The signing context of the bench's Fine Uploader route for the bench user."""
    return SigningContext(
        uploads_bucket=UPLOADS_BUCKET,
        bucket_host=bucket_host,
        key_prefix=PREFIX,
        acl="private",
        content_types=("image/*",),
        max_size=20 * 1024 * 1024,
        signature_ttl=900,
        blank_page_url="http://127.0.0.1/uploads/photos/blank",
        access_key_id=ACCESS_KEY_ID,
        region=REGION,
    )


def _per_call_us(func: Callable[[], object], seconds: float) -> float:
    """Mean microseconds per call over at least ``seconds`` of calls (batches of 200)."""
    func()
    calls = 0
    started = time.perf_counter()
    while True:
        for _ in range(200):
            func()
        calls += 200
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return elapsed / calls * 1e6


def make_subjects(
    bucket_host: str, s3_endpoint: str, now: datetime
) -> dict[str, Callable[[], object]]:
    """The four measured operations, each a zero-argument callable."""
    ctx = context(bucket_host)
    keys = SigningKeys(SECRET_ACCESS_KEY)
    policy = documents.as_body(
        documents.policy_v4(
            key_prefix=PREFIX,
            bucket=UPLOADS_BUCKET,
            access_key_id=ACCESS_KEY_ID,
            region=REGION,
            now=now,
        )
    )
    rest = documents.as_body(
        {
            "headers": documents.rest_v4_part(
                key_prefix=PREFIX, bucket_host=bucket_host, region=REGION, now=now
            )
        }
    )
    key = f"{PREFIX}photo.jpg"

    def sign_policy() -> object:
        document = json.loads(policy)
        tightened = tighten_policy(document, ctx, version=4, now=now)
        encoded = encode_policy(tightened)
        credential = next(
            c["x-amz-credential"] for c in tightened["conditions"] if "x-amz-credential" in c
        )
        return sign_v4(keys.get(credential.split("/")[1], REGION), encoded)

    def sign_rest() -> object:
        raw = json.loads(rest)["headers"]
        string_to_sign = check_rest_v4(raw, ctx, now=now)
        return sign_v4(keys.get(string_to_sign.split("\n")[2][:8], REGION), string_to_sign)

    def gateway_presign() -> object:
        return presign_v4(
            method="PUT",
            endpoint=s3_endpoint,
            path=f"/{UPLOADS_BUCKET}/{key}",
            access_key_id=ACCESS_KEY_ID,
            keys=keys,
            region=REGION,
            now=now,
            expires=900,
        )

    client = _botocore_client(s3_endpoint)

    def botocore_presign() -> object:
        return client.generate_presigned_url(
            "put_object", Params={"Bucket": UPLOADS_BUCKET, "Key": key}, ExpiresIn=900
        )

    return {
        "policy_v4": sign_policy,
        "rest_v4": sign_rest,
        "presign_gateway": gateway_presign,
        "presign_botocore": botocore_presign,
    }


def _botocore_client(endpoint: str) -> Any:
    import botocore.session
    from botocore.config import Config

    session = botocore.session.get_session()
    return session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def measure(
    bucket_host: str, s3_endpoint: str, now: datetime, *, rounds: int, seconds: float
) -> dict[str, list[float]]:
    """µs per call of each operation, ``rounds`` times, alternating between them."""
    subjects = make_subjects(bucket_host, s3_endpoint, now)
    out: dict[str, list[float]] = {name: [] for name in subjects}
    for _ in range(rounds):
        for name, func in subjects.items():
            out[name].append(_per_call_us(func, seconds))
    return out
