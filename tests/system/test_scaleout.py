"""Scale-out: two ``python -m gateway serve`` processes with one config behind a round-robin
balancer, as a deployment runs them. The gateway keeps no state beyond cookies and S3
(README, "Several instances"), so a session, a multipart upload and a completion begun on one
instance finish on the other, also when the first one died mid-completion.

The balancer is a tiny TCP one written here: each new client connection goes to the next
backend, a refused one is skipped. The clients open a connection per request, so consecutive
requests alternate between the instances, and the balancer's log says which served what.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from yarl import URL

from gateway.buckets import BucketNames
from tests.support.faults import Fault, FaultProxy, Match, fault_proxy
from tests.support.gateway import SECRET_ACCESS_KEY
from tests.support.processes import GatewayProcess, RssSampler
from tests.support.upstream import Recorded
from tests.system.test_faults import (
    BOUND,
    FORWARD,
    JPEG,
    Answer,
    Client,
    Figures,
    Gateways,
    P,
    check_stored_once,
    figures,
    gateway_tree,
    gateways,
    stage,
    state,
    until_held,
)

__all__ = ["figures", "gateways"]  # fixtures shared with test_faults

MiB = 1024 * 1024
API = "/api/files"
FILES_FORWARD = "/internal/uploads/files"
ALICE = {"Authorization": "Bearer alice"}
FILES_ROUTE = {
    "name": "files",
    "protocol": "api",
    "path": API,
    "max_size": "64MiB",
    "content_types": ["application/octet-stream"],
    "forward": FILES_FORWARD,
    "multipart_threshold": "6MiB",
    "part_size": "8MiB",
}
SIGNING_REQUESTS = 1000


class Balancer:
    """Round-robin over backends, one choice per client connection; a refused backend is
    skipped (nginx's ``proxy_next_upstream error``). ``served`` lists the backend index of
    every connection, in order."""

    def __init__(self, backends: list[GatewayProcess]) -> None:
        self.backends = backends
        self.served: list[int] = []
        self._next = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            for _ in range(len(self.backends)):
                index = self._next
                self._next = (index + 1) % len(self.backends)
                url = URL(self.backends[index].url)
                try:
                    up_reader, up_writer = await asyncio.open_connection(url.host, url.port)
                except OSError:
                    continue
                self.served.append(index)
                try:
                    await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
                finally:
                    await _close(up_writer)
                return
        except asyncio.CancelledError:
            # stop() ends the connections still open. Python 3.11's asyncio logs a connection
            # task that ends cancelled as "Exception in callback" (3.12 no longer does).
            return
        finally:
            await _close(writer)
            self._pipes.discard(task)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close and wait: a transport the loop has not finished closing when the test's loop ends
    is an unclosed socket."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until EOF; a broken side closes the other."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


@pytest.fixture
async def s3_proxy(s3_endpoint: str) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
async def app_proxy(upstream_url: str) -> AsyncIterator[FaultProxy]:
    async with fault_proxy(upstream_url) as proxy:
        yield proxy


@pytest.fixture
async def pair(
    gateways: Gateways,
    app_proxy: FaultProxy,
    s3_proxy: FaultProxy,
    buckets: BucketNames,
    s3_endpoint: str,
) -> tuple[GatewayProcess, GatewayProcess]:
    """Two gateway processes from one config (same keys, buckets, upstream): A and B."""
    tree = gateway_tree(app_proxy, s3_proxy, buckets, s3_endpoint)
    tree["routes"] = [*tree["routes"], FILES_ROUTE]
    tree["identity"] = {"auth_request": {"path": "/api/me"}}
    a, b = await asyncio.gather(gateways.start(tree), gateways.start(tree))
    return a, b


@pytest.fixture
async def balancer(pair: tuple[GatewayProcess, GatewayProcess]) -> AsyncIterator[Balancer]:
    started = Balancer(list(pair))
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """One user's browser: one cookie jar, a new connection for every request."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=30),
    ) as session:
        yield session


def v2_policy(key: str, bucket: str) -> dict[str, Any]:
    """A Fine Uploader v2 policy for ``key``, expiring in a minute of the real clock."""
    expiration = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {
        "expiration": expiration,
        "conditions": [
            {"acl": "private"},
            {"bucket": bucket},
            {"Content-Type": "image/jpeg"},
            {"success_action_status": "200"},
            {"key": key},
            {"x-amz-meta-qqfilename": "cat.jpg"},
            ["content-length-range", "0", "1000000"],
        ],
    }


def signed_for(answer: Any, key: str) -> bool:
    """The answer signs (SigV2, recomputed here) a policy naming ``key``."""
    if not isinstance(answer, dict) or not isinstance(answer.get("policy"), str):
        return False
    policy = answer["policy"]
    digest = hmac.new(SECRET_ACCESS_KEY.encode(), policy.encode(), hashlib.sha1).digest()
    conditions = json.loads(base64.b64decode(policy))["conditions"]
    return (
        answer.get("signature") == base64.b64encode(digest).decode() and {"key": key} in conditions
    )


def rss_of(*samplers: RssSampler) -> int:
    return max(sampler.peak for sampler in samplers)


# --------------------------------------------------------------------------- the scenarios


async def test_a_session_created_on_one_instance_works_on_the_other(
    http: aiohttp.ClientSession,
    pair: tuple[GatewayProcess, GatewayProcess],
    balancer: Balancer,
    buckets: BucketNames,
    figures: Figures,
) -> None:
    """Logged in on A, the user gets signatures from B (and A) on every request: the session
    lives in the cookie, sealed with the shared keys, not in either process."""
    async with asyncio.timeout(BOUND):
        client = Client(http, balancer.url, figures)
        a, b = pair
        with RssSampler(a.pid) as rss_a, RssSampler(b.pid) as rss_b:
            await client.login()  # login on A, P/config on B
            assert balancer.served == [0, 1]
            signed = 0
            for number in range(SIGNING_REQUESTS):
                key = f"{client.prefix}{number:08x}.jpg"
                answer = await client.call(
                    "POST",
                    f"{P}/signature",
                    json=v2_policy(key, buckets.uploads),
                    headers={"Origin": balancer.url},
                )
                signed += answer.status == 200 and signed_for(answer.body, key)
        figures.peak_rss = rss_of(rss_a, rss_b)
        served = (balancer.served.count(0), balancer.served.count(1))
        figures.client_saw = f"{signed} signed of {SIGNING_REQUESTS}"
        figures.detail = f"login on A, then requests served A {served[0]}, B {served[1]}"
        assert served == (1 + SIGNING_REQUESTS // 2, 1 + SIGNING_REQUESTS // 2)
        assert (signed, figures.errors) == (SIGNING_REQUESTS, 0)


async def test_a_multipart_upload_created_on_one_instance_completes_on_the_other(
    http: aiohttp.ClientSession,
    pair: tuple[GatewayProcess, GatewayProcess],
    balancer: Balancer,
    app_proxy: FaultProxy,
    s3_proxy: FaultProxy,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    figures: Figures,
) -> None:
    """The API grant from A (S3 multipart upload created there) completes on B: the upload id
    is a sealed token any instance opens, and B stores it once."""
    async with asyncio.timeout(BOUND):
        client = Client(http, balancer.url, figures)
        a, b = pair
        data = b"scale-out payload\n" + os.urandom(9 * MiB)
        declared = {
            "filename": "big.bin",
            "content_type": "application/octet-stream",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        with RssSampler(a.pid) as rss_a, RssSampler(b.pid) as rss_b:
            granted = await client.call("POST", API, json=declared, headers=ALICE)
            assert granted.status == 201, granted.body
            assert balancer.served == [0]
            parts = await put_parts(granted.body, data)
            assert len(parts) == 2
            done = await client.call(
                "POST",
                f"{API}/{granted.body['upload_id']}/complete",
                json={"parts": parts},
                headers=ALICE,
            )
        figures.peak_rss = rss_of(rss_a, rss_b)
        figures.client_saw = f"{granted.status} on A, {done.status} on B"
        figures.detail = f"{len(data):,} bytes in {len(parts)} parts"
        figures.s3_calls = len(s3_proxy.seen)
        assert balancer.served == [0, 1]
        assert done.status == 200, done.body
        await check_stored_once(
            s3_client,
            buckets,
            recorded,
            figures,
            done,
            data=data,
            app_proxy=app_proxy,
            forward=FILES_FORWARD,
        )


async def put_parts(grant: dict[str, Any], data: bytes) -> list[dict[str, Any]]:
    """PUT each part to its presigned URL, straight to S3 as the client is told; the part list."""
    size = grant["part_size"]
    parts = []
    async with aiohttp.ClientSession() as direct:
        for part in grant["parts"]:
            number = part["part_number"]
            async with direct.put(
                part["url"], data=io.BytesIO(data[(number - 1) * size : number * size])
            ) as resp:
                assert resp.status == 200, await resp.text()
                parts.append({"part_number": number, "etag": resp.headers["ETag"]})
    return parts


@pytest.mark.parametrize("protocol", ["fineuploader", "api"])
async def test_a_completion_retried_on_the_other_instance_after_the_first_died_stores_once(
    protocol: str,
    http: aiohttp.ClientSession,
    pair: tuple[GatewayProcess, GatewayProcess],
    balancer: Balancer,
    gateways: Gateways,
    app_proxy: FaultProxy,
    s3_proxy: FaultProxy,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    figures: Figures,
) -> None:
    """The instance running a completion dies (SIGKILL) with the copy made and the forward in
    flight, the upload still pending in the uploads bucket; the client's retry lands on the
    other, which finds the copy in S3 and finishes: one object, nothing left in uploads, one
    completion upstream."""
    async with asyncio.timeout(BOUND):
        client = Client(http, balancer.url, figures)
        complete, forward, data = await _prepared(protocol, client, s3_client, buckets)
        rule = app_proxy.inject(Match("POST", path=forward), Fault("hold"))

        with RssSampler(pair[0].pid) as rss_a, RssSampler(pair[1].pid) as rss_b:
            attempt = asyncio.create_task(complete())
            await until_held(rule, attempt)
        first = balancer.served[-1]
        at_kill = await state(s3_client, buckets, recorded)
        # The upload stays, pending, until the app has answered 2xx: the sweep's to find.
        assert at_kill == (1, 1, 0)
        gateways.kill(pair[first])
        answer = await attempt
        assert answer.status == 0
        await rule.gone.wait()  # the dead instance's forward died with it, never sent
        app_proxy.remove(rule)

        with RssSampler(pair[1 - first].pid) as rss_other:
            final = await complete()
        assert balancer.served[-1] == 1 - first
        figures.peak_rss = rss_of(rss_a, rss_b, rss_other)
        figures.after_fault = at_kill
        figures.client_saw = f"{answer.status} {answer.body}"
        figures.detail = (
            f"killed {'AB'[first]} with its forward held; retry served by {'AB'[1 - first]}"
        )
        figures.faults = app_proxy.faulted
        figures.s3_calls = len(s3_proxy.seen)
        await check_stored_once(
            s3_client,
            buckets,
            recorded,
            figures,
            final,
            data=data,
            app_proxy=app_proxy,
            forward=forward,
        )


async def _prepared(
    protocol: str, client: Client, s3_client: Any, buckets: BucketNames
) -> tuple[Callable[[], Coroutine[Any, Any, Answer]], str, bytes]:
    """An upload sent and ready to complete: the completion call, its forward path, its bytes."""
    if protocol == "fineuploader":
        await client.login()
        key = f"{client.prefix}5e6f7a8b.jpg"
        etag = await stage(s3_client, buckets.uploads, key)
        return (lambda: client.success(key, buckets.uploads, etag)), FORWARD, JPEG
    data = b"scale-out payload\n" + os.urandom(9 * MiB)
    declared = {
        "filename": "big.bin",
        "content_type": "application/octet-stream",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    granted = await client.call("POST", API, json=declared, headers=ALICE)
    assert granted.status == 201, granted.body
    parts = await put_parts(granted.body, data)
    path = f"{API}/{granted.body['upload_id']}/complete"

    def complete() -> Coroutine[Any, Any, Answer]:
        return client.call("POST", path, json={"parts": parts}, headers=ALICE)

    return complete, FILES_FORWARD, data
