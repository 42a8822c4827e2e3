"""Uppy's Companion S3 protocol at a ``protocol: uppy`` route: moto's server, a real upstream.

Each endpoint is driven as ``@uppy/aws-s3``'s CompanionS3.js calls it (paths, query, JSON), the
bytes go to moto through the URLs the gateway signed, and the upstream's recorded completions
are checked. moto checks no signatures or expiries: those are asserted on the signed values.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from gateway.buckets import BucketNames
from gateway.protocols.uppy import MIN_PART
from tests.support.gateway import (
    SettableClock,
    build_config,
)
from tests.support.processes import ServeGateway
from tests.support.upstream import Recorded

P = "/uploads/docs"
MiB = 1024 * 1024
ROUTE = {
    "name": "docs",
    "protocol": "uppy",
    "path": P,
    "max_size": "20MiB",
    "content_types": ["image/*", "application/pdf", "application/octet-stream"],
    "signature_ttl": 600,
    "forward": "/internal/uploads/docs",
}


# --------------------------------------------------------------------------- S3 (moto server)


async def keys_in(s3: Any, bucket: str) -> list[str]:
    answer = await s3.list_objects_v2(Bucket=bucket)
    # Not the gateway's own records (owner records, leases: gateway/completion/sweep.py).
    keys = [str(o["Key"]) for o in answer.get("Contents", [])]
    return [key for key in keys if not key.startswith(".gateway/")]


async def sha256_of(s3: Any, bucket: str, key: str) -> str:
    answer = await s3.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as stream:
        return hashlib.sha256(await stream.read()).hexdigest()


async def in_progress(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """The multipart uploads S3 holds open in ``bucket``."""
    uploads: list[dict[str, Any]] = (await s3.list_multipart_uploads(Bucket=bucket)).get(
        "Uploads", []
    )
    return uploads


# --------------------------------------------------------------------------- the gateway


@pytest.fixture
async def server(
    serve_gateway: ServeGateway, s3_tree: dict[str, Any], clock: SettableClock
) -> TestServer:
    return await serve_gateway(build_config(s3_tree, routes=[ROUTE]), clock=clock)


Login = Callable[[str], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
def login(aiohttp_client: Any, server: TestServer) -> Login:
    """``await login("alice")``: a client of its own (own cookies) that the upstream logged in."""

    async def make(user: str) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = await aiohttp_client(server)
        answer = await client.get(f"/login?user={user}")
        assert answer.status == 200
        return client

    return make


@pytest.fixture
async def alice(login: Login) -> TestClient[Any, Any]:
    return await login("alice")


def origin(server: TestServer) -> dict[str, str]:
    return {"Origin": str(server.make_url("")).rstrip("/")}


async def json_of(answer: aiohttp.ClientResponse, status: int) -> Any:
    body = await answer.json(content_type=None)
    assert answer.status == status, body
    return body


async def prefix_of(client: TestClient[Any, Any]) -> str:
    config = await json_of(await client.get(f"{P}/config"), 200)
    prefix: str = config["keyPrefix"]
    return prefix


async def put(url: str, data: bytes) -> aiohttp.ClientResponse:
    # encoded=True: the signed query must reach S3 byte for byte.
    async with (
        aiohttp.ClientSession() as session,
        session.put(URL(url, encoded=True), data=io.BytesIO(data)) as answer,
    ):
        await answer.read()
        return answer


async def post_form(url: str, fields: dict[str, str], name: str, data: bytes, ctype: str) -> int:
    form = aiohttp.FormData()
    for field, value in fields.items():
        form.add_field(field, value)
    form.add_field("file", data, filename=name, content_type=ctype)
    async with aiohttp.ClientSession() as session, session.post(url, data=form) as answer:
        await answer.read()
        return answer.status


# --------------------------------------------------------------------------- helpers for flows


async def create(
    client: TestClient[Any, Any], server: TestServer, **body: Any
) -> aiohttp.ClientResponse:
    body.setdefault("filename", "report.pdf")
    body.setdefault("type", "application/pdf")
    body.setdefault("metadata", {"name": "report.pdf", "type": "application/pdf"})
    return await client.post(f"{P}/s3/multipart", json=body, headers=origin(server))


async def upload_parts(
    client: TestClient[Any, Any], upload_token: str, key: str, data: bytes, part: int = MIN_PART
) -> list[dict[str, Any]]:
    parts = []
    for number, start in enumerate(range(0, len(data), part), start=1):
        signed = await json_of(
            await client.get(f"{P}/s3/multipart/{upload_token}/{number}", params={"key": key}), 200
        )
        answer = await put(signed["url"], data[start : start + part])
        assert answer.status == 200
        parts.append({"PartNumber": number, "ETag": answer.headers["ETag"].strip('"')})
    return parts


def payload(size: int, seed: bytes = b"uppy") -> bytes:
    block = hashlib.sha256(seed).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


# --------------------------------------------------------------------------- GET P/config


async def test_config_names_the_endpoints_and_this_users_limits(
    alice: TestClient[Any, Any],
) -> None:
    """The page builds Uppy from GET P/config: Companion endpoint, restrictions, key prefix."""
    config = await json_of(await alice.get(f"{P}/config"), 200)
    assert config["companionEndpoint"] == P
    assert config["completeEndpoint"] == f"{P}/complete"
    assert config["restrictions"] == {
        "maxFileSize": 20 * MiB,
        "allowedFileTypes": ["image/*", "application/pdf", "application/octet-stream"],
    }
    assert config["keyPrefix"].endswith("/") and len(config["keyPrefix"]) > 1
    assert config["minPartSize"] == MIN_PART


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{P}/config"),
        ("GET", f"{P}/s3/params?filename=a.pdf&type=application/pdf"),
        ("POST", f"{P}/s3/multipart"),
        ("POST", f"{P}/complete"),
    ],
)
async def test_every_endpoint_needs_an_identity(
    aiohttp_client: Any, server: TestServer, recorded: Recorded, method: str, path: str
) -> None:
    """No session, no signature and no completion: 401 before anything is read or signed."""
    client = await aiohttp_client(server)
    answer = await client.request(method, path, json={"filename": "a.pdf", "key": "x/y"})
    problem = await json_of(answer, 401)
    assert problem["reason"] == "no-identity"
    assert recorded.completions == []


async def test_unknown_paths_under_the_route_are_the_gateways(
    alice: TestClient[Any, Any], recorded: Recorded
) -> None:
    """Companion's /s3/sts (temporary credentials) and anything else under P: 404, never proxied."""
    for path in (f"{P}/s3/sts", f"{P}/s3/multipart/x/complete", f"{P}/other"):
        problem = await json_of(await alice.get(path), 404)
        assert problem["error"]
    assert not [r for r in recorded.requests if r["raw_path"].startswith(P)]


# --------------------------------------------------------------------------- GET P/s3/params


async def test_params_signs_a_form_post_and_p_complete_completes_it(
    alice: TestClient[Any, Any],
    server: TestServer,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    clock: SettableClock,
) -> None:
    """A single-request upload: signed form under the user's prefix, POSTed to S3, completed."""
    data = b"%PDF-1.4\n" + payload(200_000)
    answer = await alice.get(
        f"{P}/s3/params",
        params={
            "filename": "Quarterly report.pdf",
            "type": "application/pdf",
            "metadata[name]": "Quarterly report.pdf",
            "metadata[type]": "application/pdf",
            "metadata[album]": "7",
        },
    )
    signed = await json_of(answer, 200)
    prefix = await prefix_of(alice)
    fields = signed["fields"]
    assert signed["method"] == "POST"
    assert signed["url"].endswith(f"/{buckets.uploads}")
    # The gateway picks the key: the user's prefix, a uuid, the extension; not the client's name.
    assert fields["key"].startswith(prefix) and fields["key"].endswith(".pdf")
    assert "Quarterly" not in fields["key"]
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert ["content-length-range", 0, 20 * MiB] in policy["conditions"]
    assert {"key": fields["key"]} in policy["conditions"]
    assert {"content-type": "application/pdf"} in policy["conditions"]
    assert {"bucket": buckets.uploads} in policy["conditions"]
    # Signatures expire: signature_ttl (600 s) after the gateway's clock.
    assert policy["expiration"] == "2026-11-25T12:10:00.000Z"
    assert fields["x-amz-date"] == "20261125T120000Z"
    assert signed["expires"] == 600

    status = await post_form(signed["url"], fields, "Quarterly report.pdf", data, "application/pdf")
    assert status == 200
    done = await alice.post(f"{P}/complete", json={"key": fields["key"]}, headers=origin(server))
    body = await json_of(done, 200)
    assert body["stored"] is True

    (entry,) = recorded.completions
    message = entry["message"]
    assert message["event"] == "upload.completed"
    assert message["route"] == "docs" and message["user"] == "alice"
    assert message["filename"] == "Quarterly report.pdf"
    assert message["params"] == {"album": "7"}
    assert message["object"]["bucket"] == buckets.storage
    assert message["object"]["size"] == len(data)
    assert (
        await sha256_of(s3_client, buckets.storage, message["object"]["key"])
        == hashlib.sha256(data).hexdigest()
    )
    assert await keys_in(s3_client, buckets.uploads) == []


@pytest.mark.parametrize(
    ("query", "status", "reason"),
    [
        pytest.param({"type": "text/html"}, 415, "content-type-not-allowed", id="html"),
        pytest.param({"type": "image/svg+xml"}, 415, "content-type-not-allowed", id="svg"),
        pytest.param({"size": str(20 * MiB + 1)}, 413, "too-large", id="declared-too-large"),
        pytest.param({"size": "-1"}, 400, "size-invalid", id="size-negative"),
        pytest.param({"filename": ""}, 400, "filename-invalid", id="no-filename"),
        # Checked by the rules' own POST-policy checks, which the gateway's policy goes through.
        pytest.param({"metadata[x]": "é" * 600}, 400, "meta-too-large", id="meta-too-big"),
        pytest.param(
            {"metadata[x]": "v", "filename": "a" * 300},
            400,
            "filename-invalid",
            id="filename-too-long",
        ),
    ],
)
async def test_params_refuses_what_the_route_does_not_allow(
    alice: TestClient[Any, Any],
    server: TestServer,
    query: dict[str, str],
    status: int,
    reason: str,
) -> None:
    """A file the route refuses gets no signed form: the refusal names its reason."""
    params = {"filename": "a.pdf", "type": "application/pdf", **query}
    problem = await json_of(await alice.get(f"{P}/s3/params", params=params), status)
    assert problem["reason"] == reason
    assert "fields" not in problem and "url" not in problem
    metrics = await (await alice.get("/-/metrics")).text()
    assert f'reason="{reason}"' in metrics


async def test_refusals_carry_their_sentence_in_the_status_line(
    alice: TestClient[Any, Any],
) -> None:
    """@uppy/aws-s3 shows only ``Companion request failed: <statusText>``: the reason phrase is
    the problem's detail, as one line of printable ASCII, whatever the client put in it."""
    answer = await alice.get(f"{P}/s3/params", params={"filename": "a.svg", "type": "text/html"})
    problem = await json_of(answer, 415)
    assert answer.reason == problem["detail"] == problem["error"]
    assert "not allowed" in answer.reason
    hostile = "text/\u00e9\r\nX-Injected: 1"
    answer = await alice.get(f"{P}/s3/params", params={"filename": "a.x", "type": hostile})
    problem = await json_of(answer, 415)
    assert answer.reason is not None and answer.reason.isascii() and answer.reason.isprintable()
    assert "\r" not in answer.reason and "\n" not in answer.reason
    assert "X-Injected" not in answer.headers and "x-injected" in answer.reason
    assert answer.reason == problem["detail"].replace("\u00e9", "?")


async def completed_upload(
    client: TestClient[Any, Any], server: TestServer, data: bytes = b"%PDF-1.4\n" + b"x" * 900
) -> str:
    """A single-request upload, POSTed to S3 and completed; its upload key."""
    params = {"filename": "gone.pdf", "type": "application/pdf"}
    signed = await json_of(await client.get(f"{P}/s3/params", params=params), 200)
    key: str = signed["fields"]["key"]
    status = await post_form(signed["url"], signed["fields"], "gone.pdf", data, "application/pdf")
    assert status == 200
    done = await client.post(f"{P}/complete", json={"key": key}, headers=origin(server))
    await json_of(done, 200)
    return key


async def test_delete_removes_a_completed_upload_and_tells_the_upstream(
    alice: TestClient[Any, Any],
    server: TestServer,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """``DELETE P/files?key=``: the stored copy goes, the upstream hears upload.deleted naming
    the same upload_key its completion did; a second delete finds nothing (404)."""
    key = await completed_upload(alice, server)
    (completed,) = recorded.completions
    assert completed["message"]["upload_key"] == key
    answer = await alice.delete(f"{P}/files", params={"key": key}, headers=origin(server))
    assert answer.status == 204, await answer.text()
    _, told = recorded.completions
    assert told["message"]["event"] == "upload.deleted"
    assert told["message"]["upload_key"] == key
    assert told["message"]["object"] == completed["message"]["object"]
    assert await keys_in(s3_client, buckets.storage) == []
    again = await alice.delete(f"{P}/files", params={"key": key}, headers=origin(server))
    assert (await json_of(again, 404))["reason"] == "not-found"


async def test_delete_of_another_users_upload_is_refused(
    alice: TestClient[Any, Any],
    login: Login,
    server: TestServer,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Bob cannot delete Alice's file by naming its key, nor can another origin make Alice's
    browser do it; a missing key is a 400. Nothing is touched and the upstream hears nothing."""
    key = await completed_upload(alice, server)
    bob = await login("bob")
    answer = await bob.delete(f"{P}/files", params={"key": key}, headers=origin(server))
    assert (await json_of(answer, 403))["reason"] == "key-not-yours"
    foreign = {"Origin": "https://evil.example"}
    answer = await alice.delete(f"{P}/files", params={"key": key}, headers=foreign)
    assert (await json_of(answer, 403))["reason"] == "origin-refused"
    answer = await alice.delete(f"{P}/files", headers=origin(server))
    assert (await json_of(answer, 400))["reason"] == "key-missing"
    assert len(await keys_in(s3_client, buckets.storage)) == 1
    assert [e["message"]["event"] for e in recorded.completions] == ["upload.completed"]


async def test_params_with_a_declared_size_bounds_the_form_by_it(
    alice: TestClient[Any, Any],
) -> None:
    """A page that declares the size gets a policy no larger than it (still within max_size)."""
    params = {"filename": "a.pdf", "type": "application/pdf", "size": "1234"}
    signed = await json_of(await alice.get(f"{P}/s3/params", params=params), 200)
    policy = json.loads(base64.b64decode(signed["fields"]["policy"]))
    assert ["content-length-range", 0, 1234] in policy["conditions"]


# --------------------------------------------------------------------------- multipart


async def test_multipart_upload_end_to_end(
    alice: TestClient[Any, Any],
    server: TestServer,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Create, sign parts, list, complete: stored once, the upstream told, the answer relayed."""
    data = b"%PDF-1.4\n" + payload(12 * MiB - 9)
    created = await json_of(
        await create(alice, server, metadata={"name": "big.pdf", "type": "x", "album": "9"}), 200
    )
    key, upload_token = created["key"], created["uploadId"]
    assert key.startswith(await prefix_of(alice)) and key.endswith(".pdf")
    assert created["bucket"] == buckets.uploads
    # The uploadId is the gateway's sealed token, not S3's id.
    (s3_upload,) = await in_progress(s3_client, buckets.uploads)
    assert s3_upload["Key"] == key and s3_upload["UploadId"] != upload_token

    parts = await upload_parts(alice, upload_token, key, data)
    assert [p["PartNumber"] for p in parts] == [1, 2, 3]
    listed = await json_of(
        await alice.get(f"{P}/s3/multipart/{upload_token}", params={"key": key}), 200
    )
    assert [(p["PartNumber"], p["ETag"].strip('"'), p["Size"]) for p in listed] == [
        (1, parts[0]["ETag"], MIN_PART),
        (2, parts[1]["ETag"], MIN_PART),
        (3, parts[2]["ETag"], len(data) - 2 * MIN_PART),
    ]

    done = await alice.post(
        f"{P}/s3/multipart/{upload_token}/complete",
        params={"key": key},
        json={"parts": parts},
        headers=origin(server),
    )
    body = await json_of(done, 200)
    (entry,) = recorded.completions
    message = entry["message"]
    assert body["bucket"] == buckets.storage
    assert body["key"] == message["object"]["key"]
    assert body["location"].endswith(f"/{buckets.storage}/{message['object']['key']}")
    assert body["stored"] is True  # the upstream's answer, relayed
    assert message["filename"] == "report.pdf"
    assert message["params"] == {"album": "9"}
    assert message["object"]["size"] == len(data)
    assert entry["user"] == "alice" and entry["idempotency_key"] == message["id"]
    assert (
        await sha256_of(s3_client, buckets.storage, message["object"]["key"])
        == hashlib.sha256(data).hexdigest()
    )
    assert await keys_in(s3_client, buckets.uploads) == []
    assert await in_progress(s3_client, buckets.uploads) == []


async def test_sign_part_url_is_a_presigned_put_of_that_part(
    alice: TestClient[Any, Any], server: TestServer, buckets: BucketNames, s3_client: Any
) -> None:
    """The part URL names the key, S3's upload id and the part, and expires after the TTL."""
    created = await json_of(await create(alice, server), 200)
    key, upload_token = created["key"], created["uploadId"]
    signed = await json_of(
        await alice.get(f"{P}/s3/multipart/{upload_token}/2", params={"key": key}), 200
    )
    url = urlsplit(signed["url"])
    query = parse_qs(url.query)
    (s3_upload,) = await in_progress(s3_client, buckets.uploads)
    assert url.path == f"/{buckets.uploads}/{key}"
    assert query["partNumber"] == ["2"] and query["uploadId"] == [s3_upload["UploadId"]]
    assert query["X-Amz-Expires"] == ["600"] and query["X-Amz-Date"] == ["20261125T120000Z"]
    assert signed["expires"] == 600


async def test_batch_signs_each_part_number(
    alice: TestClient[Any, Any], server: TestServer
) -> None:
    """Companion's batch signing answers {presignedUrls: {n: url}}, as older Uppy reads it."""
    created = await json_of(await create(alice, server), 200)
    key, upload_token = created["key"], created["uploadId"]
    answer = await alice.get(
        f"{P}/s3/multipart/{upload_token}/batch", params={"key": key, "partNumbers": "1,3"}
    )
    urls = (await json_of(answer, 200))["presignedUrls"]
    assert sorted(urls) == ["1", "3"]
    assert parse_qs(urlsplit(urls["3"]).query)["partNumber"] == ["3"]


@pytest.mark.parametrize(
    ("part", "status", "reason"),
    [
        pytest.param("0", 400, "part-number-out-of-range", id="zero"),
        pytest.param("3", 400, "part-number-out-of-range", id="beyond-declared-size"),
        pytest.param("10001", 400, "part-number-out-of-range", id="beyond-s3"),
        pytest.param("99999999999999999999", 400, "part-number-invalid", id="huge"),
    ],
)
async def test_part_numbers_are_bounded_by_the_declared_size(
    alice: TestClient[Any, Any], server: TestServer, part: str, status: int, reason: str
) -> None:
    """A 6 MiB upload has at most 2 parts of S3's 5 MiB minimum: part 3 is never signed."""
    created = await json_of(await create(alice, server, size=6 * MiB), 200)
    answer = await alice.get(
        f"{P}/s3/multipart/{created['uploadId']}/{part}", params={"key": created["key"]}
    )
    assert (await json_of(answer, status))["reason"] == reason
    batch = await alice.get(
        f"{P}/s3/multipart/{created['uploadId']}/batch",
        params={"key": created["key"], "partNumbers": f"1,{part}"},
    )
    assert (await json_of(batch, status))["reason"] == reason


async def test_part_numbers_without_a_declared_size_are_bounded_by_max_size(
    alice: TestClient[Any, Any], server: TestServer
) -> None:
    """Uppy declares no size: 20 MiB of 5 MiB parts is 4 parts at most."""
    created = await json_of(await create(alice, server), 200)
    url = f"{P}/s3/multipart/{created['uploadId']}"
    assert (await alice.get(f"{url}/4", params={"key": created["key"]})).status == 200
    fifth = await alice.get(f"{url}/5", params={"key": created["key"]})
    assert (await json_of(fifth, 400))["reason"] == "part-number-out-of-range"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        pytest.param({"size": 20 * MiB + 1}, 413, "too-large", id="declared-too-large"),
        pytest.param({"type": "text/html"}, 415, "content-type-not-allowed", id="html"),
        pytest.param({"filename": ""}, 400, "invalid-field", id="no-filename"),
        pytest.param({"metadata": {"x": {"nested": 1}}}, 400, "metadata-invalid", id="nested"),
        pytest.param({"metadata": {"x": "é" * 2000}}, 400, "meta-too-large", id="meta-too-big"),
    ],
)
async def test_create_refuses_what_the_route_does_not_allow(
    alice: TestClient[Any, Any],
    server: TestServer,
    s3_client: Any,
    buckets: BucketNames,
    body: dict[str, Any],
    status: int,
    reason: str,
) -> None:
    """A refused file starts no S3 upload at all."""
    problem = await json_of(await create(alice, server, **body), status)
    assert problem["reason"] == reason
    assert await in_progress(s3_client, buckets.uploads) == []


async def test_another_users_upload_id_is_refused_everywhere(
    alice: TestClient[Any, Any],
    login: Login,
    server: TestServer,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """Bob cannot sign, list, complete or abort Alice's upload, even knowing its id and key."""
    created = await json_of(await create(alice, server), 200)
    key, upload_token = created["key"], created["uploadId"]
    bob = await login("bob")
    base = f"{P}/s3/multipart/{upload_token}"
    attempts = [
        bob.get(f"{base}/1", params={"key": key}),
        bob.get(f"{base}/batch", params={"key": key, "partNumbers": "1"}),
        bob.get(base, params={"key": key}),
        bob.post(
            f"{base}/complete",
            params={"key": key},
            json={"parts": [{"PartNumber": 1, "ETag": "x"}]},
            headers=origin(server),
        ),
        bob.delete(base, params={"key": key}, headers=origin(server)),
    ]
    for attempt in attempts:
        problem = await json_of(await attempt, 403)
        assert problem["reason"] == "token-other-user"
    assert len(await in_progress(s3_client, buckets.uploads)) == 1


async def test_a_key_other_than_the_uploads_own_is_refused(
    alice: TestClient[Any, Any], server: TestServer
) -> None:
    """The key in ?key= must be the one the token names: no signing parts of other objects."""
    first = await json_of(await create(alice, server), 200)
    second = await json_of(await create(alice, server), 200)
    base = f"{P}/s3/multipart/{first['uploadId']}"
    for answer in (
        await alice.get(f"{base}/1", params={"key": second["key"]}),
        await alice.get(base, params={"key": second["key"]}),
        await alice.delete(base, params={"key": second["key"]}, headers=origin(server)),
    ):
        assert (await json_of(answer, 403))["reason"] == "key-mismatch"
    missing = await alice.get(f"{base}/1")
    assert (await json_of(missing, 400))["reason"] == "key-missing"


async def test_a_forged_or_api_upload_id_is_refused(
    alice: TestClient[Any, Any], server: TestServer
) -> None:
    """An S3 upload id or altered token is not an uploadId the gateway issued."""
    created = await json_of(await create(alice, server), 200)
    token = created["uploadId"]
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    for upload_token in (forged, "2~abcdef"):
        url = f"{P}/s3/multipart/{upload_token}/1"
        answer = await alice.get(url, params={"key": created["key"]})
        assert (await json_of(answer, 403))["reason"] == "token-invalid"


async def test_upload_ids_expire(
    alice: TestClient[Any, Any], server: TestServer, clock: SettableClock
) -> None:
    """A day after it was created, an upload can no longer be signed for: 410."""
    created = await json_of(await create(alice, server), 200)
    clock.advance(24 * 3600)
    answer = await alice.get(
        f"{P}/s3/multipart/{created['uploadId']}/1", params={"key": created["key"]}
    )
    assert (await json_of(answer, 410))["reason"] == "token-expired"


async def test_complete_refuses_parts_s3_does_not_hold(
    alice: TestClient[Any, Any],
    server: TestServer,
    recorded: Recorded,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """Claimed ETags are checked against ListParts; nothing is completed or forwarded."""
    created = await json_of(await create(alice, server), 200)
    key, upload_token = created["key"], created["uploadId"]
    parts = await upload_parts(alice, upload_token, key, b"%PDF-" + payload(1000))
    url = f"{P}/s3/multipart/{upload_token}/complete"
    for claimed, reason in (
        ([{"PartNumber": 1, "ETag": "0" * 32}], "part-mismatch"),
        ([*parts, {"PartNumber": 2, "ETag": "0" * 32}], "part-mismatch"),
        ([{"PartNumber": 2, "ETag": parts[0]["ETag"]}], "parts-invalid"),
    ):
        answer = await alice.post(
            url, params={"key": key}, json={"parts": claimed}, headers=origin(server)
        )
        assert (await json_of(answer, 400))["reason"] == reason
    assert recorded.completions == []
    assert await keys_in(s3_client, buckets.uploads) == []


async def test_complete_refuses_more_bytes_than_declared_and_aborts(
    alice: TestClient[Any, Any],
    server: TestServer,
    recorded: Recorded,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """max_size (here a declared size) is enforced again at completion, and the parts dropped."""
    created = await json_of(await create(alice, server, size=1000), 200)
    key, upload_token = created["key"], created["uploadId"]
    parts = await upload_parts(alice, upload_token, key, b"%PDF-" + payload(5000))
    answer = await alice.post(
        f"{P}/s3/multipart/{upload_token}/complete",
        params={"key": key},
        json={"parts": parts},
        headers=origin(server),
    )
    assert (await json_of(answer, 413))["reason"] == "too-large"
    assert recorded.completions == []
    assert await in_progress(s3_client, buckets.uploads) == []
    assert await keys_in(s3_client, buckets.uploads) == []


async def test_complete_retried_after_the_upstream_failed_stores_once(
    alice: TestClient[Any, Any],
    server: TestServer,
    recorded: Recorded,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """S3 completed but the upstream failed (502): the same call again completes it once.

    The retry finds the upload already moved to storage; its params still reach the upstream.
    """
    data = b"%PDF-" + payload(3000)
    created = await json_of(
        await create(alice, server, metadata={"name": "r.pdf", "album": "3"}), 200
    )
    key, upload_token = created["key"], created["uploadId"]
    parts = await upload_parts(alice, upload_token, key, data)
    url = f"{P}/s3/multipart/{upload_token}/complete"
    recorded.completion_status = 503
    first = await alice.post(
        url, params={"key": key}, json={"parts": parts}, headers=origin(server)
    )
    assert first.status >= 500
    recorded.completion_status = 200
    second = await alice.post(
        url, params={"key": key}, json={"parts": parts}, headers=origin(server)
    )
    body = await json_of(second, 200)
    assert await keys_in(s3_client, buckets.storage) == [body["key"]]
    assert len({c["idempotency_key"] for c in recorded.completions}) == 1
    assert [c["message"]["params"] for c in recorded.completions] == [{"album": "3"}] * 2
    assert [c["message"]["filename"] for c in recorded.completions] == ["report.pdf"] * 2
    assert await keys_in(s3_client, buckets.uploads) == []


async def test_abort_drops_the_upload(
    alice: TestClient[Any, Any], server: TestServer, s3_client: Any, buckets: BucketNames
) -> None:
    """DELETE aborts the S3 upload and answers {} as Companion does."""
    created = await json_of(await create(alice, server), 200)
    key, upload_token = created["key"], created["uploadId"]
    await upload_parts(alice, upload_token, key, b"%PDF-" + payload(100))
    answer = await alice.delete(
        f"{P}/s3/multipart/{upload_token}", params={"key": key}, headers=origin(server)
    )
    assert await json_of(answer, 200) == {}
    assert await in_progress(s3_client, buckets.uploads) == []


async def test_state_changing_calls_check_the_origin(
    alice: TestClient[Any, Any], server: TestServer, s3_client: Any, buckets: BucketNames
) -> None:
    """CSRF: another site's page cannot start, complete or abort uploads for the user."""
    evil = {"Origin": "https://evil.example"}
    created = await json_of(await create(alice, server), 200)
    base = f"{P}/s3/multipart/{created['uploadId']}"
    attempts = [
        alice.post(
            f"{P}/s3/multipart", json={"filename": "a.pdf", "type": "application/pdf"}, headers=evil
        ),
        alice.post(
            f"{base}/complete", params={"key": created["key"]}, json={"parts": []}, headers=evil
        ),
        alice.delete(base, params={"key": created["key"]}, headers=evil),
        alice.post(f"{P}/complete", json={"key": created["key"]}, headers=evil),
    ]
    for attempt in attempts:
        assert (await json_of(await attempt, 403))["reason"] == "origin-refused"
    assert len(await in_progress(s3_client, buckets.uploads)) == 1


# --------------------------------------------------------------------------- POST P/complete


async def test_complete_refuses_another_users_key(
    alice: TestClient[Any, Any],
    login: Login,
    server: TestServer,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Bob naming Alice's uploaded object: 403, the object stays, nothing is forwarded."""
    signed = await json_of(
        await alice.get(f"{P}/s3/params", params={"filename": "a.pdf", "type": "application/pdf"}),
        200,
    )
    key = signed["fields"]["key"]
    assert (
        await post_form(signed["url"], signed["fields"], "a.pdf", b"%PDF-1", "application/pdf")
        == 200
    )
    bob = await login("bob")
    answer = await bob.post(f"{P}/complete", json={"key": key}, headers=origin(server))
    assert (await json_of(answer, 403))["reason"] == "key-not-yours"
    assert recorded.completions == []
    assert await keys_in(s3_client, buckets.uploads) == [key]


async def test_complete_refuses_keys_that_are_not_plain_paths(
    alice: TestClient[Any, Any], server: TestServer
) -> None:
    """A key under the prefix with a '..' segment is refused, not normalised."""
    prefix = await prefix_of(alice)
    answer = await alice.post(
        f"{P}/complete", json={"key": f"{prefix}../x"}, headers=origin(server)
    )
    assert (await json_of(answer, 400))["reason"] == "key-dot-segment"
