"""The bench's S3 counting: bench/s3tap.py in front of moto, and the completion case's sums.

The completion case (bench/completions.py) reports what the client's fast path costs in S3
requests per upload (issue 16): a user's first signature, a later one, a completion. Those
figures are only as good as the tap's counts and the sums over its phases, which these tests
pin down without starting the bench's servers.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiohttp.test_utils import TestServer

from bench import completions, phases, s3tap
from bench.settings import Settings
from tests.support.s3 import REGION, BucketNames, S3Server, s3_session


async def test_the_bench_tap_counts_each_s3_call_by_operation_and_resets(
    s3_target: S3Server, buckets: BucketNames
) -> None:
    """Each S3 call a client makes through the tap is forwarded to moto and counted once under
    its operation (the completion's HEAD, LIST, ranged GET, copy and delete, the owner record's
    PUT), and a reset starts the next phase from zero: the bench's per-phase counts rest on
    both."""
    tap = TestServer(s3tap.make_app(s3_target.endpoint), host="127.0.0.1")
    await tap.start_server()
    try:
        base = str(tap.make_url("")).rstrip("/")
        config = AioConfig(
            retries={"max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        )
        async with (
            s3_session().create_client(
                "s3",
                region_name=REGION,
                endpoint_url=base,
                aws_access_key_id=s3_target.access_key_id,
                aws_secret_access_key=s3_target.secret_access_key,
                config=config,
            ) as client,
            aiohttp.ClientSession() as http,
        ):

            async def counted() -> dict[str, Any]:
                async with http.get(f"{base}/__tap") as answer:
                    return dict((await answer.json())["calls"])

            bucket = buckets.uploads
            await client.put_object(Bucket=bucket, Key="u/a.jpg", Body=b"\xff\xd8\xff" * 100)
            await client.head_object(Bucket=bucket, Key="u/a.jpg")
            got = await client.get_object(Bucket=bucket, Key="u/a.jpg", Range="bytes=0-9")
            assert len(await got["Body"].read()) == 10  # moto answered through the tap
            await client.copy_object(
                Bucket=bucket, Key="u/b.jpg", CopySource={"Bucket": bucket, "Key": "u/a.jpg"}
            )
            listed = await client.list_objects_v2(Bucket=bucket, Prefix="u/")
            assert listed["KeyCount"] == 2
            await client.delete_object(Bucket=bucket, Key="u/b.jpg")
            phase = await completions.read_tap(http, base)  # the bench's own read and reset
            assert phase.calls == {
                "put": 1,
                "head": 1,
                "get-range": 1,
                "copy": 1,
                "list": 1,
                "delete": 1,
            }
            assert phase.total == 6 and set(phase.seconds) == set(phase.calls)
            assert await counted() == {}
            await client.head_object(Bucket=bucket, Key="u/a.jpg")
            assert (await completions.read_tap(http, base)).calls == {"head": 1}
    finally:
        await tap.close()


def _batch(done: int, calls: dict[str, int]) -> completions.Batch:
    seconds = {op: 0.02 * n for op, n in calls.items()}
    return completions.Batch(done, 0, 1.0, [5.0] * done, completions.Tally(calls, seconds))


def test_the_completion_case_reports_s3_requests_per_upload_by_phase() -> None:
    """Summed over rounds, a user's first signatures, the later ones and the completions are
    divided by their own upload counts: with the owner record's one PUT per new user and six
    requests per completion, a first upload shows 1 + 6 = 7 and a later one 0 + 6, as the
    issue 16 figures in bench/results.md, PROFILE.md and docs/reliability.md say."""
    completion = {"head": 2, "list": 1, "get-range": 1, "copy": 1, "delete": 1}
    runs = [
        completions.CompletionRun(
            users=2,
            per_user=3,
            sign_first=_batch(2, {"put": 2}),
            sign_later=_batch(4, {}),
            complete=_batch(6, {op: n * 6 for op, n in completion.items()}),
        )
        for _ in range(3)
    ]
    settings = Settings(
        quick=True,
        duration=1.0,
        rounds=3,
        warmup=1.0,
        stream_size=1,
        completion_users=2,
        completion_per_user=3,
        completion_concurrency=8,
        inprocess_seconds=0.1,
    )
    section = phases.summarize(runs, settings)
    assert section["s3_per_upload"] == {
        "signing_first_of_user": 1.0,
        "signing_later": 0.0,
        "signing_mean": 0.333,
        "completion": 6.0,
        "total_first_of_user": 7.0,
        "total_later": 6.0,
        "total_mean": 6.333,
    }
    assert section["signing"]["first_of_user"] == 6 and section["signing"]["later"] == 12
    assert section["signing"]["s3_by_call_first"] == {"put": {"per_upload": 1.0, "mean_ms": 20.0}}
    assert section["s3_by_call"]["head"] == {"per_completion": 2.0, "mean_ms": 20.0}
    assert section["s3_calls_per_completion"] == 6.0
    assert [r["s3_signing_first"] for r in section["runs"]] == [2, 2, 2]
