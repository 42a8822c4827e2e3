"""Fine Uploader's S3 protocol at a ``protocol: fineuploader`` route, through the real gateway.

Requests are shaped as Fine Uploader 5.16.2 sends them (payloads captured from its npm build,
whose shape docs/protocols/fineuploader.md describes, adapted to this test's bucket, prefix and
clock). Every signature is recomputed here with hmac, independently of gateway.signing. Objects
go to moto's server (through a gateway-signed POST policy form), completions to the real
upstream app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.buckets import BucketNames
from gateway.config import Config
from gateway.protocols.fineuploader import MAX_BODY, PART_SIZE
from tests.support.gateway import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    START,
    SettableClock,
    build_config,
)
from tests.support.processes import ServeGateway
from tests.support.upstream import Recorded

P = "/uploads/photos"
MiB = 1024 * 1024
MAX_SIZE = 20 * MiB
TODAY = START.strftime("%Y%m%d")
AMZ_NOW = START.strftime("%Y%m%dT%H%M%SZ")
HTTP_NOW = START.strftime("%a, %d %b %Y %H:%M:%S GMT")
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# A JPEG's first bytes, so the completion's sniffer agrees with the declared type.
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(256))


async def keys_in(s3: Any, bucket: str) -> list[str]:
    listing = await s3.list_objects_v2(Bucket=bucket)
    # Not the gateway's own records (owner records, leases: gateway/completion/sweep.py).
    keys = [o["Key"] for o in listing.get("Contents", [])]
    return [key for key in keys if not key.startswith(".gateway/")]


async def read_object(s3: Any, bucket: str, key: str) -> bytes:
    answer = await s3.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as body:
        data: bytes = await body.read()
    return data


# --------------------------------------------------------------------------- the gateway


@pytest.fixture
def config(s3_tree: dict[str, Any]) -> Config:
    return build_config(s3_tree)


@pytest.fixture
async def server(serve_gateway: ServeGateway, config: Config, clock: SettableClock) -> TestServer:
    return await serve_gateway(config, clock=clock)


@dataclass
class User:
    client: TestClient[Any, Any]
    prefix: str
    options: dict[str, Any]


async def login(aiohttp_client: Any, server: TestServer, name: str) -> User:
    """A client with its own cookie jar, logged in by the upstream's login header."""
    client: TestClient[Any, Any] = await aiohttp_client(server)
    answer = await client.get(f"/login?user={name}")
    assert answer.status == 200
    options = await json_of(await client.get(f"{P}/config"), 200)
    # The page reads the prefix from the cookie, percent-decoded; it must agree with the config.
    cookie = client.session.cookie_jar.filter_cookies(server.make_url("/"))["upload_prefix"]
    assert unquote(cookie.value) == options["keyPrefix"]
    return User(client, options["keyPrefix"], options)


@pytest.fixture
async def alice(aiohttp_client: Any, server: TestServer) -> User:
    return await login(aiohttp_client, server, "alice")


@pytest.fixture
async def bob(aiohttp_client: Any, server: TestServer) -> User:
    return await login(aiohttp_client, server, "bob")


def origin(server: TestServer) -> dict[str, str]:
    return {"Origin": str(server.make_url("")).rstrip("/")}


async def json_of(answer: aiohttp.ClientResponse, status: int) -> Any:
    body = await answer.json(content_type=None)
    assert answer.status == status, body
    return body


async def metrics_text(client: TestClient[Any, Any]) -> str:
    return await (await client.get("/-/metrics")).text()


# --------------------------------------------------------------------------- payloads


def v2_policy(bucket: str, key: str) -> dict[str, Any]:
    """The captured v2 policy, with this test's bucket and key."""
    return {
        "expiration": "2026-11-25T12:05:00.611Z",
        "conditions": [
            {"acl": "private"},
            {"bucket": bucket},
            {"Content-Type": "image/jpeg"},
            {"success_action_status": "200"},
            {"key": key},
            {"x-amz-meta-dataset": "ds-1"},
            {"Cache-Control": "max-age=60"},
            {"x-amz-meta-qqfilename": "my%20photo%20(1).jpg"},
            ["content-length-range", "0", "15000000"],
        ],
    }


def v4_policy(bucket: str, key: str, *, length_range: bool = True) -> dict[str, Any]:
    """The captured v4 policy with private acl, this bucket, key, key id and clock."""
    conditions: list[Any] = [
        {"acl": "private"},
        {"bucket": bucket},
        {"Content-Type": "image/jpeg"},
        {"success_action_status": "200"},
        {"x-amz-storage-class": "REDUCED_REDUNDANCY"},
        {"x-amz-server-side-encryption": "AES256"},
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
        {"key": key},
        {"x-amz-credential": f"{ACCESS_KEY_ID}/{TODAY}/us-east-1/s3/aws4_request"},
        {"x-amz-date": AMZ_NOW},
        {"x-amz-meta-dataset": "ds-1"},
        {"Cache-Control": "max-age=60"},
        {"x-amz-meta-qqfilename": "my%20photo%20(1).jpg"},
    ]
    if length_range:
        conditions.append(["content-length-range", "1", "15000000"])
    return {"expiration": "2026-11-25T12:05:00.695Z", "conditions": conditions}


def v4_key(date: str = TODAY, region: str = "us-east-1") -> bytes:
    """The SigV4 signing key, derived here independently of gateway.signing."""
    key = ("AWS4" + SECRET_ACCESS_KEY).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def v2_sig(text: str) -> str:
    digest = hmac.new(SECRET_ACCESS_KEY.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def v4_rest(operation: str, host: str, key: str, multipart_id: str = "UPLOADID123") -> str:
    """Fine Uploader's raw v4 string: three lines, then the unhashed canonical request."""
    uri = "/" + quote(key, safe="/~")
    if operation == "initiate":
        method, query, payload = "POST", "uploads=", EMPTY_SHA256
        extra = [
            "x-amz-acl:private",
            "x-amz-meta-dataset:ds-1",
            "x-amz-meta-qqfilename:my%20photo%20(1).jpg",
        ]
    elif operation == "part":
        method, query = "PUT", f"partNumber=1&uploadId={multipart_id}"
        payload, extra = hashlib.sha256(b"chunk").hexdigest(), []
    elif operation == "complete":
        method, query = "POST", f"uploadId={multipart_id}"
        payload, extra = hashlib.sha256(b"<CompleteMultipartUpload/>").hexdigest(), []
    else:
        method, query, payload, extra = "DELETE", f"uploadId={multipart_id}", EMPTY_SHA256, []
    headers = sorted(
        [f"host:{host}", f"x-amz-content-sha256:{payload}", f"x-amz-date:{AMZ_NOW}", *extra]
    )
    headers.remove(f"host:{host}")
    headers.insert(0, f"host:{host}")
    names = ";".join(h.split(":", 1)[0] for h in headers)
    canonical = "\n".join([method, uri, query, *headers, "", names, payload])
    return f"AWS4-HMAC-SHA256\n{AMZ_NOW}\n{TODAY}/us-east-1/s3/aws4_request\n{canonical}"


def v2_rest(operation: str, bucket: str, key: str, multipart_id: str = "UPLOADID123") -> str:
    """Fine Uploader's v2 string to sign for one multipart call."""
    resource = f"/{bucket}/{quote(key, safe='/~')}"
    date = f"x-amz-date:{HTTP_NOW}"
    return {
        "initiate": (
            f"POST\n\nimage/jpeg\n\nx-amz-acl:private\n{date}\nx-amz-meta-dataset:ds-1\n"
            f"x-amz-meta-qqfilename:my%20photo%20(1).jpg\n{resource}?uploads"
        ),
        "part": f"PUT\n\n\n\n{date}\n{resource}?partNumber=1&uploadId={multipart_id}",
        "complete": (
            f"POST\n\napplication/xml; charset=UTF-8\n\n{date}\n{resource}?uploadId={multipart_id}"
        ),
        "abort": f"DELETE\n\n\n\n{date}\n{resource}?uploadId={multipart_id}",
    }[operation]


async def sign(
    user: User,
    server: TestServer,
    body: Any,
    *,
    v4: bool = True,
    status: int = 200,
    endpoint: str = f"{P}/signature",
) -> dict[str, Any]:
    path = endpoint + ("?v4=true" if v4 else "")
    answer = await user.client.post(path, json=body, headers=origin(server))
    result: dict[str, Any] = await json_of(answer, status)
    return result


def decoded(policy_b64: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(base64.b64decode(policy_b64))
    return result


# --------------------------------------------------------------------------- POST P/signature


async def test_v2_policy_is_tightened_and_signed(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """A captured v2 policy comes back with our expiration, as signed: HMAC-SHA1 of the base64."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    answer = await sign(alice, server, v2_policy(buckets.uploads, key), v4=False)
    policy = decoded(answer["policy"])
    assert policy["expiration"] == "2026-11-25T12:15:00.000Z"  # START + signature_ttl 900 s
    sent = v2_policy(buckets.uploads, key)["conditions"]
    assert policy["conditions"][:-1] == sent[:-1]
    assert policy["conditions"][-1] == ["content-length-range", 0, 15000000]
    assert answer["signature"] == v2_sig(answer["policy"])


async def test_v4_policy_is_signed_with_the_credentials_date_and_region(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """A captured v4 policy is signed: hex HMAC-SHA256 under the key of the credential's day."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    answer = await sign(alice, server, v4_policy(buckets.uploads, key))
    expected = hmac.new(v4_key(), answer["policy"].encode(), hashlib.sha256).hexdigest()
    assert answer["signature"] == expected
    assert decoded(answer["policy"])["conditions"][-1] == ["content-length-range", 1, 15000000]


async def test_policy_without_size_limit_gets_the_routes_max_size(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """Fine Uploader omits content-length-range without a page limit: the gateway adds max_size."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    answer = await sign(alice, server, v4_policy(buckets.uploads, key, length_range=False))
    assert decoded(answer["policy"])["conditions"][-1] == ["content-length-range", 0, MAX_SIZE]


@pytest.mark.parametrize("operation", ["initiate", "part", "complete", "abort"])
async def test_v4_rest_requests_are_signed(alice: User, server: TestServer, operation: str) -> None:
    """Each chunked call's v4 string gets HMAC-SHA256 of the real string to sign (hashed CR)."""
    host = alice.options["objectProperties"]["host"]
    raw = v4_rest(operation, host, f"{alice.prefix}{uuid.uuid4()}.jpg")
    answer = await sign(alice, server, {"headers": raw})
    first, second, third, canonical = raw.split("\n", 3)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{first}\n{second}\n{third}\n{digest}"
    assert answer == {
        "signature": hmac.new(v4_key(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    }


@pytest.mark.parametrize("operation", ["initiate", "part", "complete", "abort"])
async def test_v2_rest_requests_are_signed(
    alice: User, server: TestServer, buckets: BucketNames, operation: str
) -> None:
    """Each chunked call's v2 string gets base64 HMAC-SHA1 of the string itself."""
    raw = v2_rest(operation, buckets.uploads, f"{alice.prefix}{uuid.uuid4()}.jpg")
    answer = await sign(alice, server, {"headers": raw}, v4=False)
    assert answer == {"signature": v2_sig(raw)}


POLICY_REFUSALS = [
    (0, {"acl": "public-read"}, "acl-not-allowed"),
    (1, {"bucket": "someone-elses"}, "bucket-mismatch"),
    (7, ["starts-with", "$key", ""], "starts-with-not-allowed"),
    (2, {"Content-Type": "text/html"}, "content-type-not-allowed"),
    (3, {"success_action_redirect": "https://evil.example/"}, "redirect-not-allowed"),
    (13, ["content-length-range", str(MAX_SIZE + 1), "99999999999"], "length-range-above-max"),
    (
        8,
        {"x-amz-credential": f"AKIDOTHER/{TODAY}/us-east-1/s3/aws4_request"},
        "credential-mismatch",
    ),
    (9, {"x-amz-date": "20261125T110000Z"}, "date-skewed"),
]


async def assert_refused(
    user: User,
    server: TestServer,
    caplog: pytest.LogCaptureFixture,
    body: Any,
    reason: str,
    *,
    v4: bool = True,
) -> None:
    """400 with invalid, the sentence, the reason and no signature; logged and counted."""
    caplog.set_level(logging.INFO, logger="gateway")
    answer = await sign(user, server, body, v4=v4, status=400)
    assert answer["invalid"] is True
    # The tile shows ``error``: the problem's sentence; the code keeps its own field.
    assert answer["error"] == answer["detail"] and answer["error"] != reason
    assert answer["reason"] == reason  # the problem+json members ride along
    assert answer["preventRetry"] is True  # the same document is refused again
    assert "signature" not in answer and "policy" not in answer
    assert any(
        r.getMessage() == "signature_refused" and getattr(r, "reason", None) == reason
        for r in caplog.records
    )
    metric = f'gateway_signatures_total{{outcome="refused",reason="{reason}",route="photos"}} 1.0'
    assert metric in await metrics_text(user.client)


@pytest.mark.parametrize(("index", "condition", "reason"), POLICY_REFUSALS)
async def test_policy_outside_the_rules_is_refused(
    alice: User,
    server: TestServer,
    buckets: BucketNames,
    caplog: pytest.LogCaptureFixture,
    index: int,
    condition: Any,
    reason: str,
) -> None:
    """One condition changed beyond what the route allows: refused, nothing signed."""
    policy = v4_policy(buckets.uploads, f"{alice.prefix}a.jpg")
    policy["conditions"][index] = condition
    await assert_refused(alice, server, caplog, policy, reason)


async def test_policy_for_another_users_key_is_refused(
    alice: User,
    bob: User,
    server: TestServer,
    buckets: BucketNames,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Alice cannot get a signature to write under Bob's prefix."""
    policy = v4_policy(buckets.uploads, f"{bob.prefix}{uuid.uuid4()}.jpg")
    await assert_refused(alice, server, caplog, policy, "key-outside-prefix")


async def test_rest_request_for_another_host_is_refused(
    alice: User, server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A v4 canonical request naming another host (another bucket) is not signed."""
    raw = v4_rest("part", "other-bucket.s3.amazonaws.com", f"{alice.prefix}a.jpg")
    await assert_refused(alice, server, caplog, {"headers": raw}, "rest-host-mismatch")


async def test_rest_get_is_refused(
    alice: User, server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A GET (reading an object) is never signed, even of the user's own key."""
    host = alice.options["objectProperties"]["host"]
    raw = v4_rest("abort", host, f"{alice.prefix}a.jpg").replace("\nDELETE\n", "\nGET\n")
    await assert_refused(alice, server, caplog, {"headers": raw}, "rest-method-not-allowed")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"headers": 7}, "malformed-request"),
        ({"headers": "x", "extra": 1}, "malformed-request"),
        ({"hello": "world"}, "malformed-request"),
        ({"expiration": "2026-11-25T12:05:00.000Z"}, "not-a-policy"),
    ],
)
async def test_malformed_signing_requests_are_refused(
    alice: User, server: TestServer, caplog: pytest.LogCaptureFixture, body: Any, reason: str
) -> None:
    """Bodies that are neither a policy nor a REST request are refused as such."""
    await assert_refused(alice, server, caplog, body, reason)


async def test_v2_rest_presign_date_line_refused(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """A v2 string with an Expires on the Date line would be a presigned URL: refused."""
    raw = v2_rest("part", buckets.uploads, f"{alice.prefix}a.jpg").replace(
        "PUT\n\n\n\n", "PUT\n\n\n2000000000\n"
    )
    answer = await sign(alice, server, {"headers": raw}, v4=False, status=400)
    assert answer["reason"] == "rest-presign-not-allowed" and "signature" not in answer


async def test_v4_policy_sent_without_v4_query_refused(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """A v4 policy at the v2 URL is refused rather than signed with the wrong algorithm."""
    answer = await sign(
        alice, server, v4_policy(buckets.uploads, f"{alice.prefix}a.jpg"), v4=False, status=400
    )
    assert answer["reason"] == "v4-condition-in-v2"


async def test_signing_counts_issued_signatures(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """Every signature issued is counted for the route."""
    await sign(alice, server, v4_policy(buckets.uploads, f"{alice.prefix}a.jpg"))
    metric = 'gateway_signatures_total{outcome="issued",reason="",route="photos"} 1.0'
    assert metric in await metrics_text(alice.client)


async def test_signature_needs_an_identity(
    aiohttp_client: Any, server: TestServer, buckets: BucketNames
) -> None:
    """No session: 401 with Fine Uploader's invalid/error fields, nothing signed."""
    client = await aiohttp_client(server)
    answer = await client.post(
        f"{P}/signature?v4=true",
        json=v4_policy(buckets.uploads, "x/a.jpg"),
        headers=origin(server),
    )
    body = await json_of(answer, 401)
    assert body["invalid"] is True and body["reason"] == "no-identity"
    assert body["error"] == body["detail"] and body["preventRetry"] is True
    assert "signature" not in body
    assert answer.content_type == "application/problem+json"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", f"{P}/signature?v4=true"), ("POST", f"{P}/success"), ("DELETE", f"{P}/files/u")],
)
async def test_foreign_origin_refused(
    alice: User, server: TestServer, recorded: Recorded, method: str, path: str
) -> None:
    """A page on another origin cannot use the user's cookies to sign, complete or delete."""
    answer = await alice.client.request(
        method, path, data=b"{}", headers={"Origin": "https://evil.example"}
    )
    body = await json_of(answer, 403)
    assert body["reason"] == "origin-refused"
    assert "signature" not in body and recorded.completions == []


async def test_foreign_referer_refused_without_origin(alice: User, server: TestServer) -> None:
    """With no Origin, a foreign Referer is refused too (old browsers)."""
    answer = await alice.client.post(
        f"{P}/signature", data=b"{}", headers={"Referer": "https://evil.example/page"}
    )
    assert (await json_of(answer, 403))["invalid"] is True


def redirect_policy(bucket: str, key: str, redirect: str, *, v4: bool) -> dict[str, Any]:
    """The captured policy of the iframe path: success_action_redirect instead of a status."""
    policy = v4_policy(bucket, key) if v4 else v2_policy(bucket, key)
    policy["conditions"] = [
        {"success_action_redirect": redirect} if c == {"success_action_status": "200"} else c
        for c in policy["conditions"]
    ]
    return policy


async def sign_redirect(
    user: User, bucket: str, redirect: str, headers: dict[str, str], *, v4: bool
) -> aiohttp.ClientResponse:
    """Ask for a redirect policy with exactly these headers (no Origin unless given)."""
    policy = redirect_policy(bucket, f"{user.prefix}{uuid.uuid4()}.jpg", redirect, v4=v4)
    path = f"{P}/signature" + ("?v4=true" if v4 else "")
    return await user.client.post(path, json=policy, headers=headers)


PUBLIC = ["https://app.example.com", "https://second.example"]


@pytest.mark.parametrize("v4", [True, False])
async def test_the_redirect_signed_is_the_blank_page_of_a_public_origin(
    aiohttp_client: Any,
    config: Config,
    clock: SettableClock,
    serve_gateway: ServeGateway,
    buckets: BucketNames,
    v4: bool,
) -> None:
    """With public_origins, the blank page is on the origin the request's Origin or Referer
    names, else on the first: never on the Host, whatever the Host says (a Host that is not
    host[:port] never gets this far: the front answers it 400 bad-host, test_proxy.py)."""
    public = config.model_copy(update={"public_origins": PUBLIC})
    server = await serve_gateway(public, clock=clock)
    user = await login(aiohttp_client, server, "alice")
    cases: list[tuple[dict[str, str], str]] = [
        ({}, PUBLIC[0]),
        ({"Origin": PUBLIC[1]}, PUBLIC[1]),
        ({"Referer": f"{PUBLIC[1]}/upload?album=7"}, PUBLIC[1]),
        ({"Host": "evil.example:8080"}, PUBLIC[0]),
        ({"Host": "evil.example"}, PUBLIC[0]),
    ]
    for headers, page in cases:
        answer = await sign_redirect(user, buckets.uploads, f"{page}{P}/blank", headers, v4=v4)
        assert "signature" in await json_of(answer, 200), headers
        for elsewhere in (
            f"http://evil.example/login?next={P}/blank",
            f"http://evil.example{P}/blank",
            *(f"{o}{P}/blank" for o in PUBLIC if o != page),
            f"{str(server.make_url('')).rstrip('/')}{P}/blank",
        ):
            answer = await sign_redirect(user, buckets.uploads, elsewhere, headers, v4=v4)
            assert (await json_of(answer, 400))["reason"] == "redirect-not-allowed", elsewhere


BAD_HOSTS = [
    "evil.example/login?next=",
    "evil.example?next=",
    "evil.example#",
    "alice@evil.example",
    "evil.example/",
    "evil example",
    "evil.example:99999",
    "evil.example:80:80",
    "evil.example:",
    "evil..example",
    "-evil.example",
    "[::1",
    "[evil.example]",
    "::1",
    "evil.example\\x",
]


@pytest.mark.parametrize("v4", [True, False])
async def test_without_public_origins_a_host_that_is_not_host_and_port_signs_nothing(
    alice: User, buckets: BucketNames, v4: bool
) -> None:
    """No public_origins and neither Origin nor Referer: the blank page's origin comes from the
    Host, which must be host[:port]; anything with a path, query, user, fragment, space or bad
    port is a 400 problem, and no policy is signed, for any redirect."""
    for host in BAD_HOSTS:
        for redirect in (f"http://{host}{P}/blank", f"http://evil.example{P}/blank"):
            answer = await sign_redirect(alice, buckets.uploads, redirect, {"Host": host}, v4=v4)
            body = await json_of(answer, 400)
            assert answer.content_type == "application/problem+json"
            assert body["reason"] == "bad-host" and "signature" not in body, host


async def test_without_public_origins_the_redirect_is_the_blank_page_on_the_host(
    alice: User, buckets: BucketNames
) -> None:
    """A Host that is host[:port] (an IPv6 literal in brackets too) gives the blank page at the
    route's own path; a redirect with anything else after the host is refused."""
    for host, page in [
        ("uploads.Example.com", "http://uploads.example.com"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("[::1]:8080", "http://[::1]:8080"),
        ("gateway_1.internal.", "http://gateway_1.internal."),
    ]:
        headers = {"Host": host}
        answer = await sign_redirect(alice, buckets.uploads, f"{page}{P}/blank", headers, v4=True)
        assert "signature" in await json_of(answer, 200), host
        answer = await sign_redirect(
            alice, buckets.uploads, f"{page}/login?next={P}/blank", headers, v4=True
        )
        assert (await json_of(answer, 400))["reason"] == "redirect-not-allowed", host


async def test_signature_body_over_64k_refused(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """A signature body over 64 KiB is refused unread (413), with Content-Length or chunked."""
    big = json.dumps({"headers": "x" * MAX_BODY}).encode()
    answer = await alice.client.post(f"{P}/signature?v4=true", data=big, headers=origin(server))
    assert (await json_of(answer, 413))["reason"] == "body-too-large"

    async def chunks() -> Any:
        for _ in range(5):
            yield b" " * (16 * 1024)

    answer = await alice.client.post(
        f"{P}/signature?v4=true", data=chunks(), headers=origin(server)
    )
    assert (await json_of(answer, 413))["reason"] == "body-too-large"
    # Just under the limit is read and judged on its content.
    padded = json.dumps(v4_policy(buckets.uploads, f"{alice.prefix}a.jpg")).encode()
    padded += b" " * (MAX_BODY - len(padded))
    answer = await alice.client.post(f"{P}/signature?v4=true", data=padded, headers=origin(server))
    assert "signature" in await json_of(answer, 200)


async def test_text_plain_signature_body_is_parsed(
    alice: User, server: TestServer, buckets: BucketNames
) -> None:
    """IE's XDomainRequest sends text/plain: the JSON body is read whatever the Content-Type."""
    body = json.dumps(v4_policy(buckets.uploads, f"{alice.prefix}a.jpg"))
    headers = {**origin(server), "Content-Type": "text/plain"}
    answer = await alice.client.post(f"{P}/signature?v4=true", data=body, headers=headers)
    assert "signature" in await json_of(answer, 200)


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b"\xff\xfe"])
async def test_signature_body_not_json_refused(
    alice: User, server: TestServer, body: bytes
) -> None:
    """A body that is not a JSON object: 400 not-json, invalid."""
    answer = await alice.client.post(f"{P}/signature", data=body, headers=origin(server))
    assert (await json_of(answer, 400))["reason"] == "not-json"


# --------------------------------------------------------------------------- POST P/success


async def upload_via_policy(
    s3_client: Any,
    user: User,
    server: TestServer,
    buckets: BucketNames,
    key: str,
    data: bytes,
    *,
    endpoint: str = f"{P}/signature",
) -> str:
    """Upload as Fine Uploader's non-chunked v4 path does: a gateway-signed form POST to S3."""
    policy = v4_policy(buckets.uploads, key)
    answer = await sign(user, server, policy, endpoint=endpoint)
    fields = {
        "key": key,
        "Content-Type": "image/jpeg",
        "success_action_status": "200",
        "x-amz-storage-class": "REDUCED_REDUNDANCY",
        "x-amz-server-side-encryption": "AES256",
        "acl": "private",
        "x-amz-meta-dataset": "ds-1",
        "Cache-Control": "max-age=60",
        "x-amz-meta-qqfilename": "my%20photo%20(1).jpg",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-credential": f"{ACCESS_KEY_ID}/{TODAY}/us-east-1/s3/aws4_request",
        "x-amz-date": AMZ_NOW,
        "policy": answer["policy"],
        "x-amz-signature": answer["signature"],
    }
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename="my photo (1).jpg", content_type="image/jpeg")
    endpoint = user.options["request"]["endpoint"]
    async with aiohttp.ClientSession() as session, session.post(endpoint, data=form) as s3_answer:
        assert s3_answer.status in (200, 204), await s3_answer.text()
        # S3 answers the form with its ETag; moto does not, so the test asks for it.
        etag = s3_answer.headers.get("ETag")
    if etag is None:
        etag = (await s3_client.head_object(Bucket=buckets.uploads, Key=key))["ETag"]
    assert isinstance(etag, str)
    return etag


def success_form(key: str, bucket: str, etag: str | None = None) -> str:
    """The success body as qq.obj2url writes it, with the page's nested params."""
    fields = [
        ("nested[a]", "1 2"),
        ("nested[list][0]", "x"),
        ("nested[list][1]", "y"),
        ("top", "t"),
        ("key", key),
        ("uuid", key.rsplit("/", 1)[-1].split(".")[0]),
        ("name", "my photo (1).jpg"),
        ("bucket", bucket),
    ]
    if etag is not None:
        fields.append(("etag", etag))
    fields += [("dataset", "ds-1"), ("Cache-Control", "max-age=60")]
    return urlencode(fields)


def form_headers(server: TestServer) -> dict[str, str]:
    return {**origin(server), "Content-Type": "application/x-www-form-urlencoded"}


async def test_success_completes_and_relays_the_upstream(
    alice: User, server: TestServer, buckets: BucketNames, recorded: Recorded, s3_client: Any
) -> None:
    """The object is stored, the upstream gets nested params once, the page gets its JSON."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    data = JPEG * 100
    etag = await upload_via_policy(s3_client, alice, server, buckets, key, data)
    answer = await alice.client.post(
        f"{P}/success",
        data=success_form(key, buckets.uploads, etag),
        headers={**form_headers(server), "Authorization": "Bearer alice-token"},
        cookies={"theme": "dark"},
    )
    body = await json_of(answer, 200)
    assert body["success"] is True and body["stored"] is True  # the upstream's own field
    [completion] = recorded.completions
    message = completion["message"]
    assert message["user"] == "alice" and message["route"] == "photos"
    assert message["filename"] == "my photo (1).jpg"
    assert message["params"]["nested"] == {"a": "1 2", "list": ["x", "y"]}
    assert message["params"]["top"] == "t" and message["params"]["dataset"] == "ds-1"
    assert not {"key", "bucket", "uuid", "etag", "name"} & message["params"].keys()
    assert body["key"] == message["object"]["key"]
    stored = await read_object(s3_client, buckets.storage, message["object"]["key"])
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    assert await keys_in(s3_client, buckets.uploads) == []
    # The client's Cookie and Authorization go upstream, the gateway's session cookie never.
    assert "theme=dark" in completion["cookie"] and "app_user=alice" in completion["cookie"]
    assert "gateway_session" not in completion["cookie"]
    assert completion["authorization"] == "Bearer alice-token"


async def test_success_accepts_json(
    alice: User, server: TestServer, buckets: BucketNames, recorded: Recorded, s3_client: Any
) -> None:
    """A JSON success body works as the form does (custom pages send it)."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    body = {"key": key, "uuid": "u", "name": "cat.jpg", "bucket": buckets.uploads, "album": "7"}
    answer = await alice.client.post(f"{P}/success", json=body, headers=origin(server))
    assert (await json_of(answer, 200))["success"] is True
    assert recorded.completions[0]["message"]["params"] == {"album": "7"}


async def test_success_for_another_users_key_is_forbidden(
    alice: User,
    bob: User,
    server: TestServer,
    buckets: BucketNames,
    recorded: Recorded,
    s3_client: Any,
) -> None:
    """Alice cannot complete (and so move) Bob's upload: 403, his object untouched."""
    key = f"{bob.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, bob, server, buckets, key, JPEG)
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads), headers=form_headers(server)
    )
    body = await json_of(answer, 403)
    assert body["success"] is False and body["error"]
    assert await keys_in(s3_client, buckets.uploads) == [key]
    assert await keys_in(s3_client, buckets.storage) == [] and recorded.completions == []


async def test_success_for_another_bucket_refused(
    alice: User, server: TestServer, recorded: Recorded
) -> None:
    """The bucket named by the client must be the uploads bucket."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, "fu-st-other"), headers=form_headers(server)
    )
    body = await json_of(answer, 400)
    assert body["reason"] == "bucket-mismatch" and body["success"] is False
    assert recorded.completions == []


async def test_success_needs_an_identity(
    aiohttp_client: Any, server: TestServer, buckets: BucketNames, recorded: Recorded
) -> None:
    """No session: 401 with success false, nothing completed."""
    client = await aiohttp_client(server)
    answer = await client.post(
        f"{P}/success", data=success_form("x/a.jpg", buckets.uploads), headers=form_headers(server)
    )
    body = await json_of(answer, 401)
    assert body["success"] is False and body["error"]
    assert recorded.completions == []


async def test_success_of_a_missing_object_fails(
    alice: User, server: TestServer, buckets: BucketNames, recorded: Recorded
) -> None:
    """Nothing was uploaded: a 4xx success false, and the upstream hears nothing."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads), headers=form_headers(server)
    )
    assert 400 <= answer.status < 500
    body = await answer.json(content_type=None)
    assert body["success"] is False and body["error"]
    assert recorded.completions == []


async def test_upstream_refusal_is_relayed_as_failure(
    alice: User, server: TestServer, buckets: BucketNames, recorded: Recorded, s3_client: Any
) -> None:
    """The upstream says 422: the page gets 422 success false with the upstream's error."""
    recorded.completion_status = 422
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads), headers=form_headers(server)
    )
    body = await json_of(answer, 422)
    assert body["success"] is False and body["error"] == "upstream refused"
    # Its copy is gone: a retry could only find nothing, so Fine Uploader offers none.
    assert body["preventRetry"] is True
    assert await keys_in(s3_client, buckets.storage) == []


async def test_refusals_forbid_retries_and_failures_allow_them(
    alice: User, server: TestServer, buckets: BucketNames, recorded: Recorded, s3_client: Any
) -> None:
    """preventRetry (Fine Uploader's retry.preventRetryResponseProperty) is true for a refusal
    that asking again cannot change, false when the upstream failed and a retry stores it."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    recorded.completion_status = 500
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads), headers=form_headers(server)
    )
    failed = await json_of(answer, 502)
    assert failed["success"] is False and failed["preventRetry"] is False
    assert failed["error"] == failed["detail"] and failed["reason"] == "upstream-failed"
    recorded.completion_status = 200
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads), headers=form_headers(server)
    )
    assert (await json_of(answer, 200))["success"] is True
    # A key outside the user's prefix stays outside it.
    answer = await alice.client.post(
        f"{P}/success",
        data=success_form(f"someone-else/{uuid.uuid4()}.jpg", buckets.uploads),
        headers=form_headers(server),
    )
    refused = await json_of(answer, 403)
    assert refused["success"] is False and refused["preventRetry"] is True
    assert refused["error"] == refused["detail"] != refused["reason"]


async def test_success_form_limits_apply(
    alice: User, server: TestServer, recorded: Recorded
) -> None:
    """A form nested too deep is refused before any completion runs."""
    answer = await alice.client.post(
        f"{P}/success", data="a[b][c][d][e][f][g]=1", headers=form_headers(server)
    )
    body = await json_of(answer, 400)
    assert body["reason"] == "form-invalid" and body["success"] is False
    assert recorded.completions == []


async def test_a_second_upload_to_a_completed_key_is_a_new_file_and_the_first_stays(
    alice: User, server: TestServer, buckets: BucketNames, recorded: Recorded, s3_client: Any
) -> None:
    """Alice uploads other bytes to a key she already completed and reports success again: the
    app gets a message with another Idempotency-Key about another stored object, the first
    copy keeps its bytes, and the app's 4xx to the second removes only the second."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    first_data, second_data = JPEG * 100, JPEG * 50
    etag = await upload_via_policy(s3_client, alice, server, buckets, key, first_data)
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads, etag), headers=form_headers(server)
    )
    await json_of(answer, 200)
    etag = await upload_via_policy(s3_client, alice, server, buckets, key, second_data)
    recorded.completion_status = 422
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads, etag), headers=form_headers(server)
    )
    await json_of(answer, 422)

    first, second = recorded.completions
    assert first["idempotency_key"] != second["idempotency_key"]
    assert first["message"]["id"] != second["message"]["id"]
    assert first["message"]["object"]["key"] != second["message"]["object"]["key"]
    kept = first["message"]["object"]["key"]
    assert await keys_in(s3_client, buckets.storage) == [kept]
    assert await read_object(s3_client, buckets.storage, kept) == first_data
    assert first["message"]["object"]["size"] == len(first_data)


def nested_success(key: str, bucket: str, depth: int) -> bytes:
    """A JSON success body whose own object and one param nest ``depth`` levels in all."""
    param = "[" * (depth - 1) + "]" * (depth - 1)
    head = json.dumps({"key": key, "uuid": "u", "name": "cat.jpg", "bucket": bucket})
    return (head[:-1] + f', "deep": {param}}}').encode()


@pytest.mark.parametrize("depth", [7, 975])
async def test_success_params_nested_too_deep_are_refused_before_anything_is_stored(
    alice: User,
    server: TestServer,
    buckets: BucketNames,
    recorded: Recorded,
    s3_client: Any,
    depth: int,
) -> None:
    """Params nested past 6 levels (form bodies' limit, one for the body itself) are a 400
    naming the limit, before any S3 work: nothing stored, the upload untouched, the app never
    told. (975 levels, the review's payload, parse in a `serve` process and used to fail only
    when the message was encoded; under pytest's deeper stack the parser may give up first, so
    tests/integration/test_hostile.py runs that case against a real process.)"""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    etag = await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    headers = {**origin(server), "Content-Type": "application/json"}
    answer = await alice.client.post(
        f"{P}/success", data=nested_success(key, buckets.uploads, depth), headers=headers
    )

    body = await json_of(answer, 400)
    assert answer.content_type == "application/problem+json"
    assert (body["reason"], body["limit"], body["success"]) == ("json-too-deep", 6, False)
    assert await keys_in(s3_client, buckets.storage) == []
    assert (await s3_client.head_object(Bucket=buckets.uploads, Key=key))["ETag"] == etag
    assert recorded.completions == []
    # Six levels, as deep as a form body may nest, still go through.
    answer = await alice.client.post(
        f"{P}/success", data=nested_success(key, buckets.uploads, 6), headers=headers
    )
    await json_of(answer, 200)
    assert recorded.completions[0]["message"]["params"]["deep"] == json.loads("[" * 5 + "]" * 5)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
async def test_success_json_with_a_non_json_number_is_refused(
    alice: User,
    server: TestServer,
    buckets: BucketNames,
    recorded: Recorded,
    s3_client: Any,
    constant: str,
) -> None:
    """Python reads NaN and Infinity; they are not JSON (RFC 8259), and passed on in params
    they would make the whole message unreadable to a strict app: 400 not-json, nothing done."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    head = json.dumps({"key": key, "uuid": "u", "name": "cat.jpg", "bucket": buckets.uploads})
    body = (head[:-1] + f', "score": {constant}}}').encode()
    headers = {**origin(server), "Content-Type": "application/json"}
    answer = await alice.client.post(f"{P}/success", data=body, headers=headers)
    assert (await json_of(answer, 400))["reason"] == "not-json"
    assert await keys_in(s3_client, buckets.uploads) == [key]
    assert await keys_in(s3_client, buckets.storage) == [] and recorded.completions == []


# --------------------------------------------------------------------------- delete


async def test_delete_removes_the_users_own_upload(
    alice: User, server: TestServer, buckets: BucketNames, s3_client: Any
) -> None:
    """DELETE P/files/{uuid}?key=&bucket= removes her own object; a second time is 404."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    query = urlencode({"key": key, "bucket": buckets.uploads})
    answer = await alice.client.delete(f"{P}/files/u?{query}", headers=origin(server))
    assert answer.status in (200, 204)
    assert await keys_in(s3_client, buckets.uploads) == []
    again = await alice.client.delete(f"{P}/files/u?{query}", headers=origin(server))
    assert again.status == 404


async def test_delete_after_completion_removes_the_stored_copy(
    alice: User, server: TestServer, buckets: BucketNames, recorded: Recorded, s3_client: Any
) -> None:
    """Deleting a completed upload removes its stored copy and tells the upstream."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    answer = await alice.client.post(
        f"{P}/success", data=success_form(key, buckets.uploads), headers=form_headers(server)
    )
    await json_of(answer, 200)
    assert len(await keys_in(s3_client, buckets.storage)) == 1
    query = urlencode({"key": key, "bucket": buckets.uploads})
    answer = await alice.client.delete(f"{P}/files/u?{query}", headers=origin(server))
    assert answer.status == 204
    assert await keys_in(s3_client, buckets.storage) == []
    assert [c["message"]["event"] for c in recorded.completions] == [
        "upload.completed",
        "upload.deleted",
    ]


async def test_delete_post_mode(
    alice: User, server: TestServer, buckets: BucketNames, s3_client: Any
) -> None:
    """Old browsers delete with POST P/files and _method=DELETE."""
    key = f"{alice.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, alice, server, buckets, key, JPEG)
    body = urlencode({"key": key, "bucket": buckets.uploads, "qquuid": "u", "_method": "DELETE"})
    answer = await alice.client.post(f"{P}/files", data=body, headers=form_headers(server))
    assert answer.status in (200, 204)
    assert await keys_in(s3_client, buckets.uploads) == []


async def test_delete_of_another_users_upload_is_forbidden(
    alice: User, bob: User, server: TestServer, buckets: BucketNames, s3_client: Any
) -> None:
    """Alice cannot delete Bob's object: 403 and it stays."""
    key = f"{bob.prefix}{uuid.uuid4()}.jpg"
    await upload_via_policy(s3_client, bob, server, buckets, key, JPEG)
    query = urlencode({"key": key, "bucket": buckets.uploads})
    answer = await alice.client.delete(f"{P}/files/u?{query}", headers=origin(server))
    assert (await json_of(answer, 403))["reason"] == "key-not-yours"
    assert await keys_in(s3_client, buckets.uploads) == [key]


# --------------------------------------------------------------------------- blank, config, 404


async def test_blank_page(aiohttp_client: Any, server: TestServer) -> None:
    """The iframe redirect target: 200 text/html, a body that is not the literal "false"."""
    client = await aiohttp_client(server)
    answer = await client.get(f"{P}/blank?bucket=b&key=k&etag=%22e%22")
    assert answer.status == 200 and answer.content_type == "text/html"
    text = await answer.text()
    assert text.strip() != "false" and "<html" in text.lower()
    assert "X-Frame-Options" not in answer.headers  # it lives in the uploader's iframe


async def test_config_describes_this_users_uploader(
    alice: User, config: Config, buckets: BucketNames, clock: SettableClock
) -> None:
    """GET P/config hands the page every Fine Uploader option it needs, for this user."""
    options = alice.options
    s3_host = str(config.s3.endpoint_url).removeprefix("http://").rstrip("/")
    assert options["request"] == {
        "endpoint": f"http://{s3_host}/{buckets.uploads}",  # path style in this config
        "accessKey": ACCESS_KEY_ID,
    }
    assert options["objectProperties"] == {
        "bucket": buckets.uploads,
        "host": s3_host,
        "region": "us-east-1",
        "acl": "private",
        "keyPrefix": alice.prefix,
    }
    assert options["signature"] == {"endpoint": f"{P}/signature", "version": 4}
    assert options["uploadSuccess"] == {"endpoint": f"{P}/success"}
    assert options["deleteFile"] == {"enabled": True, "endpoint": f"{P}/files"}
    assert options["iframeSupport"] == {"localBlankPagePath": f"{P}/blank"}
    assert options["chunking"] == {"enabled": True, "partSize": PART_SIZE}
    assert options["validation"]["sizeLimit"] == MAX_SIZE == options["maxSize"]
    assert options["keyPrefix"] == alice.prefix and alice.prefix.endswith("/")
    assert options["serverTime"] == int(clock.now.timestamp() * 1000)


async def test_config_of_two_users_differs(alice: User, bob: User) -> None:
    """Each user gets a prefix of their own."""
    assert alice.prefix != bob.prefix


async def test_config_needs_an_identity(aiohttp_client: Any, server: TestServer) -> None:
    """No session, no options: 401."""
    client = await aiohttp_client(server)
    assert (await client.get(f"{P}/config")).status == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", f"{P}/anything"), ("POST", f"{P}/s3/signature"), ("GET", f"{P}/signature")],
)
async def test_other_paths_under_the_route_are_the_gateways(
    alice: User, server: TestServer, recorded: Recorded, method: str, path: str
) -> None:
    """The namespace under P is the gateway's: 404 problem, never proxied upstream."""
    before = len(recorded.requests)
    answer = await alice.client.request(method, path, headers=origin(server))
    assert (await json_of(answer, 404))["reason"] == "not-found"
    assert answer.content_type == "application/problem+json"
    assert len(recorded.requests) == before


# --------------------------------------------------------------------------- endpoints elsewhere

# A page written for drf-to-s3 (its urls.py under api/s3/), delete in Django's trailing-/ style.
LEGACY = {
    "signature": "/api/s3/sign",
    "success": "/api/s3/file_uploaded",
    "delete": "/api/s3/delete/",
    "blank": "/api/s3/empty_html",
}


@pytest.fixture
async def legacy_server(
    serve_gateway: ServeGateway, s3_tree: dict[str, Any], clock: SettableClock
) -> TestServer:
    """The gateway whose route has its endpoints at the legacy page's paths."""
    s3_tree["routes"][0]["endpoints"] = LEGACY
    started: TestServer = await serve_gateway(build_config(s3_tree), clock=clock)
    return started


@pytest.fixture
async def carol(aiohttp_client: Any, legacy_server: TestServer) -> User:
    return await login(aiohttp_client, legacy_server, "carol")


async def test_config_names_the_endpoints_placed_elsewhere(carol: User) -> None:
    """GET P/config hands the page the explicit paths, so a page built from it agrees."""
    options = carol.options
    assert options["signature"] == {"endpoint": LEGACY["signature"], "version": 4}
    assert options["uploadSuccess"] == {"endpoint": LEGACY["success"]}
    assert options["deleteFile"] == {"enabled": True, "endpoint": LEGACY["delete"]}
    assert options["iframeSupport"] == {"localBlankPagePath": LEGACY["blank"]}


@pytest.mark.parametrize("v4", [True, False])
async def test_the_redirect_signed_is_the_explicit_blank_page(
    carol: User, legacy_server: TestServer, buckets: BucketNames, v4: bool
) -> None:
    """With endpoints.blank, the iframe path's success_action_redirect must be that page on the
    page's origin: the default P/blank is refused, as any other URL."""
    page = str(legacy_server.make_url("")).rstrip("/")
    for redirect, status in [(f"{page}{LEGACY['blank']}", 200), (f"{page}{P}/blank", 400)]:
        policy = redirect_policy(
            buckets.uploads, f"{carol.prefix}{uuid.uuid4()}.jpg", redirect, v4=v4
        )
        body = await sign(
            carol, legacy_server, policy, v4=v4, status=status, endpoint=LEGACY["signature"]
        )
        if status == 400:
            assert body["reason"] == "redirect-not-allowed"
        else:
            assert "signature" in body
    answer = await carol.client.get(LEGACY["blank"])
    assert answer.status == 200 and answer.content_type == "text/html"


async def test_drf_to_s3_success_form_and_deletes_at_the_explicit_paths(
    carol: User,
    legacy_server: TestServer,
    buckets: BucketNames,
    recorded: Recorded,
    s3_client: Any,
) -> None:
    """drf-to-s3's completion view took key, uuid, name and bucket as a form: that body at
    endpoints.success completes; DELETE <delete>/<uuid> (Fine Uploader appends /uuid to the
    endpoint as written, so here a double /) and POST <delete> with _method=DELETE remove."""
    headers = form_headers(legacy_server)
    for mode in ("DELETE", "POST"):
        file_uuid = str(uuid.uuid4())
        key = f"{carol.prefix}{file_uuid}"
        await upload_via_policy(
            s3_client, carol, legacy_server, buckets, key, JPEG, endpoint=LEGACY["signature"]
        )
        form = {"key": key, "uuid": file_uuid, "name": "scan.jpg", "bucket": buckets.uploads}
        answer = await carol.client.post(LEGACY["success"], data=urlencode(form), headers=headers)
        assert (await json_of(answer, 200))["success"] is True
        query = {"key": key, "bucket": buckets.uploads}
        if mode == "DELETE":
            answer = await carol.client.delete(
                f"{LEGACY['delete']}/{file_uuid}?{urlencode(query)}", headers=origin(legacy_server)
            )
        else:
            body = urlencode({**query, "qquuid": file_uuid, "_method": "DELETE"})
            answer = await carol.client.post(LEGACY["delete"], data=body, headers=headers)
        assert answer.status == 204, await answer.text()
        assert await keys_in(s3_client, buckets.uploads) == []
        assert await keys_in(s3_client, buckets.storage) == []
    assert [c["message"]["event"] for c in recorded.completions] == [
        "upload.completed",
        "upload.deleted",
    ] * 2
    assert {c["message"]["filename"] for c in recorded.completions} == {"scan.jpg"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", LEGACY["signature"]),
        ("PUT", LEGACY["success"]),
        ("GET", LEGACY["delete"]),
        ("POST", LEGACY["delete"] + "x/y"),
        ("DELETE", LEGACY["blank"]),
        ("POST", f"{P}/signature"),
        ("POST", f"{P}/success"),
    ],
)
async def test_explicit_endpoints_are_the_gateways_in_every_method(
    carol: User, legacy_server: TestServer, recorded: Recorded, method: str, path: str
) -> None:
    """An explicit endpoint path (and all below the delete endpoint) is the gateway's whatever
    the method: 404 problem, never the app's; the defaults they replace answer 404 too."""
    before = len(recorded.requests)
    answer = await carol.client.request(method, path, headers=origin(legacy_server))
    assert (await json_of(answer, 404))["reason"] == "not-found"
    assert answer.content_type == "application/problem+json"
    assert len(recorded.requests) == before
