"""What S3 itself refuses of what the gateway signed, shown on radosgw (an S3 that verifies).

SECURITY.md says S3 enforces what the gateway signs: the route's max_size (or the declared size)
in every POST policy, each form field the policy names, the declared length of a presigned PUT
and of each API part, the part number, upload and key a part URL was signed for, the part number
and bytes of a Fine Uploader chunk, and the expiry of each signature. Each test here asks the
running gateway for a signature over HTTP, as a browser or an API client does, sends radosgw the
request built from it with one thing changed and asserts radosgw's refusal, then sends the same
request unchanged and asserts radosgw takes it: the refusal is due to the change alone. moto
accepts every changed request, so these run on radosgw only (the module's parametrisation), with
the gateway's clock at the real time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from gateway.buckets import BucketNames
from tests.support.gateway import ACCESS_KEY_ID, SettableClock, build_config
from tests.support.processes import ServeGateway
from tests.support.s3 import S3Server

pytestmark = pytest.mark.parametrize("s3_server", ["radosgw"], indirect=True)

Client = TestClient[web.Request, web.Application]
KiB = 1024
MiB = 1024 * KiB
MAX_SIZE = 64 * KiB
TTL = 900
PHOTOS = "/uploads/photos"
PICS = "/uploads/pics"
FILES = "/api/files"
ROUTES: list[dict[str, Any]] = [
    {
        "name": "photos",
        "protocol": "fineuploader",
        "path": PHOTOS,
        "max_size": MAX_SIZE,
        "content_types": ["image/*"],
        "signature_ttl": TTL,
        "forward": "/internal/uploads/photos",
    },
    {
        "name": "pics",
        "protocol": "uppy",
        "path": PICS,
        "max_size": MAX_SIZE,
        "content_types": ["image/*"],
        "signature_ttl": TTL,
        "forward": "/internal/uploads/pics",
    },
    {
        "name": "files",
        "protocol": "api",
        "path": FILES,
        "max_size": "64MiB",
        "content_types": ["application/octet-stream"],
        "signature_ttl": TTL,
        "forward": "/internal/uploads/files",
        # 8 MiB + 1 byte is two parts, the second of one byte: cheap to send.
        "multipart_threshold": "8MiB",
        "part_size": "8MiB",
    },
]
ALICE = {"Authorization": "Bearer alice"}


# --------------------------------------------------------------------------- the stack


@dataclass
class Stack:
    """The gateway (its clock at the real time), radosgw, and a plain HTTP client for S3."""

    gateway: Client
    origin: dict[str, str]
    clock: SettableClock
    server: S3Server
    buckets: BucketNames
    s3: Any
    http: aiohttp.ClientSession

    async def stored(self, key: str) -> bool:
        """Whether the uploads bucket holds ``key``."""
        listing = await self.s3.list_objects_v2(Bucket=self.buckets.uploads, Prefix=key)
        return any(item["Key"] == key for item in listing.get("Contents", []))


@pytest.fixture
async def stack(
    aiohttp_client: Any,
    serve_gateway: ServeGateway,
    s3_tree: dict[str, Any],
    s3_server: S3Server,
    s3_client: Any,
    buckets: BucketNames,
    clock: SettableClock,
) -> AsyncIterator[Stack]:
    """The gateway with a Fine Uploader, an Uppy and an api route, in front of radosgw."""
    tree = s3_tree
    # Fine Uploader's chunks name the bucket by host: <bucket>.localhost:PORT (rgw_dns_name).
    tree["s3"]["public_endpoint_url"] = s3_server.browser_endpoint
    tree["s3"]["addressing_style"] = "auto"
    config = build_config(tree, routes=ROUTES, identity={"auth_request": {"path": "/api/me"}})
    gateway: Client = await aiohttp_client(await serve_gateway(config, clock=clock))
    origin = {"Origin": str(gateway.make_url("")).rstrip("/")}
    assert (await gateway.get("/login?user=alice")).status == 200
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        yield Stack(gateway, origin, clock, s3_server, buckets, s3_client, http)


async def refusal(answer: aiohttp.ClientResponse) -> tuple[int, str]:
    """S3's status and error code (``<Code>`` of its XML body; "" when it has none)."""
    found = re.search(r"<Code>([^<]+)</Code>", await answer.text())
    return answer.status, found.group(1) if found else ""


def at_amz(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%SZ")


# --------------------------------------------------------------------------- POST policies


async def prefix_of(stack: Stack) -> str:
    answer = await stack.gateway.get(f"{PHOTOS}/config")
    assert answer.status == 200, await answer.text()
    prefix: str = (await answer.json())["keyPrefix"]
    return prefix


async def fine_uploader_form(stack: Stack, *, v4: bool, key: str) -> dict[str, str]:
    """The form Fine Uploader posts for a small file: its policy, signed at ``P/signature``.

    The page sets no size limit, so the gateway adds ``content-length-range`` of max_size.
    """
    now = stack.clock.now
    fields = {
        "key": key,
        "acl": "private",
        "Content-Type": "image/jpeg",
        "success_action_status": "200",
        "x-amz-meta-qqfilename": "photo.jpg",
    }
    if v4:
        fields["x-amz-algorithm"] = "AWS4-HMAC-SHA256"
        fields["x-amz-credential"] = f"{ACCESS_KEY_ID}/{now:%Y%m%d}/us-east-1/s3/aws4_request"
        fields["x-amz-date"] = at_amz(now)
    # Fine Uploader writes its own expiration; the gateway replaces it with now + signature_ttl.
    policy = {
        "expiration": (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [{"bucket": stack.buckets.uploads}, *({k: v} for k, v in fields.items())],
    }
    path = f"{PHOTOS}/signature" + ("?v4=true" if v4 else "")
    answer = await stack.gateway.post(path, json=policy, headers=stack.origin)
    signed = await answer.json()
    assert answer.status == 200, signed
    if v4:
        return {**fields, "policy": signed["policy"], "x-amz-signature": signed["signature"]}
    return {
        **fields,
        "AWSAccessKeyId": ACCESS_KEY_ID,
        "policy": signed["policy"],
        "signature": signed["signature"],
    }


async def uppy_form(stack: Stack, size: int | None = None) -> tuple[str, dict[str, str]]:
    """Uppy's single-request upload: ``GET P/s3/params`` gives the URL and the form fields."""
    query = {"filename": "photo.jpg", "type": "image/jpeg"}
    if size is not None:
        query["size"] = str(size)
    answer = await stack.gateway.get(f"{PICS}/s3/params?{urlencode(query)}")
    params = await answer.json()
    assert answer.status == 200, params
    assert params["method"] == "POST"
    return params["url"], dict(params["fields"])


async def post_form(stack: Stack, fields: dict[str, str], data: bytes) -> tuple[int, str]:
    """The form POST a browser makes to the uploads bucket (path style here): status and code."""
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    form.add_field("file", data, filename="photo.jpg", content_type="image/jpeg")
    url = f"{stack.server.endpoint}/{stack.buckets.uploads}"
    async with stack.http.post(url, data=form) as answer:
        return await refusal(answer)


def jpeg(size: int) -> bytes:
    head = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"
    return (head + b"\x00" * size)[:size]


@pytest.mark.parametrize("form", ["fineuploader-v4", "fineuploader-v2", "uppy"])
async def test_a_form_one_byte_over_max_size_is_refused_by_s3(stack: Stack, form: str) -> None:
    """The signed policy bounds the file by the route's max_size, and S3 holds to it: one byte
    more is 400 EntityTooLarge and nothing stored; exactly max_size is stored."""
    if form == "uppy":
        url, fields = await uppy_form(stack)
        assert urlsplit(url).hostname == f"{stack.buckets.uploads}.localhost"
    else:
        key = f"{await prefix_of(stack)}{uuid.uuid4()}.jpg"
        fields = await fine_uploader_form(stack, v4=form == "fineuploader-v4", key=key)

    assert await post_form(stack, fields, jpeg(MAX_SIZE + 1)) == (400, "EntityTooLarge")
    assert not await stack.stored(fields["key"])
    assert (await post_form(stack, fields, jpeg(MAX_SIZE)))[0] == 200
    assert await stack.stored(fields["key"])


async def test_a_form_one_byte_over_the_declared_size_is_refused_by_s3(stack: Stack) -> None:
    """Uppy's page may declare the size: the policy then bounds the file by it, not max_size."""
    _, fields = await uppy_form(stack, size=1000)
    assert await post_form(stack, fields, jpeg(1001)) == (400, "EntityTooLarge")
    assert not await stack.stored(fields["key"])
    assert (await post_form(stack, fields, jpeg(1000)))[0] == 200


def _reencoded_with_a_larger_range(policy_b64: str) -> str:
    policy = json.loads(base64.b64decode(policy_b64))
    policy["conditions"] = [
        ["content-length-range", 0, 5 * 1024**3] if isinstance(c, list) else c
        for c in policy["conditions"]
    ]
    return base64.b64encode(json.dumps(policy).encode()).decode()


# (form version, field, its value after signing). v2 forms are checked by the same code in
# radosgw past the signature, so they repeat only the key, an added field and the policy.
FIELD_CHANGES = [
    *(
        pytest.param(4, field, value, id=f"v4-{name}")
        for name, field, value in (
            ("key", "key", "OTHER_KEY"),
            ("content-type", "Content-Type", "text/html"),
            ("acl", "acl", "public-read"),
            ("metadata", "x-amz-meta-qqfilename", "other.html"),
            ("status", "success_action_status", "201"),
            ("uncovered-field", "x-amz-meta-added", "1"),
            ("policy", "policy", "LARGER_RANGE"),
        )
    ),
    pytest.param(2, "key", "OTHER_KEY", id="v2-key"),
    pytest.param(2, "x-amz-meta-added", "1", id="v2-uncovered-field"),
    pytest.param(2, "policy", "LARGER_RANGE", id="v2-policy"),
]


@pytest.mark.parametrize(("version", "field", "value"), FIELD_CHANGES)
async def test_a_form_field_changed_after_signing_is_refused_by_s3(
    stack: Stack, version: int, field: str, value: str
) -> None:
    """Every field of a signed form is pinned by its policy (and the policy by its signature):
    a field changed or added after signing is 403 and stores nothing; unchanged, it is stored.

    radosgw answers AccessDenied to each, the changed policy included (its log says the
    signature did not match; AWS names that SignatureDoesNotMatch)."""
    prefix = await prefix_of(stack)
    fields = await fine_uploader_form(stack, v4=version == 4, key=f"{prefix}{uuid.uuid4()}.jpg")
    changed = dict(fields)
    if value == "OTHER_KEY":
        value = f"{prefix}{uuid.uuid4()}.jpg"  # even within the user's own prefix
    elif value == "LARGER_RANGE":
        value = _reencoded_with_a_larger_range(fields["policy"])
    changed[field] = value

    assert await post_form(stack, changed, jpeg(1000)) == (403, "AccessDenied")
    assert not await stack.stored(changed["key"])
    assert not await stack.stored(fields["key"])
    assert (await post_form(stack, fields, jpeg(1000)))[0] == 200
    assert await stack.stored(fields["key"])


# --------------------------------------------------------------------------- presigned PUTs


async def grant(stack: Stack, size: int) -> dict[str, Any]:
    """An API grant for ``size`` bytes (no checksum: only the length is under test)."""
    body = {"filename": "data.bin", "content_type": "application/octet-stream", "size": size}
    answer = await stack.gateway.post(FILES, json=body, headers=ALICE)
    granted: dict[str, Any] = await answer.json()
    assert answer.status == 201, granted
    return granted


async def put(stack: Stack, url: str, data: bytes, headers: dict[str, str] | None = None) -> Any:
    """PUT ``url`` as signed, through 127.0.0.1 with the URL's own Host (a virtual host name
    ``<bucket>.localhost`` resolves only in browsers): S3's status and error code."""
    parts = urlsplit(url)
    loopback = urlunsplit(parts._replace(netloc=f"127.0.0.1:{stack.server.port}"))
    sent = {**(headers or {}), "Host": parts.netloc}
    async with stack.http.put(URL(loopback, encoded=True), data=data, headers=sent) as answer:
        return await refusal(answer)


@pytest.mark.parametrize("delta", [1, -1], ids=["one-byte-more", "one-byte-less"])
async def test_a_presigned_put_of_another_length_than_declared_is_refused_by_s3(
    stack: Stack, delta: int
) -> None:
    """The declared size is signed as Content-Length: S3 refuses one byte more (or less)
    (403 SignatureDoesNotMatch) and stores nothing; the declared length is stored."""
    granted = await grant(stack, 1000)
    headers = granted["headers"]
    assert await put(stack, granted["url"], b"x" * (1000 + delta), headers) == (
        403,
        "SignatureDoesNotMatch",
    )
    assert not await stack.stored(granted["key"])
    assert (await put(stack, granted["url"], b"x" * 1000, headers))[0] == 200
    assert await stack.stored(granted["key"])


def parse_qs(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def with_query(url: str, **changes: str) -> str:
    """``url`` with query parameters replaced, the others (signature included) as they were."""
    parts = urlsplit(url)
    query = [(k, changes.get(k, v)) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


async def list_parts(stack: Stack, key: str, multipart_id: str) -> list[int]:
    answer = await stack.s3.list_parts(Bucket=stack.buckets.uploads, Key=key, UploadId=multipart_id)
    return [part["PartNumber"] for part in answer.get("Parts", [])]


async def test_a_part_with_one_byte_more_than_signed_is_refused_by_s3(stack: Stack) -> None:
    """Each API part URL signs its part's length: one byte more is refused, nothing stored."""
    granted = await grant(stack, 8 * MiB + 1)
    last = granted["parts"][1]["url"]  # part 2 holds the one byte past 8 MiB
    multipart_id = parse_qs(last)["uploadId"]
    assert await put(stack, last, b"yy") == (403, "SignatureDoesNotMatch")
    assert await list_parts(stack, granted["key"], multipart_id) == []
    assert (await put(stack, last, b"y"))[0] == 200
    assert await list_parts(stack, granted["key"], multipart_id) == [2]


@pytest.mark.parametrize("target", ["part-number", "upload", "key-and-upload"])
async def test_a_part_url_used_for_another_part_or_upload_is_refused_by_s3(
    stack: Stack, target: str
) -> None:
    """A part URL is good for its own part of its own upload only: moved to another part
    number, upload id or key (with that key's upload id) it is 403 and nothing is written."""
    mine = await grant(stack, 8 * MiB + 1)
    other = await grant(stack, 8 * MiB + 1)
    url = mine["parts"][1]["url"]
    my_upload = parse_qs(url)["uploadId"]
    other_upload = parse_qs(other["parts"][1]["url"])["uploadId"]
    if target == "part-number":
        moved = with_query(url, partNumber="1")
    elif target == "upload":
        moved = with_query(url, uploadId=other_upload)
    else:
        other_path = urlsplit(other["parts"][1]["url"]).path
        moved = urlunsplit(
            urlsplit(with_query(url, uploadId=other_upload))._replace(path=other_path)
        )

    assert await put(stack, moved, b"y") == (403, "SignatureDoesNotMatch")
    assert await list_parts(stack, mine["key"], my_upload) == []
    assert await list_parts(stack, other["key"], other_upload) == []
    assert (await put(stack, url, b"y"))[0] == 200
    assert await list_parts(stack, mine["key"], my_upload) == [2]


# --------------------------------------------------------------------------- Fine Uploader chunks


async def initiate(stack: Stack) -> tuple[str, str]:
    """A multipart upload under the user's prefix (made directly: only parts are under test)."""
    key = f"{await prefix_of(stack)}{uuid.uuid4()}.jpg"
    answer = await stack.s3.create_multipart_upload(Bucket=stack.buckets.uploads, Key=key)
    return key, answer["UploadId"]


async def chunk_headers(stack: Stack, key: str, multipart_id: str, number: int, body: bytes) -> Any:
    """The headers of Fine Uploader's v4 part PUT, its string signed at ``P/signature``."""
    now = stack.clock.now
    amz, day = at_amz(now), f"{now:%Y%m%d}"
    host = f"{stack.buckets.uploads}.localhost:{stack.server.port}"
    payload = hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [
            "PUT",
            "/" + quote(key, safe="/~"),
            f"partNumber={number}&uploadId={quote(multipart_id, safe='~')}",
            f"host:{host}",
            f"x-amz-content-sha256:{payload}",
            f"x-amz-date:{amz}",
            "",
            "host;x-amz-content-sha256;x-amz-date",
            payload,
        ]
    )
    scope = f"{day}/us-east-1/s3/aws4_request"
    raw = f"AWS4-HMAC-SHA256\n{amz}\n{scope}\n{canonical}"
    answer = await stack.gateway.post(
        f"{PHOTOS}/signature?v4=true", json={"headers": raw}, headers=stack.origin
    )
    signed = await answer.json()
    assert answer.status == 200, signed
    authorization = (
        f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signed['signature']}"
    )
    return {
        "Authorization": authorization,
        "x-amz-content-sha256": payload,
        "x-amz-date": amz,
    }


def chunk_url(stack: Stack, key: str, multipart_id: str, number: int) -> str:
    host = f"{stack.buckets.uploads}.localhost:{stack.server.port}"
    query = urlencode({"partNumber": number, "uploadId": multipart_id}, quote_via=quote)
    return f"http://{host}/{quote(key, safe='/~')}?{query}"


@pytest.mark.parametrize("change", ["part-number", "body"])
async def test_a_chunk_signature_used_for_another_part_or_body_is_refused_by_s3(
    stack: Stack, change: str
) -> None:
    """A Fine Uploader chunk's signature covers its part number and its bytes' SHA-256: sent
    for another part it is 403 SignatureDoesNotMatch, with other bytes 400
    XAmzContentSHA256Mismatch, and nothing is written; as signed, the part is stored."""
    key, multipart_id = await initiate(stack)
    body = b"chunk one"
    headers = await chunk_headers(stack, key, multipart_id, 1, body)
    url = chunk_url(stack, key, multipart_id, 1)
    if change == "part-number":
        moved = chunk_url(stack, key, multipart_id, 2)
        assert await put(stack, moved, body, headers) == (403, "SignatureDoesNotMatch")
    else:
        other = b"chunk two"  # the same length
        assert await put(stack, url, other, headers) == (400, "XAmzContentSHA256Mismatch")
    assert await list_parts(stack, key, multipart_id) == []
    assert (await put(stack, url, body, headers))[0] == 200
    assert await list_parts(stack, key, multipart_id) == [1]


# --------------------------------------------------------------------------- expiry


@pytest.mark.parametrize(
    "signed", ["api-put", "api-part", "chunk-v4", "policy-v4", "policy-v2", "uppy"]
)
async def test_an_expired_signature_is_refused_by_s3(stack: Stack, signed: str) -> None:
    """A signature lives signature_ttl seconds: signed by the gateway ttl + 60 s ago it is 403
    at S3 and stores nothing; the same request signed now is stored."""

    async def send(when: datetime) -> tuple[tuple[int, str], str]:
        stack.clock.now = when
        if signed == "api-put":
            granted = await grant(stack, 1000)
            return await put(stack, granted["url"], b"x" * 1000), granted["key"]
        if signed == "api-part":
            granted = await grant(stack, 8 * MiB + 1)
            return await put(stack, granted["parts"][1]["url"], b"y"), granted["key"]
        if signed == "chunk-v4":
            key, multipart_id = await initiate(stack)
            headers = await chunk_headers(stack, key, multipart_id, 1, b"z")
            return await put(stack, chunk_url(stack, key, multipart_id, 1), b"z", headers), key
        if signed == "uppy":
            _, fields = await uppy_form(stack)
        else:
            key = f"{await prefix_of(stack)}{uuid.uuid4()}.jpg"
            fields = await fine_uploader_form(stack, v4=signed == "policy-v4", key=key)
        return await post_form(stack, fields, jpeg(1000)), fields["key"]

    now = stack.clock.now
    # A header-signed chunk carries its date, not an expiry: S3 allows 15 minutes of skew.
    refused = (403, "RequestTimeTooSkewed" if signed == "chunk-v4" else "AccessDenied")
    answer, key = await send(now - timedelta(seconds=TTL + 60))
    assert answer == refused
    assert not await stack.stored(key)
    (status, _), key = await send(now)
    assert status == 200
    if not signed.endswith(("part", "chunk-v4")):  # parts are stored only at the completion
        assert await stack.stored(key)
