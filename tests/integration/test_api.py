"""The ``api`` protocol end to end: grants, presigned PUTs and parts to moto, completion, abort.

Real sockets only: the gateway on loopback, moto's S3 server, the reflecting upstream app. The
client side is plain aiohttp, doing what the README tells an API client to do.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import unquote

import aiohttp
import botocore.auth
import botocore.session
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient as _TestClient
from botocore.config import Config as BotoConfig
from multidict import CIMultiDict
from prometheus_client.parser import text_string_to_metric_families

from gateway.buckets import BucketNames
from gateway.config import Config
from gateway.protocols.api import TOKEN_LIFETIME
from tests.support.gateway import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    SettableClock,
    build_config,
)
from tests.support.processes import ServeGateway
from tests.support.s3 import S3Server
from tests.support.upstream import Recorded

TestClient = _TestClient[web.Request, web.Application]
MiB = 1024 * 1024
ALICE = {"Authorization": "Bearer alice"}
BOB = {"Authorization": "Bearer bob"}

FILES = {
    "name": "files",
    "protocol": "api",
    "path": "/api/files",
    "max_size": "64MiB",
    "content_types": ["text/plain", "application/octet-stream"],
    "forward": "/internal/uploads/files",
    # Small, so multipart is exercised with a few MiB; the 70 MiB run with the default
    # threshold is in tests/integration/test_upload_cli.py.
    "multipart_threshold": "6MiB",
    "part_size": "8MiB",
}
DOCS = {
    "name": "docs",
    "protocol": "api",
    "path": "/api/docs",
    "max_size": "1MiB",
    "content_types": ["text/plain"],
    "forward": "/internal/uploads/docs",
}


def payload(size: int) -> bytes:
    """``size`` bytes that sniff as nothing in particular (a text line, then random bytes)."""
    head = b"upload-gateway test payload\n"[:size]
    return head + os.urandom(size - len(head))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def api_config(s3_tree: dict[str, Any]) -> Config:
    """Two api routes, callers identified by auth_request (``Authorization: Bearer <user>``)."""
    return build_config(
        s3_tree, routes=[FILES, DOCS], identity={"auth_request": {"path": "/api/me"}}
    )


@pytest.fixture
async def gateway(
    aiohttp_client: Any, serve_gateway: ServeGateway, api_config: Config, clock: SettableClock
) -> TestClient:
    """The gateway on a loopback port, served as in production, with a clock the test can move."""
    client: TestClient = await aiohttp_client(await serve_gateway(api_config, clock=clock))
    return client


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain client for the presigned URLs: no cookies, nothing of the gateway's."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        yield session


class Bucket:
    """Reads what moto holds, through the test's own S3 client."""

    def __init__(self, client: Any, names: BucketNames) -> None:
        self.client = client
        self.names = names

    async def keys(self, bucket: str) -> list[str]:
        answer = await self.client.list_objects_v2(Bucket=bucket)
        # Not the gateway's own records (owner records, leases: gateway/completion/sweep.py).
        keys = [item["Key"] for item in answer.get("Contents", [])]
        return [key for key in keys if not key.startswith(".gateway/")]

    async def read(self, bucket: str, key: str) -> bytes:
        answer = await self.client.get_object(Bucket=bucket, Key=key)
        async with answer["Body"] as body:
            data: bytes = await body.read()
        return data

    async def open_uploads(self) -> list[str]:
        answer = await self.client.list_multipart_uploads(Bucket=self.names.uploads)
        return [item["Key"] for item in answer.get("Uploads", [])]


@pytest.fixture
def s3(s3_client: Any, buckets: BucketNames) -> Bucket:
    return Bucket(s3_client, buckets)


# --- helpers -------------------------------------------------------------------------------------


async def create(
    gateway: TestClient,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    path: str = "/api/files",
) -> aiohttp.ClientResponse:
    return await gateway.post(path, json=body, headers=ALICE if headers is None else headers)


async def grant(gateway: TestClient, data: bytes, **extra: Any) -> dict[str, Any]:
    """A granted upload of ``data`` (declared with its sha256 unless ``sha256=None``)."""
    body: dict[str, Any] = {
        "filename": "notes.txt",
        "content_type": "application/octet-stream",
        "size": len(data),
        "sha256": sha256_hex(data),
        **extra,
    }
    path = body.pop("path", "/api/files")
    if body["sha256"] is None:
        del body["sha256"]
    resp = await create(gateway, body, path=path)
    assert resp.status == 201, await resp.text()
    answer: dict[str, Any] = await resp.json()
    return answer


async def put_single(http: aiohttp.ClientSession, granted: dict[str, Any], data: bytes) -> int:
    async with http.put(granted["url"], data=io.BytesIO(data), headers=granted["headers"]) as resp:
        await resp.read()
        return resp.status


async def put_parts(
    http: aiohttp.ClientSession, granted: dict[str, Any], data: bytes
) -> list[dict[str, Any]]:
    """Every part at once (in parallel), as the client is told to; the completion's part list."""
    size = granted["part_size"]

    async def one(part: dict[str, Any]) -> dict[str, Any]:
        number = part["part_number"]
        chunk = data[(number - 1) * size : number * size]
        async with http.put(part["url"], data=io.BytesIO(chunk)) as resp:
            assert resp.status == 200, await resp.text()
            return {"part_number": number, "etag": resp.headers["ETag"]}

    return list(await asyncio.gather(*(one(p) for p in granted["parts"])))


async def complete(
    gateway: TestClient,
    upload_token: str,
    parts: list[dict[str, Any]] | None = None,
    *,
    headers: dict[str, str] | None = None,
    path: str = "/api/files",
) -> aiohttp.ClientResponse:
    return await gateway.post(
        f"{path}/{upload_token}/complete",
        json={"parts": parts or []},
        headers=ALICE if headers is None else headers,
    )


async def problem(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    assert resp.content_type == "application/problem+json", await resp.text()
    body: dict[str, Any] = await resp.json(content_type=None)
    assert body["status"] == resp.status
    return body


# --- the happy paths -----------------------------------------------------------------------------


async def test_single_put_is_stored_once_with_its_bytes(
    gateway: TestClient,
    http: aiohttp.ClientSession,
    s3: Bucket,
    recorded: Recorded,
    clock: SettableClock,
    s3_server: S3Server,
) -> None:
    """A grant, the PUT it names and the completion store the bytes once and tell the upstream."""
    data = payload(300_000)
    granted = await grant(gateway, data)
    assert granted["method"] == "PUT"
    assert granted["headers"] == {
        "Content-Type": "application/octet-stream",
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }
    expires = clock.now + timedelta(seconds=900)  # signature_ttl
    assert granted["expires_at"] == expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    alice_prefix = granted["key"].split("/", 1)[0] + "/"
    assert granted["key"].startswith(alice_prefix) and granted["key"].endswith(".txt")

    assert await put_single(http, granted, data) == 200
    resp = await complete(gateway, granted["upload_id"])
    assert resp.status == 200, await resp.text()
    answer = await resp.json()

    [stored_key] = await s3.keys(s3.names.storage)
    assert answer == {"stored": True, "key": stored_key}
    assert await s3.read(s3.names.storage, stored_key) == data
    assert await s3.keys(s3.names.uploads) == []
    [message] = recorded.completions
    assert message["user"] == "alice"
    assert message["authorization"] == "Bearer alice"
    assert message["message"]["filename"] == "notes.txt"
    assert message["message"]["object"]["size"] == len(data)


async def test_multipart_parts_sent_in_parallel_are_stored_once(
    gateway: TestClient,
    http: aiohttp.ClientSession,
    s3: Bucket,
    recorded: Recorded,
    s3_server: S3Server,
) -> None:
    """Above the threshold the grant is one URL per part; the parts complete into one object."""
    data = payload(17 * MiB + 123)
    granted = await grant(gateway, data)
    assert "url" not in granted
    assert granted["part_size"] == 8 * MiB
    assert [p["part_number"] for p in granted["parts"]] == [1, 2, 3]
    assert await s3.open_uploads() == [granted["key"]]

    parts = await put_parts(http, granted, data)
    resp = await complete(gateway, granted["upload_id"], parts)
    assert resp.status == 200, await resp.text()

    [stored_key] = await s3.keys(s3.names.storage)
    assert sha256_hex(await s3.read(s3.names.storage, stored_key)) == sha256_hex(data)
    assert await s3.keys(s3.names.uploads) == []
    assert await s3.open_uploads() == []
    assert len(recorded.completions) == 1


async def test_a_second_gateway_instance_completes_what_the_first_granted(
    aiohttp_client: Any,
    serve_gateway: ServeGateway,
    gateway: TestClient,
    api_config: Config,
    clock: SettableClock,
    http: aiohttp.ClientSession,
    s3: Bucket,
) -> None:
    """The upload id carries all state: another instance with the same config finishes it."""
    other: TestClient = await aiohttp_client(await serve_gateway(api_config, clock=clock))
    data = payload(9 * MiB)
    granted = await grant(gateway, data)
    parts = await put_parts(http, granted, data)
    resp = await complete(other, granted["upload_id"], parts)
    assert resp.status == 200, await resp.text()
    assert len(await s3.keys(s3.names.storage)) == 1


async def test_every_cookie_line_reaches_the_completion_as_one(
    gateway: TestClient, http: aiohttp.ClientSession, recorded: Recorded
) -> None:
    """A client's several Cookie lines reach the forward path as one, joined with "; " (RFC 9113
    8.2.3), without the gateway's session cookie."""
    data = payload(1000)
    granted = await grant(gateway, data)
    assert await put_single(http, granted, data) == 200
    lines = CIMultiDict(
        [*ALICE.items(), ("Cookie", "theme=dark; gateway_session=x"), ("Cookie", "lang=en")]
    )
    url = gateway.make_url(f"/api/files/{granted['upload_id']}/complete")
    async with http.post(url, json={"parts": []}, headers=lines) as resp:
        assert resp.status == 200, await resp.text()
    assert recorded.completions[0]["cookie"] == "theme=dark; lang=en"


async def test_session_cookie_identifies_the_caller(
    gateway: TestClient, http: aiohttp.ClientSession, recorded: Recorded
) -> None:
    """A caller logged in through the app (session cookie, no Authorization) may upload too."""
    login = await gateway.get("/login?user=carol")
    assert login.status == 200
    data = payload(1000)
    resp = await create(
        gateway,
        {"filename": "a.txt", "content_type": "text/plain", "size": len(data)},
        headers={},
    )
    assert resp.status == 201, await resp.text()
    granted = await resp.json()
    assert await put_single(http, granted, data) == 200
    resp = await complete(gateway, granted["upload_id"], headers={})
    assert resp.status == 200, await resp.text()
    assert recorded.completions[0]["user"] == "carol"


async def test_grant_urls_equal_botocores_presigned_urls(
    gateway: TestClient,
    s3_endpoint: str,
    buckets: BucketNames,
    clock: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The URLs granted come from our signer and equal botocore's for the same inputs and clock,
    with the declared size (of the file, of each part) signed as Content-Length.

    tests/unit/test_signing.py compares the signer with botocore over generated calls; this checks
    the api adapter feeds it the bucket, key, headers and query botocore would sign.
    """
    data = b"x" * 1000
    single = await grant(gateway, data)
    big = await grant(gateway, b"y" * (9 * MiB), sha256=None)

    session = botocore.session.Session()
    client = session.create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=BotoConfig(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    frozen = clock.now.replace(tzinfo=None)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: frozen)
    expected_single = client.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": buckets.uploads,
            "Key": single["key"],
            "ContentType": "application/octet-stream",
            "ChecksumSHA256": single["headers"]["x-amz-checksum-sha256"],
            # The declared size is signed, so S3 refuses a body of any other length.
            "ContentLength": len(data),
        },
        ExpiresIn=900,
    )
    assert single["url"] == expected_single

    multipart_ids = {part["url"].split("uploadId=")[1].split("&")[0] for part in big["parts"]}
    assert len(multipart_ids) == 1
    multipart_id = unquote(multipart_ids.pop())
    for part in big["parts"]:
        expected = client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": buckets.uploads,
                "Key": big["key"],
                "PartNumber": part["part_number"],
                "UploadId": multipart_id,
                # Each part's own size: 8 MiB, then the 1 MiB left.
                "ContentLength": min(8 * MiB, 9 * MiB - (part["part_number"] - 1) * 8 * MiB),
            },
            ExpiresIn=900,
        )
        assert part["url"] == expected
    client.close()


# --- refusals at the grant -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field", "reason"),
    [
        (
            {"filename": "big.bin", "content_type": "text/plain", "size": 64 * MiB + 1},
            413,
            "size",
            "too-large",
        ),
        (
            {"filename": "page.html", "content_type": "text/html", "size": 10},
            415,
            "content_type",
            "content-type-not-allowed",
        ),
        (
            {"filename": "a.txt", "content_type": "text/plain", "size": "10"},
            400,
            "size",
            "invalid-field",
        ),
        (
            {"filename": "a.txt", "content_type": "text/plain", "size": -1},
            400,
            "size",
            "invalid-field",
        ),
        (
            {"filename": "a.txt", "content_type": "text/plain", "size": 10, "sha256": "abc"},
            400,
            "sha256",
            "invalid-field",
        ),
        ({"content_type": "text/plain", "size": 10}, 400, "filename", "invalid-field"),
        (
            {"filename": "a.txt", "content_type": "text/plain", "size": 10, "key": "x/y"},
            400,
            "key",
            "invalid-field",
        ),
    ],
    ids=["too-large", "wrong-type", "size-string", "size-negative", "bad-sha", "no-name", "key"],
)
async def test_refused_declarations_name_the_field_and_sign_nothing(
    gateway: TestClient,
    s3: Bucket,
    body: dict[str, Any],
    status: int,
    field: str,
    reason: str,
) -> None:
    """A file the route does not allow gets a problem naming the field, and no URL at all."""
    resp = await create(gateway, body)
    assert resp.status == status
    answer = await problem(resp)
    assert answer["field"] == field
    assert answer["reason"] == reason
    assert "url" not in answer and "upload_id" not in answer


async def test_too_large_for_multipart_creates_no_multipart_upload(
    gateway: TestClient, s3: Bucket
) -> None:
    """The size is checked before S3 is asked for a multipart upload, so none is left open."""
    resp = await create(
        gateway, {"filename": "x.bin", "content_type": "text/plain", "size": 65 * MiB}
    )
    assert resp.status == 413
    assert await s3.open_uploads() == []


async def test_grant_needs_an_identity(gateway: TestClient) -> None:
    """Without a session or a bearer token the upstream knows, nothing is granted (401)."""
    resp = await create(
        gateway, {"filename": "a.txt", "content_type": "text/plain", "size": 1}, headers={}
    )
    assert resp.status == 401
    assert (await problem(resp))["reason"] == "no-identity"


async def test_grant_from_a_foreign_origin_is_refused(gateway: TestClient) -> None:
    """A browser page of another site cannot make a logged-in user's browser create uploads."""
    resp = await create(
        gateway,
        {"filename": "a.txt", "content_type": "text/plain", "size": 1},
        headers={**ALICE, "Origin": "https://evil.example"},
    )
    assert resp.status == 403
    assert (await problem(resp))["reason"] == "origin-refused"


async def test_grants_count_as_signatures_refused_by_reason_and_issued(
    gateway: TestClient,
) -> None:
    """A grant is a signing request: each refused one counts once in gateway_signatures_total
    with its reason, as Fine Uploader's and Uppy's refusals do, and an issued one as issued."""

    async def signatures() -> dict[tuple[str, str], float]:
        resp = await gateway.get("/-/metrics")
        assert resp.status == 200
        return {
            (s.labels["outcome"], s.labels["reason"]): s.value
            for family in text_string_to_metric_families(await resp.text())
            for s in family.samples
            if s.name == "gateway_signatures_total" and s.labels["route"] == "files"
        }

    before = await signatures()
    too_large = {"filename": "big.bin", "content_type": "text/plain", "size": 64 * MiB + 1}
    assert (await create(gateway, too_large)).status == 413
    small = {"filename": "a.txt", "content_type": "text/plain", "size": 1}
    assert (await create(gateway, small, headers={})).status == 401
    assert (await create(gateway, small)).status == 201
    after = await signatures()
    moved = {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
    assert moved == {("refused", "too-large"): 1, ("refused", "no-identity"): 1, ("issued", ""): 1}


# --- checks at the completion --------------------------------------------------------------------


async def test_wrong_bytes_for_a_declared_checksum_are_refused(
    gateway: TestClient,
    http: aiohttp.ClientSession,
    s3: Bucket,
    recorded: Recorded,
    s3_server: S3Server,
) -> None:
    """Bytes other than the declared sha256 never complete, whichever layer notices first.

    AWS checks ``x-amz-checksum-sha256`` and refuses the PUT (400 BadDigest). moto 5.2 and
    radosgw 16 (flexible checksums came in Ceph 18) store the object regardless (seen here:
    200), so the gateway's own streamed sha256 at the completion is the check that refuses,
    and it removes the object.
    """
    declared = payload(5000)
    sent = payload(5000)
    granted = await grant(gateway, declared)
    put_status = await put_single(http, granted, sent)
    resp = await complete(gateway, granted["upload_id"])
    if put_status == 200:  # moto: S3 took the bytes, so the completion must refuse them
        assert resp.status == 400
        assert (await problem(resp))["reason"] == "checksum-mismatch"
    else:  # an S3 that verifies checksums refused them; nothing is there to complete
        assert put_status == 400
        assert resp.status == 404
    assert await s3.keys(s3.names.uploads) == []
    assert await s3.keys(s3.names.storage) == []
    assert recorded.completions == []


async def test_wrong_bytes_of_a_multipart_upload_are_refused_by_the_gateway(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket, recorded: Recorded
) -> None:
    """Parts carry no whole-file checksum, so the completion's sha256 is what refuses them."""
    declared = payload(9 * MiB)
    sent = declared[:-1] + bytes([declared[-1] ^ 1])
    granted = await grant(gateway, declared)
    parts = await put_parts(http, granted, sent)
    resp = await complete(gateway, granted["upload_id"], parts)
    assert resp.status == 400
    assert (await problem(resp))["reason"] == "checksum-mismatch"
    assert await s3.keys(s3.names.uploads) == []
    assert await s3.keys(s3.names.storage) == []
    assert await s3.open_uploads() == []
    assert recorded.completions == []


async def test_object_smaller_than_declared_is_refused(
    gateway: TestClient,
    http: aiohttp.ClientSession,
    s3: Bucket,
    recorded: Recorded,
    s3_server: S3Server,
) -> None:
    """Fewer bytes than declared never complete. The URL signs the declared size as
    Content-Length, so S3 refuses the PUT (radosgw: 403); where S3 does not check (moto), the
    completion compares the object's size with the declaration and removes the object."""
    data = payload(5000)
    granted = await grant(gateway, data, sha256=None)
    put_status = await put_single(http, granted, data[:-10])
    resp = await complete(gateway, granted["upload_id"])
    if s3_server.verifies:
        assert (put_status, resp.status) == (403, 404)
    else:
        assert put_status == 200
        assert resp.status == 400
        assert (await problem(resp))["reason"] == "size-mismatch"
    assert await s3.keys(s3.names.uploads) == []
    assert recorded.completions == []


async def test_part_list_is_checked_against_what_s3_holds(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket, recorded: Recorded
) -> None:
    """A part list with a wrong ETag, a gap or parts missing is refused; the upload survives it."""
    data = payload(17 * MiB)
    granted = await grant(gateway, data)
    parts = await put_parts(http, granted, data)
    upload_token = granted["upload_id"]

    wrong_etag = [parts[0], {**parts[1], "etag": '"' + "0" * 32 + '"'}, parts[2]]
    resp = await complete(gateway, upload_token, wrong_etag)
    assert (resp.status, (await problem(resp))["reason"]) == (400, "part-mismatch")

    resp = await complete(gateway, upload_token, [parts[0], parts[2]])
    assert (resp.status, (await problem(resp))["reason"]) == (400, "parts-invalid")

    resp = await complete(gateway, upload_token, parts[:2])
    assert (resp.status, (await problem(resp))["reason"]) == (400, "size-mismatch")

    resp = await complete(gateway, upload_token, [])
    assert (resp.status, (await problem(resp))["reason"]) == (400, "parts-invalid")
    assert recorded.completions == []

    resp = await complete(gateway, upload_token, parts)
    assert resp.status == 200, await resp.text()
    assert len(await s3.keys(s3.names.storage)) == 1


async def test_a_short_middle_part_is_refused_naming_the_parts(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket, recorded: Recorded
) -> None:
    """Parts that hold the declared size but whose middle part is short of ``part_size`` are
    refused by the gateway (400 ``part-size-mismatch``, field ``parts``), not left to S3's
    less readable refusal at CompleteMultipartUpload. moto ignores the signed Content-Length,
    so the short part reaches it as a client bypassing the URLs' lengths would."""
    data = payload(17 * MiB)
    granted = await grant(gateway, data)
    assert granted["part_size"] == 8 * MiB
    bounds = [(0, 7 * MiB), (7 * MiB, 15 * MiB), (15 * MiB, 17 * MiB)]
    parts = []
    for part, (start, end) in zip(granted["parts"], bounds, strict=True):
        async with http.put(part["url"], data=io.BytesIO(data[start:end])) as put:
            assert put.status == 200, await put.text()
            parts.append({"part_number": part["part_number"], "etag": put.headers["ETag"]})
    resp = await complete(gateway, granted["upload_id"], parts)
    answer = await problem(resp)
    assert (resp.status, answer["reason"], answer["field"]) == (400, "part-size-mismatch", "parts")
    assert await s3.keys(s3.names.storage) == []
    assert recorded.completions == []


async def test_completion_retried_after_an_upstream_failure_stores_once(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket, recorded: Recorded
) -> None:
    """A 502 keeps the upload; the same completion asked again succeeds with one stored copy."""
    data = payload(9 * MiB)
    granted = await grant(gateway, data)
    parts = await put_parts(http, granted, data)

    recorded.completion_status = 500
    resp = await complete(gateway, granted["upload_id"], parts)
    assert resp.status == 502
    recorded.completion_status = 200
    resp = await complete(gateway, granted["upload_id"], parts)
    assert resp.status == 200, await resp.text()

    [stored_key] = await s3.keys(s3.names.storage)
    assert sha256_hex(await s3.read(s3.names.storage, stored_key)) == sha256_hex(data)
    first, second = recorded.completions
    assert first["idempotency_key"] == second["idempotency_key"]
    assert first["message"]["object"]["key"] == second["message"]["object"]["key"] == stored_key


async def test_a_completion_runs_to_its_end_when_its_client_leaves(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket, recorded: Recorded
) -> None:
    """A client that hangs up while its completion is with the upstream does not cut it halfway:
    the gateway serves with handler_cancellation off (gateway/server.py runner_options), so the
    upstream still gets its message and the object is stored once."""
    data = payload(1000)
    granted = await grant(gateway, data)
    assert await put_single(http, granted, data) == 200
    recorded.completion_delay = 1.0
    with pytest.raises(TimeoutError):
        await gateway.post(
            f"/api/files/{granted['upload_id']}/complete",
            json={"parts": []},
            headers=ALICE,
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    deadline = asyncio.get_running_loop().time() + 10
    while not recorded.completions:
        assert asyncio.get_running_loop().time() < deadline, "the completion was cut"
        await asyncio.sleep(0.05)
    [message] = recorded.completions
    assert await s3.keys(s3.names.storage) == [message["message"]["object"]["key"]]
    assert await s3.keys(s3.names.uploads) == []


async def test_other_bytes_put_again_at_a_completed_key_are_a_new_file_the_first_kept(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket, recorded: Recorded
) -> None:
    """The granted URL is valid for its TTL: the client PUTs other bytes of the same size after
    its completion and completes again. The second is a new upload (new Idempotency-Key, new
    storage key), and the app refusing it removes its copy only, not the one it accepted."""
    first_bytes, second_bytes = payload(1000), payload(1000)
    granted = await grant(gateway, first_bytes, sha256=None)
    assert await put_single(http, granted, first_bytes) == 200
    assert (await complete(gateway, granted["upload_id"])).status == 200
    assert await put_single(http, granted, second_bytes) == 200

    recorded.completion_status = 422
    resp = await complete(gateway, granted["upload_id"])

    assert resp.status == 422
    first, second = recorded.completions
    assert first["idempotency_key"] != second["idempotency_key"]
    assert first["message"]["object"]["key"] != second["message"]["object"]["key"]
    assert await s3.keys(s3.names.storage) == [first["message"]["object"]["key"]]
    assert await s3.read(s3.names.storage, first["message"]["object"]["key"]) == first_bytes


# --- upload ids ----------------------------------------------------------------------------------


def _tamper(upload_token: str) -> str:
    middle = len(upload_token) // 2
    flipped = "A" if upload_token[middle] != "A" else "B"
    return upload_token[:middle] + flipped + upload_token[middle + 1 :]


@pytest.mark.parametrize(
    ("variant", "status", "reason"),
    [
        ("tampered", 403, "token-invalid"),
        ("other-user", 403, "token-other-user"),
        ("other-route", 403, "token-other-route"),
        ("expired", 410, "token-expired"),
    ],
)
@pytest.mark.parametrize("action", ["complete", "abort"])
async def test_upload_ids_are_refused_unless_theirs_here_and_now(
    gateway: TestClient,
    http: aiohttp.ClientSession,
    s3: Bucket,
    recorded: Recorded,
    clock: SettableClock,
    variant: str,
    status: int,
    reason: str,
    action: str,
) -> None:
    """Tampered, foreign, misrouted or expired upload ids neither complete nor abort anything."""
    data = payload(2000)
    granted = await grant(gateway, data)
    assert await put_single(http, granted, data) == 200
    upload_token, headers, path = granted["upload_id"], ALICE, "/api/files"
    if variant == "tampered":
        upload_token = _tamper(upload_token)
    elif variant == "other-user":
        headers = BOB
    elif variant == "other-route":
        path = "/api/docs"
    else:
        clock.advance(TOKEN_LIFETIME.total_seconds())

    if action == "complete":
        resp = await complete(gateway, upload_token, headers=headers, path=path)
    else:
        resp = await gateway.delete(f"{path}/{upload_token}", headers=headers)
    assert resp.status == status
    assert (await problem(resp))["reason"] == reason
    assert await s3.keys(s3.names.uploads) == [granted["key"]]
    assert await s3.keys(s3.names.storage) == []
    assert recorded.completions == []


async def test_upload_id_is_valid_until_just_before_its_expiry(
    gateway: TestClient, http: aiohttp.ClientSession, clock: SettableClock
) -> None:
    """The token's lifetime is the one documented (a day), not shorter."""
    data = payload(2000)
    granted = await grant(gateway, data)
    assert await put_single(http, granted, data) == 200
    clock.advance((TOKEN_LIFETIME - timedelta(seconds=1)).total_seconds())
    resp = await complete(gateway, granted["upload_id"])
    assert resp.status == 200, await resp.text()


# --- abort ---------------------------------------------------------------------------------------


async def test_abort_of_a_multipart_upload_leaves_nothing(
    gateway: TestClient,
    http: aiohttp.ClientSession,
    s3: Bucket,
    recorded: Recorded,
    s3_server: S3Server,
) -> None:
    """DELETE aborts the multipart upload: no open upload, no object, and it cannot complete."""
    data = payload(17 * MiB)
    granted = await grant(gateway, data)
    parts = await put_parts(http, granted, data)
    assert await s3.open_uploads() == [granted["key"]]

    resp = await gateway.delete(f"/api/files/{granted['upload_id']}", headers=ALICE)
    assert resp.status == 204
    assert await s3.open_uploads() == []
    assert await s3.keys(s3.names.uploads) == []

    resp = await complete(gateway, granted["upload_id"], parts)
    assert resp.status == 404
    assert await s3.keys(s3.names.storage) == []
    assert recorded.completions == []

    again = await gateway.delete(f"/api/files/{granted['upload_id']}", headers=ALICE)
    assert again.status == 204


async def test_abort_of_a_single_put_deletes_the_object(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket
) -> None:
    """DELETE removes what a single PUT stored, so nothing waits for the lifecycle rule."""
    data = payload(2000)
    granted = await grant(gateway, data)
    assert await put_single(http, granted, data) == 200
    assert await s3.keys(s3.names.uploads) == [granted["key"]]
    resp = await gateway.delete(f"/api/files/{granted['upload_id']}", headers=ALICE)
    assert resp.status == 204
    assert await s3.keys(s3.names.uploads) == []


async def test_delete_of_a_completed_upload_removes_it_and_tells_the_upstream(
    gateway: TestClient, http: aiohttp.ClientSession, s3: Bucket, recorded: Recorded
) -> None:
    """``DELETE P/files?key=`` with the completion message's upload_key: the stored copy goes
    and the upstream hears upload.deleted; Bob cannot, and a second delete finds nothing."""
    data = payload(2000)
    granted = await grant(gateway, data)
    assert await put_single(http, granted, data) == 200
    assert (await complete(gateway, granted["upload_id"])).status == 200
    [completed] = recorded.completions
    key = completed["message"]["upload_key"]
    assert key == granted["key"]
    resp = await gateway.delete("/api/files/files", params={"key": key}, headers=BOB)
    assert (await problem(resp))["reason"] == "key-not-yours"
    assert len(await s3.keys(s3.names.storage)) == 1
    resp = await gateway.delete("/api/files/files", params={"key": key}, headers=ALICE)
    assert resp.status == 204, await resp.text()
    assert await s3.keys(s3.names.storage) == []
    _, told = recorded.completions
    assert told["message"]["event"] == "upload.deleted" and told["message"]["upload_key"] == key
    again = await gateway.delete("/api/files/files", params={"key": key}, headers=ALICE)
    assert again.status == 404


async def test_unknown_paths_under_the_route_are_not_proxied(
    gateway: TestClient, recorded: Recorded
) -> None:
    """The route's namespace belongs to the gateway: other paths there are 404, not upstream's."""
    resp = await gateway.get("/api/files/anything/else", headers=ALICE)
    assert resp.status == 404
    assert recorded.requests == []
