"""Case 4: the client's fast path, signing and completion, against moto's S3 server, with
every S3 round trip counted.

Each round logs in fresh users (the gateway has written no owner record for them yet) and
gives each several uploads. Every upload goes Fine Uploader's way: one v4 POST policy signed
(``POST P/signature?v4=true``), the object put into the uploads bucket (straight to moto with
boto3, as the browser's S3 POST would: neither timed nor counted), then the success request
(``POST P/success``). The gateway reaches moto through bench/s3tap.py, which counts and times
each S3 call; the tap is read and reset between phases, so the report can say how many round
trips a user's first signature, a later one and a completion cost (issue 16: the owner record
is one S3 request per user and route, never per upload or signature), and how much of a
completion's time is S3's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench import documents
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
class Tally:
    """S3 calls (and moto's seconds) per operation, counted by the tap over one phase."""

    calls: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


@dataclass
class Batch:
    """One timed batch of requests at a fixed concurrency, and the S3 calls it caused."""

    done: int
    failures: int
    seconds: float
    latencies_ms: list[float]
    s3: Tally

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0


@dataclass
class CompletionRun:
    """One round: every user's uploads signed (users' first uploads, then the later ones),
    put straight into S3 (neither timed nor counted), then completed."""

    users: int
    per_user: int
    sign_first: Batch
    sign_later: Batch
    complete: Batch

    # The figures the round's log line and the report read.
    @property
    def completions(self) -> int:
        return self.complete.done

    @property
    def failures(self) -> int:
        return self.sign_first.failures + self.sign_later.failures + self.complete.failures

    @property
    def per_second(self) -> float:
        return self.complete.per_second

    @property
    def signing_per_second(self) -> float:
        done = self.sign_first.done + self.sign_later.done
        seconds = self.sign_first.seconds + self.sign_later.seconds
        return done / seconds if seconds else 0.0

    @property
    def p50_ms(self) -> float:
        return percentile(self.complete.latencies_ms, 50)

    @property
    def p99_ms(self) -> float:
        return percentile(self.complete.latencies_ms, 99)

    @property
    def mean_ms(self) -> float:
        values = self.complete.latencies_ms
        return sum(values) / len(values) if values else 0.0


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


def put_uploads(endpoint: str, keys: list[str]) -> list[str]:
    """A small JPEG at each key, as the browsers' S3 POSTs would leave it; returns the ETags."""
    client = s3_client(endpoint)

    def put(key: str) -> str:
        answer = client.put_object(
            Bucket=UPLOADS_BUCKET,
            Key=key,
            Body=JPEG,
            ContentType="image/jpeg",
            Metadata={"qqfilename": "photo.jpg"},
        )
        return str(answer["ETag"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(put, keys))


def empty_storage(endpoint: str) -> None:
    """Delete every stored copy: moto lists a bucket by walking all its keys, so a bucket that
    grew from round to round would make later rounds slower for moto's sake alone."""
    client = s3_client(endpoint)
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=STORAGE_BUCKET):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=STORAGE_BUCKET, Delete={"Objects": keys})


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


async def read_tap(session: aiohttp.ClientSession, tap: str) -> Tally:
    """The tap's counts since its last reset, and a reset: the next phase starts from zero."""
    async with session.get(f"{tap}/__tap") as answer:
        tally = await answer.json()
    async with session.post(f"{tap}/__tap/reset") as answer:
        await answer.read()
    return Tally(
        calls={k: int(v) for k, v in tally["calls"].items()},
        seconds={k: float(v) for k, v in tally["seconds"].items()},
    )


# One request of a batch: True when the gateway answered as a browser expects.
Send = Callable[[aiohttp.ClientSession], Awaitable[bool]]


async def _batch(
    session: aiohttp.ClientSession, tap: str, sends: list[Send], concurrency: int
) -> Batch:
    """Run ``sends`` at ``concurrency``, timed; then read and reset the tap."""
    queue = list(reversed(sends))
    latencies: list[float] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            send = queue.pop()
            t0 = time.perf_counter()
            if await send(session):
                latencies.append((time.perf_counter() - t0) * 1000)
            else:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return Batch(len(latencies), failures, elapsed, latencies, await read_tap(session, tap))


def _refused(what: str, status: int, answer: object) -> bool:
    print(f"  {what} refused: {status} {answer}", flush=True)
    return False


def _signer(gateway: str, login: Login, key: str) -> Send:
    """Fine Uploader's v4 policy signing for an upload to ``key``, as ``login``."""
    url = f"{gateway}{FINEUPLOADER_PATH}/signature?v4=true"
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Origin": gateway,
        "Cookie": login.cookie_header,
    }

    async def send(session: aiohttp.ClientSession) -> bool:
        body = documents.as_body(
            documents.policy_v4(
                key_prefix=login.key_prefix,
                bucket=UPLOADS_BUCKET,
                access_key_id=ACCESS_KEY_ID,
                region=REGION,
                now=documents.utc_now(),
                key=key,
            )
        )
        async with session.post(url, data=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
        if resp.status == 200 and isinstance(answer, dict) and "signature" in answer:
            return True
        return _refused("signature", resp.status, answer)

    return send


def _completer(gateway: str, login: Login, key: str, etag: str) -> Send:
    """Fine Uploader's success request for the object at ``key``, as ``login``."""
    url = f"{gateway}{FINEUPLOADER_PATH}/success"
    headers = {"Cookie": login.cookie_header, "Origin": gateway}
    form = {
        "key": key,
        "uuid": key.rsplit("/", 1)[-1].removesuffix(".jpg"),
        "name": "photo.jpg",
        "bucket": UPLOADS_BUCKET,
        "etag": etag,
    }

    async def send(session: aiohttp.ClientSession) -> bool:
        async with session.post(url, data=form, headers=headers) as resp:
            answer = await resp.json(content_type=None)
        if resp.status == 200 and isinstance(answer, dict) and answer.get("success") is True:
            return True
        return _refused("completion", resp.status, answer)

    return send


async def _round(
    gateway: str,
    users: list[Login],
    per_user: int,
    s3_direct: str,
    tap: str,
    concurrency: int,
) -> CompletionRun:
    # Interleaved by user (u0's 2nd, u1's 2nd, ...), as several users' pages would send them.
    keys = [[f"{u.key_prefix}{uuid.uuid4()}.jpg" for _ in range(per_user)] for u in users]
    later = [(u, ks[i]) for i in range(1, per_user) for u, ks in zip(users, keys, strict=True)]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        await read_tap(session, tap)  # start from zero
        # Every user's first upload signs before any later one, as a page's first file does: a
        # user's signatures racing before the first one's owner record is written would each
        # write it (If-None-Match; the losers get a 412), which is not what is measured here.
        first = await _batch(
            session,
            tap,
            [_signer(gateway, u, ks[0]) for u, ks in zip(users, keys, strict=True)],
            concurrency,
        )
        rest = await _batch(session, tap, [_signer(gateway, u, k) for u, k in later], concurrency)
        flat = [(u, k) for u, ks in zip(users, keys, strict=True) for k in ks]
        etags = await asyncio.to_thread(put_uploads, s3_direct, [k for _, k in flat])
        await read_tap(session, tap)  # the puts went straight to moto; nothing to count
        done = await _batch(
            session,
            tap,
            [_completer(gateway, u, k, e) for (u, k), e in zip(flat, etags, strict=True)],
            concurrency,
        )
    return CompletionRun(len(users), per_user, first, rest, done)


def run(
    *,
    gateway: str,
    users: list[Login],
    per_user: int,
    s3_direct: str,
    tap: str,
    concurrency: int,
) -> CompletionRun:
    """Sign ``per_user`` uploads for each of ``users`` (logged in, with no owner record yet),
    put the objects, complete them all through the gateway; each phase timed and counted."""
    done = asyncio.run(_round(gateway, users, per_user, s3_direct, tap, concurrency))
    empty_storage(s3_direct)
    return done
