"""Case 4: completions per second against moto's S3 server, with every S3 round trip counted.

Objects are put into the uploads bucket first (not timed), as browsers would have; then
Fine Uploader's success requests (``POST P/success``) run at a fixed concurrency. The gateway
reaches moto through bench/s3tap.py, which counts and times each S3 call, so the report can
say how many round trips one completion costs and how much of its time is S3's.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.gateway_server import (
    ACCESS_KEY_ID,
    FINEUPLOADER_PATH,
    REGION,
    SECRET_ACCESS_KEY,
    STORAGE_BUCKET,
    UPLOADS_BUCKET,
    Login,
)

# A JPEG's first bytes (SOI, JFIF APP0), so the sniffed type agrees with the declared one.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 1000


@dataclass
class CompletionRun:
    """One timed batch of completions."""

    completions: int
    failures: int
    seconds: float
    per_second: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    s3_calls: dict[str, int] = field(default_factory=dict)
    s3_seconds: dict[str, float] = field(default_factory=dict)


def s3_client(endpoint: str) -> Any:
    """A boto3 client to moto with the gateway's throwaway credentials."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )


def create_buckets(endpoint: str) -> None:
    client = s3_client(endpoint)
    for bucket in (UPLOADS_BUCKET, STORAGE_BUCKET):
        client.create_bucket(Bucket=bucket)


def put_uploads(endpoint: str, key_prefix: str, count: int) -> list[tuple[str, str]]:
    """``count`` small JPEGs under the user's prefix; returns (key, etag) pairs."""
    client = s3_client(endpoint)

    def put(_: int) -> tuple[str, str]:
        key = f"{key_prefix}{uuid.uuid4()}.jpg"
        answer = client.put_object(
            Bucket=UPLOADS_BUCKET,
            Key=key,
            Body=JPEG,
            ContentType="image/jpeg",
            Metadata={"qqfilename": "photo.jpg"},
        )
        return key, str(answer["ETag"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(put, range(count)))


def empty_storage(endpoint: str) -> None:
    """Delete every stored copy: moto lists a bucket by walking all its keys, so a bucket that
    grew from round to round would make later rounds slower for moto's sake alone."""
    client = s3_client(endpoint)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=STORAGE_BUCKET):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=STORAGE_BUCKET, Delete={"Objects": keys})


def _tap(url: str, method: str = "GET") -> dict[str, Any]:
    request = urllib.request.Request(url, method=method)  # noqa: S310 - the tap's loopback URL
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        result: dict[str, Any] = json.loads(answer.read())
    return result


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


async def _complete_all(
    gateway: str, login: Login, uploads: list[tuple[str, str]], concurrency: int
) -> tuple[int, int, float, list[float]]:
    queue = list(reversed(uploads))
    latencies: list[float] = []
    failures = 0
    headers = {"Cookie": login.cookie_header, "Origin": gateway}
    url = f"{gateway}{FINEUPLOADER_PATH}/success"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:

        async def worker() -> None:
            nonlocal failures
            while queue:
                key, etag = queue.pop()
                form = {
                    "key": key,
                    "uuid": key.rsplit("/", 1)[-1].removesuffix(".jpg"),
                    "name": "photo.jpg",
                    "bucket": UPLOADS_BUCKET,
                    "etag": etag,
                }
                t0 = time.perf_counter()
                async with session.post(url, data=form, headers=headers) as resp:
                    answer = await resp.json(content_type=None)
                    ok = resp.status == 200 and answer.get("success") is True
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    failures += 1
                    if failures == 1:
                        print(f"  completion refused: {resp.status} {answer}", flush=True)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(latencies), failures, elapsed, latencies


def run(
    *,
    gateway: str,
    login: Login,
    s3_direct: str,
    tap: str,
    count: int,
    concurrency: int,
) -> CompletionRun:
    """Put ``count`` objects, then complete them all through the gateway and time it."""
    uploads = put_uploads(s3_direct, login.key_prefix, count)
    _tap(f"{tap}/__tap/reset", "POST")
    done, failures, seconds, latencies = asyncio.run(
        _complete_all(gateway, login, uploads, concurrency)
    )
    tally = _tap(f"{tap}/__tap")
    empty_storage(s3_direct)
    return CompletionRun(
        completions=done,
        failures=failures,
        seconds=seconds,
        per_second=done / seconds if seconds else 0.0,
        p50_ms=_percentile(latencies, 50),
        p99_ms=_percentile(latencies, 99),
        mean_ms=sum(latencies) / len(latencies) if latencies else 0.0,
        s3_calls={k: int(v) for k, v in tally["calls"].items()},
        s3_seconds={k: float(v) for k, v in tally["seconds"].items()},
    )
