"""Faults injected at each step of the completion, against a real ``python -m gateway serve``.

The gateway reaches moto and the upstream app through fault-injecting proxies
(tests/support/faults.py). Each scenario stages an upload, breaks one step of the pipeline
(S3 HEAD, the sniffing GET, the copy, the delete; the upstream refusing, timing out, failing,
cutting its answer; the gateway itself killed with SIGKILL), checks what the client sees, removes
the fault, lets the client retry, and checks the outcome: one stored object holding the uploaded
bytes, nothing left in the uploads bucket, every completion the upstream recorded under the
same ``Idempotency-Key``. The upload is removed only once the app has answered 2xx (issue 16:
the sweep finds what is pending there), so after any fault from the copy on, until the app's
answer, it is still in the uploads bucket beside its copy.

Each test prints its figures as one JSON line (run with ``-s`` to see them; they are appended
to the file $RELIABILITY_FIGURES names, when set): what the client saw, the state the fault
left, then objects stored, objects left in the uploads bucket, completions the upstream
recorded, distinct Idempotency-Keys among the forwards, duplicates and objects lost.
docs/reliability.md lists them from a run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import pytest

from gateway.buckets import BucketNames
from tests.support.faults import Fault, FaultProxy, Match, Rule, fault_proxy
from tests.support.gateway import config_dict
from tests.support.processes import GatewayProcess, RssSampler, start_gateway_process
from tests.support.upstream import Recorded

P = "/uploads/photos"
FORWARD = "/internal/uploads/photos"
# The webhook timeout of these gateways: short, so the timeout scenario stays quick.
WEBHOOK_TIMEOUT = 1.0
# Every test finishes well within this, or fails.
BOUND = 60.0
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + os.urandom(200_000)


# --------------------------------------------------------------------------- figures


@dataclass
class Figures:
    """What one scenario cost and left behind, as docs/reliability.md reports it."""

    scenario: str
    requests: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    faults: int = 0
    peak_rss: int = 0
    stored: int = 0
    left_in_uploads: int = 0
    lost: int = 0
    duplicates: int = 0
    upstream_records: int = 0
    # Forward requests that left the gateway (seen by the proxy in front of the upstream, the
    # faulted ones too) and the distinct Idempotency-Keys they carried.
    forwards: int = 0
    idempotency_keys: int = 0
    s3_calls: int = 0
    client_saw: str = ""
    client_body: Any = None
    # (stored, in uploads, recorded) right after the failed attempt.
    after_fault: tuple[int, int, int] | None = None
    detail: str = ""
    started: float = field(default_factory=time.monotonic)

    def p99(self) -> float:
        """Nearest-rank 99th percentile: with under 100 requests, the slowest one."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        del out["latencies"], out["started"]
        out["p99_ms"] = round(self.p99() * 1000, 1)
        out["seconds"] = round(time.monotonic() - self.started, 2)
        out["peak_rss_mb"] = round(self.peak_rss / 1e6, 1)
        del out["peak_rss"]
        return out


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Figures]:
    """The test's figures: printed, and appended as a JSON line to $RELIABILITY_FIGURES if set."""
    collected = Figures(scenario=request.node.name)
    yield collected
    line = json.dumps(collected.summary(), default=str)
    print(f"\nFIGURES {line}")
    target = os.environ.get("RELIABILITY_FIGURES")
    if target:
        with Path(target).open("a") as out:
            out.write(line + "\n")


# --------------------------------------------------------------------------- the client


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (the connection broke)
    body: Any


class Client:
    """One user's client of the gateway: a cookie jar kept across gateway processes on
    127.0.0.1 (cookies do not depend on the port), every request timed and counted."""

    def __init__(self, session: aiohttp.ClientSession, base: str, figures: Figures) -> None:
        self.session = session
        self.base = base
        self.figures = figures
        self.prefix = ""

    async def call(self, method: str, path: str, **kwargs: Any) -> Answer:
        started = time.perf_counter()
        self.figures.requests += 1
        try:
            async with self.session.request(method, self.base + path, **kwargs) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, ConnectionError) as exc:
            self.figures.errors += 1
            return Answer(0, type(exc).__name__)
        finally:
            self.figures.latencies.append(time.perf_counter() - started)
        if status >= 400:
            self.figures.errors += 1
        try:
            return Answer(status, json.loads(text))
        except ValueError:
            return Answer(status, text)

    async def login(self, user: str = "alice") -> None:
        """Log in through the upstream's login header; learn the key prefix from P/config."""
        assert (await self.call("GET", f"/login?user={user}")).status == 200
        # The app's own cookie goes: from here on the gateway's session alone says who this is
        # (an auth_request to the app would otherwise recognise the user by it).
        self.session.cookie_jar.clear(lambda cookie: cookie.key == "app_user")
        config = await self.call("GET", f"{P}/config")
        assert config.status == 200, config.body
        self.prefix = config.body["keyPrefix"]

    async def success(self, key: str, bucket: str, etag: str) -> Answer:
        """POST P/success as Fine Uploader sends it once S3 has the file."""
        form = urlencode(
            {
                "key": key,
                "uuid": key.rsplit("/", 1)[-1],
                "name": "cat.jpg",
                "bucket": bucket,
                "etag": etag,
                "album": "7",
            }
        )
        headers = {"Origin": self.base, "Content-Type": "application/x-www-form-urlencoded"}
        return await self.call("POST", f"{P}/success", data=form, headers=headers)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A browser-like session: one cookie jar, which keeps cookies of IP hosts."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=timeout
    ) as session:
        yield session


# --------------------------------------------------------------------------- servers


@pytest.fixture
async def s3_proxy(s3_endpoint: str) -> AsyncIterator[FaultProxy]:
    """The fault proxy in front of moto."""
    async with fault_proxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
async def app_proxy(upstream_url: str) -> AsyncIterator[FaultProxy]:
    """The fault proxy in front of the reflecting upstream app."""
    async with fault_proxy(upstream_url) as proxy:
        yield proxy


def gateway_tree(
    app_proxy: FaultProxy, s3_proxy: FaultProxy, buckets: BucketNames, s3_endpoint: str
) -> dict[str, Any]:
    """The gateway's config: S3 and the upstream through the proxies; browsers' and API
    clients' own S3 requests (presigned URLs) go to moto directly."""
    tree = config_dict(
        app_proxy.url,
        s3_endpoint=s3_proxy.url,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )
    tree["s3"]["public_endpoint_url"] = s3_endpoint
    tree["webhook"]["timeout"] = WEBHOOK_TIMEOUT
    return tree


class Gateways:
    """``python -m gateway serve`` subprocesses of one test; all stopped (by pid) at its end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[GatewayProcess] = []
        self._count = 0

    async def start(self, tree: dict[str, Any]) -> GatewayProcess:
        self._count += 1
        workdir = self.workdir / f"gateway-{self._count}"
        workdir.mkdir()
        gateway = await start_gateway_process(tree, workdir)
        self.started.append(gateway)
        return gateway

    def kill(self, gateway: GatewayProcess) -> None:
        """SIGKILL: no shutdown, no cleanup, open connections dropped by the kernel."""
        os.kill(gateway.pid, signal.SIGKILL)
        gateway.proc.wait(timeout=10)
        gateway.stopped = True

    def stop_all(self) -> None:
        for gateway in self.started:
            gateway.stop()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Gateways]:
    started = Gateways(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


# --------------------------------------------------------------------------- S3 and outcomes


async def stage(s3_client: Any, bucket: str, key: str) -> str:
    """Put the file in the uploads bucket as the browser would (straight to S3); its ETag."""
    answer = await s3_client.put_object(Bucket=bucket, Key=key, Body=JPEG, ContentType="image/jpeg")
    return str(answer["ETag"])


async def keys_in(s3_client: Any, bucket: str) -> list[str]:
    listing = await s3_client.list_objects_v2(Bucket=bucket)
    # Not the gateway's own records (owner records, leases: gateway/completion/sweep.py).
    keys = [item["Key"] for item in listing.get("Contents", [])]
    return [key for key in keys if not key.startswith(".gateway/")]


async def read(s3_client: Any, bucket: str, key: str) -> bytes:
    answer = await s3_client.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as body:
        data: bytes = await body.read()
    return data


async def state(s3_client: Any, buckets: BucketNames, recorded: Recorded) -> tuple[int, int, int]:
    """(objects stored, objects in the uploads bucket, completions the upstream recorded)."""
    stored = await keys_in(s3_client, buckets.storage)
    uploads = await keys_in(s3_client, buckets.uploads)
    return len(stored), len(uploads), len(recorded.completions)


async def check_stored_once(
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    figures: Figures,
    final: Answer,
    *,
    records: int = 1,
    data: bytes = JPEG,
    app_proxy: FaultProxy | None = None,
    forward: str = FORWARD,
) -> None:
    """One stored object with the uploaded bytes, the uploads bucket empty (no multipart upload
    open either), the upstream told ``records`` times under one Idempotency-Key about it; every
    forward that reached ``app_proxy`` (failed ones too) carried that same key."""
    stored = await keys_in(s3_client, buckets.storage)
    uploads = await keys_in(s3_client, buckets.uploads)
    multipart = await s3_client.list_multipart_uploads(Bucket=buckets.uploads)
    uploads += [item["Key"] for item in multipart.get("Uploads", [])]
    intact = [key for key in stored if await read(s3_client, buckets.storage, key) == data]
    figures.stored = len(stored)
    figures.left_in_uploads = len(uploads)
    figures.lost = 0 if intact else 1
    figures.duplicates = max(0, len(stored) - 1)
    figures.upstream_records = len(recorded.completions)
    recorded_keys = {entry["idempotency_key"] for entry in recorded.completions}
    sent_keys = forward_keys(app_proxy, forward) if app_proxy is not None else []
    figures.forwards = len(sent_keys)
    figures.idempotency_keys = len(recorded_keys | set(sent_keys))
    figures.duplicates += max(0, figures.idempotency_keys - 1)
    # Fine Uploader's answer has ``success``; an API client's is the upstream's JSON as it is.
    assert final.status == 200 and final.body.get("success", True) is True, final
    assert len(stored) == 1 and intact == stored, stored
    assert uploads == []
    assert len(recorded.completions) == records
    assert len(recorded_keys) == 1
    assert set(sent_keys) <= recorded_keys, (sent_keys, recorded_keys)
    assert {entry["message"]["object"]["key"] for entry in recorded.completions} == set(stored)
    assert final.body["key"] == stored[0]


def forward_keys(app_proxy: FaultProxy, forward: str) -> list[str]:
    """The Idempotency-Key of every completion forward that reached the upstream's proxy."""
    return [
        next((v for k, v in seen.headers.items() if k.lower() == "idempotency-key"), "")
        for seen in app_proxy.seen
        if seen.matches(Match("POST", path=forward))
    ]


# --------------------------------------------------------------------------- one fault at a time


@dataclass(frozen=True)
class Scenario:
    """A fault at one step, what the client sees, and where the pipeline stood after it."""

    target: Literal["s3", "app"]
    match: str  # which requests: see match_for
    fault: Fault | None  # None: the target refuses connections
    status: int
    reason: str | None
    after: tuple[int, int, int]  # (stored, in uploads, recorded) after the failed attempt
    # Requests the fault struck, at least and at most: the gateway's S3 client retries twice, and
    # aiohttp once more on a reused keep-alive connection that breaks.
    hits: tuple[int, int] = (0, 0)
    records: int = 1  # completions the upstream records in all


SCENARIOS = {
    # S3 fails on HEAD of the upload, every attempt: the gateway's S3 client tries three times
    # (botocore's max_attempts counts retries). A reset connection reads as unreachable.
    "s3-head-503": Scenario(
        "s3", "head", Fault("status", 503), 503, "storage-failed", (0, 1, 0), hits=(3, 3)
    ),
    "s3-head-reset": Scenario(
        "s3", "head", Fault("reset"), 503, "storage-unreachable", (0, 1, 0), hits=(3, 6)
    ),
    # One failed HEAD is absorbed by those retries: the client never notices.
    "s3-head-503-once": Scenario(
        "s3", "head", Fault("status", 503, times=1), 200, None, (1, 0, 1), hits=(1, 1)
    ),
    # The sniffing read of the first bytes is cut mid-body (a body being read is not retried).
    "s3-get-cut": Scenario(
        "s3", "get", Fault("cut", cut_after=100), 503, "storage-failed", (0, 1, 0), hits=(1, 1)
    ),
    # S3 refuses connections altogether.
    "s3-down": Scenario("s3", "all", None, 503, "storage-unreachable", (0, 1, 0)),
    "s3-copy-503": Scenario(
        "s3", "copy", Fault("status", 503), 503, "storage-failed", (0, 1, 0), hits=(3, 3)
    ),
    # S3 makes the copy but its answer is lost: a copy exists that the gateway never saw.
    "s3-copy-reset-after-copying": Scenario(
        "s3",
        "copy",
        Fault("reset", after_target=True),
        503,
        "storage-unreachable",
        (1, 1, 0),
        hits=(3, 6),
    ),
    # The copy is made, the app has acknowledged it, removing the original fails: both exist,
    # and the retry finds the copy and tells the app again under the same key.
    "s3-delete-503": Scenario(
        "s3",
        "delete",
        Fault("status", 503),
        503,
        "storage-failed",
        (1, 1, 1),
        hits=(3, 3),
        records=2,
    ),
    # S3 removes the original (after the app's 2xx) but its answer is lost: the retry finds no
    # upload, only the copy, and goes on from the copy; the app hears it again under one key.
    "s3-delete-reset-after-deleting": Scenario(
        "s3",
        "delete",
        Fault("reset", after_target=True),
        503,
        "storage-unreachable",
        (1, 0, 1),
        hits=(3, 6),
        records=2,
    ),
    # The upstream refuses connections: the forward is never retried by the gateway itself
    # (the sweep would, later); the upload stays in the uploads bucket, pending, beside its copy.
    "upstream-refused": Scenario("app", "forward", None, 502, "upstream-refused", (1, 1, 0)),
    "upstream-timeout": Scenario(
        "app",
        "forward",
        Fault("delay", seconds=WEBHOOK_TIMEOUT + 4),
        504,
        "upstream-timeout",
        (1, 1, 0),
        hits=(1, 1),
    ),
    # The upstream records the completion but answers too late: the gateway gives up at the
    # webhook timeout; the upstream hears the retry under the same key.
    "upstream-timeout-after-recording": Scenario(
        "app",
        "forward",
        Fault("delay", seconds=WEBHOOK_TIMEOUT + 4, after_target=True),
        504,
        "upstream-timeout",
        (1, 1, 1),
        hits=(1, 1),
        records=2,
    ),
    "upstream-500": Scenario(
        "app", "forward", Fault("status", 500), 502, "upstream-failed", (1, 1, 0), hits=(1, 1)
    ),
    "upstream-reset": Scenario(
        "app", "forward", Fault("reset"), 502, "upstream-broken", (1, 1, 0), hits=(1, 1)
    ),
    # The upstream records the completion, then closes the connection without a word.
    "upstream-closed-after-recording": Scenario(
        "app",
        "forward",
        Fault("close", after_target=True),
        502,
        "upstream-broken",
        (1, 1, 1),
        hits=(1, 1),
        records=2,
    ),
    # The upstream records the completion, then its answer is cut: it hears the retry too, under
    # the same Idempotency-Key and naming the same object, which is how it knows it is a repeat.
    "upstream-cut-mid-answer": Scenario(
        "app",
        "forward",
        Fault("cut", cut_after=5),
        502,
        "upstream-broken",
        (1, 1, 1),
        hits=(1, 1),
        records=2,
    ),
}


def match_for(name: str, buckets: BucketNames, key: str) -> Match:
    return {
        "head": Match("HEAD", path=f"/{buckets.uploads}/{key}"),
        "get": Match("GET", path=f"/{buckets.uploads}/{key}"),
        "copy": Match("PUT", path_prefix=f"/{buckets.storage}/", header="x-amz-copy-source"),
        "delete": Match("DELETE", path=f"/{buckets.uploads}/{key}"),
        "forward": Match("POST", path=FORWARD),
        "all": Match(),
    }[name]


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_a_fault_at_one_step_then_a_retry_stores_once(
    name: str,
    http: aiohttp.ClientSession,
    gateways: Gateways,
    s3_proxy: FaultProxy,
    app_proxy: FaultProxy,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    figures: Figures,
) -> None:
    """A failed step gives the client a 5xx naming it and leaves the pipeline resumable (the
    upload still pending in the uploads bucket unless S3 removed it after the app's 2xx): the
    retry stores the file once, empties the uploads bucket, tells the upstream under one key."""
    scenario = SCENARIOS[name]
    async with asyncio.timeout(BOUND):
        gateway = await gateways.start(gateway_tree(app_proxy, s3_proxy, buckets, s3_endpoint))
        client = Client(http, gateway.url, figures)
        with RssSampler(gateway.pid) as rss:
            await client.login()
            key = f"{client.prefix}4f1c0d2e.jpg"
            etag = await stage(s3_client, buckets.uploads, key)
            proxy = s3_proxy if scenario.target == "s3" else app_proxy
            if scenario.fault is None:
                await proxy.refuse_connections()
            else:
                proxy.inject(match_for(scenario.match, buckets, key), scenario.fault)

            first = await client.success(key, buckets.uploads, etag)
            figures.client_saw = f"{first.status} {_reason(first)}"
            figures.client_body = first.body
            assert first.status == scenario.status, first
            if scenario.status == 200:
                final = first
            else:
                assert first.body["success"] is False and first.body["error"], first
                assert first.body["reason"] == scenario.reason
                figures.after_fault = await state(s3_client, buckets, recorded)
                assert figures.after_fault == scenario.after
                proxy.clear()
                await proxy.accept_connections()
                final = await client.success(key, buckets.uploads, etag)
        figures.faults = s3_proxy.faulted + app_proxy.faulted
        figures.s3_calls = len(s3_proxy.seen)
        figures.peak_rss = rss.peak
        await check_stored_once(
            s3_client,
            buckets,
            recorded,
            figures,
            final,
            records=scenario.records,
            app_proxy=app_proxy,
        )
        low, high = scenario.hits
        assert low <= figures.faults <= high


def _reason(answer: Answer) -> str:
    if isinstance(answer.body, dict):
        return str(answer.body.get("reason") or ("success" if answer.body.get("success") else ""))
    return str(answer.body)


# --------------------------------------------------------------------------- kill -9


async def until_held(rule: Rule, attempt: asyncio.Task[Answer]) -> None:
    """Wait until the completion reaches the held step; fail at once if it ends before."""
    arrived = asyncio.ensure_future(rule.arrived.wait())
    await asyncio.wait({arrived, attempt}, return_when=asyncio.FIRST_COMPLETED)
    if not arrived.done():
        arrived.cancel()
        pytest.fail(
            f"the completion ended before reaching {rule.match.describe()}: {attempt.result()}"
        )


@pytest.mark.parametrize("point", ["before-deleting-the-original", "during-the-forward"])
async def test_a_gateway_killed_between_copy_and_forward_then_restarted_stores_once(
    point: str,
    http: aiohttp.ClientSession,
    gateways: Gateways,
    s3_proxy: FaultProxy,
    app_proxy: FaultProxy,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    figures: Figures,
) -> None:
    """SIGKILL with the copy made (its forward, or the DELETE of the original that follows the
    app's 2xx, held at a proxy): the upload is still in the uploads bucket, pending, and a
    restarted gateway completes the client's retry from S3 alone, storing the file once."""
    async with asyncio.timeout(BOUND):
        tree = gateway_tree(app_proxy, s3_proxy, buckets, s3_endpoint)
        first = await gateways.start(tree)
        client = Client(http, first.url, figures)
        await client.login()
        key = f"{client.prefix}9a8b7c6d.jpg"
        etag = await stage(s3_client, buckets.uploads, key)
        if point == "before-deleting-the-original":
            proxy = s3_proxy
            rule = s3_proxy.inject(Match("DELETE", path=f"/{buckets.uploads}/{key}"), Fault("hold"))
            # The app answered 2xx before the delete: it hears the retry too, under one key.
            at_kill, records = (1, 1, 1), 2
        else:
            proxy = app_proxy
            rule = app_proxy.inject(Match("POST", path=FORWARD), Fault("hold"))
            at_kill, records = (1, 1, 0), 1

        with RssSampler(first.pid) as rss:
            attempt = asyncio.create_task(client.success(key, buckets.uploads, etag))
            await until_held(rule, attempt)
        figures.peak_rss = rss.peak
        figures.after_fault = await state(s3_client, buckets, recorded)
        assert figures.after_fault == at_kill
        gateways.kill(first)
        answer = await attempt
        figures.client_saw = f"{answer.status} {answer.body}"
        figures.detail = f"killed while {rule.match.describe()} was held"
        assert answer.status == 0  # the connection died with the process
        await rule.gone.wait()  # the held request died with its sender, never forwarded
        proxy.remove(rule)
        assert await state(s3_client, buckets, recorded) == at_kill

        second = await gateways.start(tree)
        client.base = second.url
        with RssSampler(second.pid) as rss:
            final = await client.success(key, buckets.uploads, etag)
        figures.peak_rss = max(figures.peak_rss, rss.peak)
        figures.faults = s3_proxy.faulted + app_proxy.faulted
        figures.s3_calls = len(s3_proxy.seen)
        await check_stored_once(
            s3_client, buckets, recorded, figures, final, records=records, app_proxy=app_proxy
        )


# --------------------------------------------------------------------------- the fast path's cost


async def test_the_fast_path_costs_one_s3_request_more_per_user_for_the_owner_record(
    http: aiohttp.ClientSession,
    gateways: Gateways,
    s3_proxy: FaultProxy,
    app_proxy: FaultProxy,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    figures: Figures,
) -> None:
    """Issue 16's cost on the client's fast path, counted at the S3 proxy of a real ``serve``
    process: a user's first signature on a route writes the owner record (one conditional
    PUT to the storage bucket's ``.gateway/owners/``), the user's later signatures write
    nothing, and every completion asks S3 the same six things, so a user's first upload costs
    7 S3 requests and each later one 6; another user pays the one PUT again."""
    tree = gateway_tree(app_proxy, s3_proxy, buckets, s3_endpoint)
    tree["completion"] = {"interval": 3600}  # the sweep on, but no pass within the test
    gateway = await gateways.start(tree)
    owners = Match("PUT", path_prefix=f"/{buckets.storage}/.gateway/owners/")
    counts: dict[str, tuple[int, int, int]] = {}

    async def upload(user: str, name: str) -> None:
        client = Client(http, gateway.url, figures)
        http.cookie_jar.clear()
        await client.login(user)
        key = f"{client.prefix}{name}"
        policy = {
            "expiration": "2099-01-01T00:00:00.000Z",
            "conditions": [
                {"acl": "private"},
                {"bucket": buckets.uploads},
                {"Content-Type": "image/jpeg"},
                {"success_action_status": "200"},
                {"key": key},
                ["content-length-range", "0", str(len(JPEG))],
            ],
        }
        before = len(s3_proxy.seen)
        signed = await client.call(
            "POST", f"{P}/signature", json=policy, headers={"Origin": gateway.url}
        )
        assert signed.status == 200, signed.body
        signing = s3_proxy.seen[before:]
        etag = await stage(s3_client, buckets.uploads, key)  # the browser's POST, straight to S3
        before = len(s3_proxy.seen)
        done = await client.success(key, buckets.uploads, etag)
        assert done.status == 200 and done.body["success"] is True, done
        completing = len(s3_proxy.seen) - before
        written = sum(1 for seen in signing if seen.matches(owners))
        counts[f"{user} {name}"] = (len(signing), written, completing)

    await upload("alice", "first.jpg")
    await upload("alice", "second.jpg")
    await upload("bob", "first.jpg")
    figures.detail = json.dumps(counts)
    assert counts == {
        "alice first.jpg": (1, 1, 6),
        "alice second.jpg": (0, 0, 6),
        "bob first.jpg": (1, 1, 6),
    }
    assert len(recorded.completions) == 3


async def test_a_new_users_concurrent_signatures_write_one_owner_record(
    http: aiohttp.ClientSession,
    gateways: Gateways,
    s3_proxy: FaultProxy,
    app_proxy: FaultProxy,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    figures: Figures,
) -> None:
    """A new user's page signs three files at once (Fine Uploader's default): the owner record
    is written by one PUT, counted at the S3 proxy of a real ``serve`` process, while S3 takes
    its time over it (delayed 0.5 s), and every signature is answered."""
    tree = gateway_tree(app_proxy, s3_proxy, buckets, s3_endpoint)
    tree["completion"] = {"interval": 3600}
    gateway = await gateways.start(tree)
    owners = Match("PUT", path_prefix=f"/{buckets.storage}/.gateway/owners/")
    s3_proxy.inject(owners, Fault("delay", seconds=0.5))
    client = Client(http, gateway.url, figures)
    http.cookie_jar.clear()
    await client.login("carol")

    def policy(name: str) -> dict[str, Any]:
        return {
            "expiration": "2099-01-01T00:00:00.000Z",
            "conditions": [
                {"acl": "private"},
                {"bucket": buckets.uploads},
                {"Content-Type": "image/jpeg"},
                {"success_action_status": "200"},
                {"key": f"{client.prefix}{name}"},
                ["content-length-range", "0", str(len(JPEG))],
            ],
        }

    before = len(s3_proxy.seen)
    answers = await asyncio.gather(
        *(
            client.call(
                "POST", f"{P}/signature", json=policy(f"{n}.jpg"), headers={"Origin": gateway.url}
            )
            for n in range(3)
        )
    )
    assert [a.status for a in answers] == [200, 200, 200], answers
    written = [seen for seen in s3_proxy.seen[before:] if seen.matches(owners)]
    assert len(written) == 1, written
