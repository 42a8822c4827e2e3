"""gateway.completion against a real S3 server (moto; moto and radosgw where S3 behaviour matters)
and the real reflecting upstream app, no mocks."""

from __future__ import annotations

import hashlib
import itertools
import logging
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway import keys
from gateway.buckets import BucketNames
from gateway.completion import (
    ID_PURPOSE,
    Completion,
    CompletionRequest,
    stable_prefix,
    storage_uuid,
    storage_uuid_prefix,
)
from gateway.config import Config, RouteConfig, UpstreamConfig
from gateway.identity import Identity
from gateway.metrics import Metrics
from gateway.problems import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    StorageUnavailable,
    UnsupportedMediaType,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.storage import Storage
from gateway.upstream import Upstream
from tests.support.gateway import SESSION_KEY, build_config
from tests.support.processes import ServeGateway
from tests.support.s3 import S3Call, S3Server
from tests.support.upstream import WEBHOOK_SECRET, Recorded

ID_KEY = keys.derive(SESSION_KEY, ID_PURPOSE)
COOKIE = "app_session=s3cr3t-cookie-value; theme=dark"
AUTHORIZATION = "Bearer alice-token-123"


def _png(extra: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return (
        b"\x89PNG\r\n\x1a\n" + body + chunk(b"tEXt", b"c\x00" + b"x" * extra) + chunk(b"IEND", b"")
    )


PNG = _png(extra=5000)
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def identity_for(user: str) -> Identity:
    digest = keys.user_hash(SESSION_KEY, user)
    return Identity(user, digest, f"{digest}/")


ALICE = identity_for("alice")
BOB = identity_for("bob")


@pytest.fixture
def config(s3_tree: dict[str, Any]) -> Config:
    return build_config(s3_tree)


@pytest.fixture
def route(config: Config) -> RouteConfig:
    return config.routes[0]


@pytest.fixture
async def upstream(config: Config) -> AsyncIterator[Upstream]:
    async with Upstream.open(config.upstream) as opened:
        yield opened


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def make_completion(
    storage: Storage, upstream: Upstream, metrics: Metrics
) -> Callable[..., Completion]:
    """``make_completion(via=, secret=, clock=, over=)``: a Completion over the test's servers
    (``over``: another Storage on the same buckets)."""

    def make(
        *,
        via: Upstream | None = None,
        secret: str = WEBHOOK_SECRET,
        clock: Callable[[], datetime] | None = None,
        over: Storage | None = None,
    ) -> Completion:
        return Completion(
            over or storage,
            via or upstream,
            webhook_secret=secret,
            id_key=ID_KEY,
            webhook_timeout=0.5,
            metrics=metrics,
            clock=clock or (lambda: datetime(2026, 11, 25, 12, tzinfo=UTC)),
        )

    return make


@pytest.fixture
def completion(make_completion: Callable[..., Completion]) -> Completion:
    return make_completion()


@pytest.fixture
async def unreachable() -> AsyncIterator[Upstream]:
    """An Upstream whose address refuses connections (nothing listens on port 1)."""
    dead = UpstreamConfig(url="http://127.0.0.1:1", connect_timeout=1, read_timeout=1)
    async with Upstream.open(dead) as opened:
        yield opened


async def put(
    s3_client: Any, bucket: str, key: str, body: bytes, content_type: str | None = "image/png"
) -> None:
    extra = {"ContentType": content_type} if content_type else {}
    await s3_client.put_object(Bucket=bucket, Key=key, Body=body, **extra)


async def contents(s3_client: Any, bucket: str) -> dict[str, bytes]:
    """Every object of a bucket, key to bytes."""
    listed = await s3_client.list_objects_v2(Bucket=bucket)
    out: dict[str, bytes] = {}
    for item in listed.get("Contents", []):
        got = await s3_client.get_object(Bucket=bucket, Key=item["Key"])
        async with got["Body"] as stream:
            out[item["Key"]] = await stream.read()
    return out


def request(route: RouteConfig, key: str, **overrides: Any) -> CompletionRequest:
    fields: dict[str, Any] = {
        "route": route,
        "identity": ALICE,
        "key": key,
        "filename": "cat.png",
        "params": {"album": "7"},
        "passed_headers": {"Cookie": COOKIE, "Authorization": AUTHORIZATION},
    }
    fields.update(overrides)
    return CompletionRequest(**fields)


def count(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "gateway_completions_total", {"route": "photos", "outcome": outcome, "trigger": "client"}
    )
    return value or 0.0


# ----------------------------------------------------------------------------- the happy path


async def test_completion_stores_once_and_forwards_a_signed_message(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    metrics: Metrics,
    s3_server: S3Server,
) -> None:
    """The file ends in storage once, the upload is gone, the upstream got the exact message."""
    key = f"{ALICE.key_prefix}4f1c.png"
    await s3_client.put_object(
        Bucket=buckets.uploads,
        Key=key,
        Body=PNG,
        ContentType="image/png",
        Metadata={"qqfilename": "cat.png", "gateway-id": "forged"},
    )

    result = await completion.complete(request(route, key))

    assert result.stored is not None
    # The upload's own metadata travels with the copy; the gateway's own names are its own.
    assert result.stored.metadata["qqfilename"] == "cat.png"
    assert result.stored.metadata["gateway-id"] == result.idempotency_key
    stored = await contents(s3_client, buckets.storage)
    assert list(stored) == [result.stored.key]
    assert hashlib.sha256(stored[result.stored.key]).digest() == hashlib.sha256(PNG).digest()
    assert await contents(s3_client, buckets.uploads) == {}
    assert result.stored.key.startswith(f"photos/{ALICE.user_hash}/")
    assert result.stored.key.endswith("/cat.png")
    assert result.status == 200
    assert result.body == {"stored": True, "key": result.stored.key}
    [entry] = recorded.completions  # the upstream verified X-Upload-Signature to record it
    assert entry["message"] == {
        "event": "upload.completed",
        "id": result.idempotency_key,
        "route": "photos",
        "user": "alice",
        "filename": "cat.png",
        "params": {"album": "7"},
        "object": {
            "bucket": buckets.storage,
            "key": result.stored.key,
            "size": len(PNG),
            "etag": result.stored.etag,
            "content_type": "image/png",
        },
        "upload_key": key,
        "trigger": "client",
    }
    assert entry["path"] == "/internal/uploads/photos"
    assert entry["user"] == "alice"
    assert entry["idempotency_key"] == result.idempotency_key
    assert entry["cookie"] == COOKIE
    assert entry["authorization"] == AUTHORIZATION
    assert count(metrics, "stored") == 1


async def test_spoofed_gateway_headers_from_the_adapter_never_reach_the_upstream(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Only Cookie, Authorization and X-Request-ID pass: the user and key are the gateway's."""
    key = f"{ALICE.key_prefix}spoof.png"
    await put(s3_client, buckets.uploads, key, PNG)
    headers = {"Cookie": COOKIE, "x-upload-user": "mallory", "Idempotency-Key": "chosen"}

    result = await completion.complete(request(route, key, passed_headers=headers))

    [entry] = recorded.completions
    assert entry["user"] == "alice"
    assert entry["idempotency_key"] == result.idempotency_key != "chosen"
    assert entry["authorization"] is None


async def test_a_wrong_webhook_secret_is_refused_by_the_upstream(
    make_completion: Callable[..., Completion],
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """The upstream checks the signature: signed with another secret, nothing is recorded."""
    key = f"{ALICE.key_prefix}badsig.png"
    await put(s3_client, buckets.uploads, key, PNG)

    result = await make_completion(secret="another-secret-0123456789").complete(request(route, key))

    assert result.status == 401
    assert recorded.completions == []
    assert await contents(s3_client, buckets.storage) == {}


async def test_an_upload_without_a_declared_type_is_stored_as_its_sniffed_type(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """A browser that knew no type makes S3 say binary/octet-stream; the copy is served as PNG."""
    key = f"{ALICE.key_prefix}untyped"
    await put(s3_client, buckets.uploads, key, PNG, content_type=None)

    result = await completion.complete(request(route, key))

    assert result.stored is not None and result.stored.content_type == "image/png"


async def test_unknown_bytes_without_a_type_count_as_application_octet_stream(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """S3 says binary/octet-stream for "no type"; a route listing application/octet-stream
    accepts it under that name, and an image-only route refuses it."""
    key = f"{ALICE.key_prefix}blob"
    await put(s3_client, buckets.uploads, key, b"\x00\x01 opaque bytes", content_type=None)
    images_only = route.model_copy(update={"content_types": ["image/*"]})

    with pytest.raises(UnsupportedMediaType):
        await completion.complete(request(images_only, key))
    await put(s3_client, buckets.uploads, key, b"\x00\x01 opaque bytes", content_type=None)
    result = await completion.complete(request(route, key))

    assert result.stored is not None
    assert result.stored.content_type == "application/octet-stream"


# ----------------------------------------------------------------------------- refusals


async def test_someone_elses_key_is_forbidden_and_nothing_is_touched(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    metrics: Metrics,
) -> None:
    """Alice cannot complete (and so move or delete) Bob's upload."""
    key = f"{BOB.key_prefix}bobs.png"
    await put(s3_client, buckets.uploads, key, PNG)

    with pytest.raises(Forbidden) as raised:
        await completion.complete(request(route, key))

    assert raised.value.reason == "key-not-yours"
    assert list(await contents(s3_client, buckets.uploads)) == [key]
    assert await contents(s3_client, buckets.storage) == {}
    assert recorded.completions == []
    assert count(metrics, "refused") == 1


async def test_a_missing_upload_is_not_found(
    completion: Completion, route: RouteConfig, recorded: Recorded
) -> None:
    """Nothing in the uploads bucket and no stored copy: 404, and the upstream hears nothing."""
    with pytest.raises(NotFound) as raised:
        await completion.complete(request(route, f"{ALICE.key_prefix}never-sent.png"))

    assert raised.value.reason == "no-such-upload"
    assert recorded.completions == []


@pytest.mark.parametrize(
    ("body", "content_type", "overrides", "error", "reason"),
    [
        pytest.param(PNG, "image/png", {"max_size": 1024}, PayloadTooLarge, "too-large",
                     id="too-large"),
        pytest.param(b"hello", "text/plain", {}, UnsupportedMediaType, "content-type-not-allowed",
                     id="declared-type"),
        pytest.param(HTML, "image/png", {}, UnsupportedMediaType, "sniffed-type-not-allowed",
                     id="html-disguised-as-png"),
        pytest.param(HTML, "application/octet-stream", {}, UnsupportedMediaType,
                     "sniffed-type-not-allowed", id="html-as-octet-stream"),
        pytest.param(b"<svg onload=alert(1)>", "image/png", {}, UnsupportedMediaType,
                     "sniffed-type-not-allowed", id="svg-disguised-as-png"),
        pytest.param(b"%PDF-1.7\n", "image/png", {"content_types": ["image/*"]},
                     UnsupportedMediaType, "sniffed-type-not-allowed", id="pdf-on-image-route"),
    ],
)  # fmt: skip
async def test_an_upload_breaking_a_rule_is_refused_and_removed(
    make_completion: Callable[..., Completion],
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    body: bytes,
    content_type: str,
    overrides: dict[str, Any],
    error: type[GatewayError],
    reason: str,
) -> None:
    """Too large, a type the route refuses, or bytes that are not what they claim: refused, and
    the upload removed at once, since it can never complete."""
    key = f"{ALICE.key_prefix}bad-file"
    await put(s3_client, buckets.uploads, key, body, content_type)
    strict = route.model_copy(update=overrides)

    with pytest.raises(error) as raised:
        await make_completion().complete(request(strict, key))

    assert raised.value.reason == reason
    assert await contents(s3_client, buckets.uploads) == {}
    assert await contents(s3_client, buckets.storage) == {}
    assert recorded.completions == []


async def test_a_declared_size_that_differs_is_refused_and_removed(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """An API client's declared size is part of what was granted: another size never completes."""
    key = f"{ALICE.key_prefix}sized.png"
    await put(s3_client, buckets.uploads, key, PNG)

    with pytest.raises(BadRequest) as raised:
        await completion.complete(request(route, key, declared_size=len(PNG) - 1))

    assert raised.value.reason == "size-mismatch"
    assert await contents(s3_client, buckets.uploads) == {}


async def test_a_declared_type_the_route_refuses_is_refused(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """The type declared when the upload was granted is checked too, not only S3's."""
    key = f"{ALICE.key_prefix}typed.png"
    await put(s3_client, buckets.uploads, key, PNG)

    with pytest.raises(UnsupportedMediaType) as raised:
        await completion.complete(request(route, key, declared_content_type="text/html"))

    assert raised.value.reason == "content-type-not-allowed"


async def test_an_etag_that_differs_is_refused_but_the_object_is_kept(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    s3_server: S3Server,
) -> None:
    """The object was replaced since this client sent it; the newer upload may still complete."""
    key = f"{ALICE.key_prefix}etag.png"
    await put(s3_client, buckets.uploads, key, PNG)

    with pytest.raises(BadRequest) as raised:
        await completion.complete(request(route, key, etag='"0123456789abcdef0123456789abcdef"'))

    assert raised.value.reason == "etag-mismatch"
    assert list(await contents(s3_client, buckets.uploads)) == [key]


async def test_bytes_swapped_in_for_the_sniffing_read_are_refused_not_stored(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    s3_server: S3Server,
) -> None:
    """The same user races the completion: HTML is uploaded as image/png, then a real PNG is
    written over it just for the sniffing read and the HTML put back. The read is If-Match the
    completion's first HEAD, so the PNG is never what gets judged: refused, nothing stored."""
    key = f"{ALICE.key_prefix}swap.png"
    html = b"<!DOCTYPE html><script>alert(1)</script>".ljust(len(PNG), b" ")
    await put(s3_client, buckets.uploads, key, html)

    async def png_for_the_read(**_: Any) -> None:
        await put(s3_client, buckets.uploads, key, PNG)

    async def html_again(**_: Any) -> None:
        await put(s3_client, buckets.uploads, key, html)

    s3_client.meta.events.register("before-parameter-build.s3.GetObject", png_for_the_read)
    s3_client.meta.events.register("after-call.s3.GetObject", html_again)
    try:
        with pytest.raises(BadRequest) as raised:
            await completion.complete(request(route, key))
    finally:
        s3_client.meta.events.unregister("before-parameter-build.s3.GetObject", png_for_the_read)
        s3_client.meta.events.unregister("after-call.s3.GetObject", html_again)

    assert raised.value.reason == "etag-mismatch"
    assert await contents(s3_client, buckets.storage) == {}
    assert recorded.completions == []


# ------------------------------------------------------------- how the stored copy is served

# Byte prefixes of an upload, each a page's worth of script or the start of a real file.
SCRIPT = b"<script>document.title='RAN'</script>"
VT_HTML = b"\x0b<html>" + SCRIPT  # issue 13: Chromium skips 0x0B and runs the page
B_PREFIX = b"<bx>" + SCRIPT  # Chromium matches "<b" as a prefix
XHTML = b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml">' + SCRIPT
TEXT = b"name,amount\nalice,3\n"
BINARY = b"\x00\x01\x02 opaque bytes"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
WILD, APP, LITERAL = ["*/*"], ["application/*"], ["application/unknown", "text/html", "image/*"]
SNIFFED, DECLARED = "sniffed-type-not-allowed", "content-type-not-allowed"


def _zip() -> bytes:
    return b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(20)


@pytest.mark.parametrize(
    ("patterns", "declared", "body", "expected"),
    [
        # Types a browser sniffs for HTML: never through a wildcard, whatever the bytes.
        pytest.param(WILD, "application/unknown", VT_HTML, SNIFFED, id="unknown-vt-html"),
        pytest.param(APP, "application/unknown", VT_HTML, SNIFFED, id="app-wild-unknown-vt-html"),
        pytest.param(WILD, "application/unknown", TEXT, DECLARED, id="unknown-text"),
        pytest.param(WILD, "unknown/unknown", BINARY, DECLARED, id="unknown-unknown"),
        pytest.param(WILD, "Application/Unknown; charset=x", TEXT, DECLARED, id="unknown-spelt"),
        pytest.param(WILD, "*/*", TEXT, DECLARED, id="star-star"),
        pytest.param(WILD, "html", TEXT, DECLARED, id="no-subtype"),
        pytest.param(WILD, "text/html,", TEXT, DECLARED, id="trailing-comma"),
        pytest.param(WILD, "multipart/x-mixed-replace", TEXT, DECLARED, id="mixed-replace"),
        # Markup a browser renders, under any declared type: refused on its sniffed type.
        pytest.param(WILD, "application/x-foo", VT_HTML, SNIFFED, id="foo-vt-html"),
        pytest.param(WILD, "application/x-foo", B_PREFIX, SNIFFED, id="foo-b-prefix"),
        pytest.param(WILD, "image/png", VT_HTML, SNIFFED, id="png-vt-html"),
        pytest.param(WILD, "application/octet-stream", XHTML, SNIFFED, id="octet-xhtml"),
        pytest.param(WILD, "text/plain", B_PREFIX, SNIFFED, id="plain-b-prefix"),
        # Stored: inert types inline; the rest as attachments, with a type the bytes confirm.
        pytest.param(WILD, "image/png", PNG, ("image/png", "inline"), id="png"),
        pytest.param(WILD, "IMAGE/PNG; x=y", PNG, ("image/png", "inline"), id="png-spelt"),
        pytest.param(WILD, "image/png", TEXT, ("image/png", "inline"), id="png-unknown-bytes"),
        pytest.param(WILD, "application/octet-stream", BINARY,
                     ("application/octet-stream", "attachment"), id="octet"),
        pytest.param(WILD, "application/x-foo", TEXT,
                     ("application/octet-stream", "attachment"), id="foo-text"),
        pytest.param(WILD, "application/x-foo", BINARY,
                     ("application/octet-stream", "attachment"), id="foo-binary"),
        pytest.param(WILD, "text/plain", TEXT, ("text/plain", "attachment"), id="plain"),
        pytest.param(WILD, "text/plain;charset=UTF-8", TEXT,
                     ("text/plain; charset=utf-8", "attachment"), id="plain-charset"),
        pytest.param(WILD, "text/plain", BINARY,
                     ("application/octet-stream", "attachment"), id="plain-binary"),
        pytest.param(WILD, "text/csv", TEXT, ("text/csv", "attachment"), id="csv"),
        pytest.param(WILD, "application/json", b'{"a": 1}',
                     ("application/json", "attachment"), id="json"),
        pytest.param(WILD, "text/csv", PNG, ("image/png", "inline"), id="csv-that-is-png"),
        pytest.param(WILD, "application/pdf", PDF, ("application/pdf", "attachment"), id="pdf"),
        pytest.param(WILD, "application/pdf", TEXT,
                     ("application/octet-stream", "attachment"), id="pdf-unconfirmed"),
        pytest.param(WILD, DOCX, _zip(), (DOCX, "attachment"), id="docx"),
        # An operator who lists hostile types literally still gets attachments, and true types.
        pytest.param(LITERAL, "application/unknown", PNG, ("image/png", "inline"),
                     id="literal-unknown-png"),
        pytest.param(LITERAL, "application/unknown", TEXT,
                     ("application/octet-stream", "attachment"), id="literal-unknown-text"),
        pytest.param(LITERAL, "application/unknown", VT_HTML, ("text/html", "attachment"),
                     id="literal-unknown-vt-html"),
        pytest.param(LITERAL, "text/html", VT_HTML, ("text/html", "attachment"),
                     id="literal-html"),
    ],
)  # fmt: skip
async def test_declared_types_by_byte_prefixes_are_refused_or_stored_safe_to_open(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    patterns: list[str],
    declared: str,
    body: bytes,
    expected: str | tuple[str, str],
) -> None:
    """Issue 13: a declared type x byte prefix table. A type a browser sniffs, and bytes a
    browser renders as markup, never pass a wildcard; a stored copy has a type no browser
    sniffs (the bytes confirm it, or application/octet-stream) and, unless that type is inert,
    Content-Disposition: attachment, as the stored object's own HEAD shows."""
    key = f"{ALICE.key_prefix}table"
    await put(s3_client, buckets.uploads, key, body, declared)
    wild = route.model_copy(update={"content_types": patterns})

    if isinstance(expected, str):
        with pytest.raises(UnsupportedMediaType) as raised:
            await completion.complete(request(wild, key))
        assert raised.value.reason == expected
        assert await contents(s3_client, buckets.storage) == {}
        return
    result = await completion.complete(request(wild, key))

    assert result.stored is not None
    head = await s3_client.head_object(Bucket=buckets.storage, Key=result.stored.key)
    assert (head["ContentType"], head.get("ContentDisposition")) == expected
    assert (result.stored.content_type, result.stored.content_disposition) == expected


def nested(depth: int) -> dict[str, Any]:
    """Params nested ``depth`` levels in all (the params object is the first), built by a loop."""
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return {"deep": value}


@pytest.mark.parametrize(
    ("params", "reason", "limit"),
    [
        pytest.param(nested(7), "params-too-deep", 6, id="7-levels"),
        pytest.param(nested(975), "params-too-deep", 6, id="975-levels"),
        pytest.param({"v": ["x"] * 1200}, "params-too-large", 1200, id="1201-values"),
        pytest.param({"v": "x" * 65536}, "params-too-large", 65536, id="64k-text"),
        pytest.param({"x" * 65536: "v"}, "params-too-large", 65536, id="64k-name"),
    ],
)
async def test_params_past_the_limits_are_refused_before_any_s3_work(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    s3_operations: list[S3Call],
    params: dict[str, Any],
    reason: str,
    limit: int,
) -> None:
    """Whatever adapter built them, params the message could not carry (or should not: the
    bounds of form bodies) are a 400 naming the limit before S3 is asked anything: nothing
    copied, the upload untouched, the app not told. 975 levels used to fail only when the
    message was encoded, after the copy: a 500 and an orphaned stored copy."""
    key = f"{ALICE.key_prefix}params.png"
    await put(s3_client, buckets.uploads, key, PNG)
    s3_operations.clear()

    with pytest.raises(BadRequest) as raised:
        await completion.complete(request(route, key, params=params))

    assert (raised.value.reason, raised.value.extra["limit"]) == (reason, limit)
    assert s3_operations == []
    assert await contents(s3_client, buckets.uploads) == {key: PNG}
    assert await contents(s3_client, buckets.storage) == {}
    assert recorded.completions == []


async def test_params_at_the_limits_go_through(
    completion: Completion, route: RouteConfig, s3_client: Any, buckets: BucketNames
) -> None:
    """Six levels and 1,200 values, the most a form body builds, reach the app."""
    key = f"{ALICE.key_prefix}params-ok.png"
    await put(s3_client, buckets.uploads, key, PNG)
    params = {**nested(6), "v": ["x"] * 1192}

    result = await completion.complete(request(route, key, params=params))

    assert result.status == 200


# ------------------------------------------------------------------------ the upstream's answers


async def test_an_upstream_refusal_is_relayed_and_the_stored_copy_removed(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    metrics: Metrics,
) -> None:
    """A 4xx from the app means it does not want the file: nothing is kept anywhere."""
    key = f"{ALICE.key_prefix}refused.png"
    await put(s3_client, buckets.uploads, key, PNG)
    recorded.completion_status = 422

    result = await completion.complete(request(route, key))

    assert (result.status, result.body, result.stored) == (422, {"error": "upstream refused"}, None)
    assert await contents(s3_client, buckets.storage) == {}
    assert await contents(s3_client, buckets.uploads) == {}
    assert count(metrics, "upstream-rejected") == 1


async def test_an_upstream_failure_keeps_the_copy_and_a_retry_stores_once(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    metrics: Metrics,
) -> None:
    """A 5xx is a 502 that keeps the stored copy and the upload (pending, where the sweep
    finds it); the retry forwards it with the same key, and only then is the upload removed."""
    key = f"{ALICE.key_prefix}flaky.png"
    await put(s3_client, buckets.uploads, key, PNG)
    recorded.completion_status = 500

    with pytest.raises(UpstreamUnavailable):
        await completion.complete(request(route, key))
    kept = await contents(s3_client, buckets.storage)
    assert len(kept) == 1
    assert list(await contents(s3_client, buckets.uploads)) == [key]

    recorded.completion_status = 200
    result = await completion.complete(request(route, key))

    assert result.status == 200
    assert await contents(s3_client, buckets.storage) == kept
    first, second = recorded.completions
    assert first["idempotency_key"] == second["idempotency_key"] == result.idempotency_key
    assert first["message"] == second["message"]
    assert count(metrics, "upstream-failed") == 1 and count(metrics, "stored") == 1


async def test_an_upstream_timeout_is_504_and_a_retry_stores_once(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """An app slower than webhook.timeout gets a 504; the retry sends the same Idempotency-Key."""
    key = f"{ALICE.key_prefix}slow.png"
    await put(s3_client, buckets.uploads, key, PNG)
    recorded.completion_delay = 1.0

    with pytest.raises(UpstreamTimeout):
        await completion.complete(request(route, key))

    recorded.completion_delay = 0.0
    result = await completion.complete(request(route, key))

    assert result.status == 200
    assert len(await contents(s3_client, buckets.storage)) == 1
    # The slow attempt is cut off before the app records it (aiohttp cancels its handler once
    # the gateway hangs up); whatever was recorded carries the one key.
    assert recorded.completions[-1]["idempotency_key"] == result.idempotency_key
    assert {e["idempotency_key"] for e in recorded.completions} == {result.idempotency_key}


async def test_an_unreachable_upstream_is_502_and_a_retry_stores_once(
    make_completion: Callable[..., Completion],
    unreachable: Upstream,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Nothing listening upstream: 502, the copy kept; the retry against the app stores it once."""
    key = f"{ALICE.key_prefix}offline.png"
    await put(s3_client, buckets.uploads, key, PNG)

    with pytest.raises(UpstreamUnavailable):
        await make_completion(via=unreachable).complete(request(route, key))
    result = await make_completion().complete(request(route, key))

    assert result.status == 200
    assert len(await contents(s3_client, buckets.storage)) == 1
    assert len(recorded.completions) == 1


async def test_a_crash_between_copy_and_delete_still_stores_once(
    make_completion: Callable[..., Completion],
    unreachable: Upstream,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    s3_server: S3Server,
) -> None:
    """Copied but the original not removed (the process died): the retry copies over the same
    stored key, removes the original, and forwards; one stored object in the end."""
    key = f"{ALICE.key_prefix}crash.png"
    await put(s3_client, buckets.uploads, key, PNG)
    with pytest.raises(UpstreamUnavailable):
        await make_completion(via=unreachable).complete(request(route, key, filename="a.png"))
    await put(s3_client, buckets.uploads, key, PNG)  # as if the delete had never happened

    # Even under another name the retry writes over the first copy, not beside it.
    result = await make_completion().complete(request(route, key, filename="b.png"))

    assert result.status == 200
    assert list(await contents(s3_client, buckets.storage)) == [result.stored.key]
    assert await contents(s3_client, buckets.uploads) == {}


async def test_a_retry_naming_the_file_differently_finds_the_first_copy(
    make_completion: Callable[..., Completion],
    unreachable: Upstream,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """The stored key is fixed by the first attempt: a retry with another name cannot fork it."""
    key = f"{ALICE.key_prefix}renamed.png"
    await put(s3_client, buckets.uploads, key, PNG)
    with pytest.raises(UpstreamUnavailable):
        await make_completion(via=unreachable).complete(request(route, key, filename="a.png"))

    result = await make_completion().complete(request(route, key, filename="b.png"))

    assert result.stored is not None and result.stored.key.endswith("/a.png")
    assert list(await contents(s3_client, buckets.storage)) == [result.stored.key]
    assert recorded.completions[0]["message"]["filename"] == "a.png"


async def test_an_object_without_the_gateways_id_is_not_taken_for_the_copy(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    s3_server: S3Server,
) -> None:
    """Only the copy's metadata proves it is this upload's: anything else at its place is not,
    whether the retry names the ETag or not, even with a made-up id and ETag in its metadata."""
    key = f"{ALICE.key_prefix}gone.png"
    etag = '"0123456789abcdef0123456789abcdef"'
    completion_id = completion.idempotency_key(route, ALICE, key, etag)
    for uuid_text in (
        storage_uuid(ID_KEY, route.name, ALICE.user, key, completion_id),
        storage_uuid_prefix(ID_KEY, route.name, ALICE.user, key),
    ):
        prefix = stable_prefix(
            route.storage_key, route=route.name, user_hash=ALICE.user_hash, uuid_text=uuid_text
        )
        await s3_client.put_object(
            Bucket=buckets.storage,
            Key=f"{prefix}/stranger.png",
            Body=PNG,
            Metadata={"gateway-id": "0" * 32, "gateway-upload-etag": etag.strip('"')},
        )

    for retry in (request(route, key), request(route, key, etag=etag)):
        with pytest.raises(NotFound):
            await completion.complete(retry)

    assert recorded.completions == []


# ------------------------------------------------------- other bytes written at a completed key


PNG_TWO = _png(extra=6000)
PNG_THREE = _png(extra=7000)


def ticking() -> Callable[[], datetime]:
    """A clock one second later at each reading: each completion stores at its own time."""
    seconds = itertools.count(1)
    return lambda: datetime(2026, 11, 25, 12, tzinfo=UTC) + timedelta(seconds=next(seconds))


async def test_other_bytes_at_a_completed_key_are_a_new_upload_never_stored_over_the_first(
    make_completion: Callable[..., Completion],
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """The same user writes new bytes at an upload key already completed and completes again:
    a new message id and a new storage key; the first copy keeps its bytes, and the app's 4xx
    to a later one removes only that one's copy, never the copy the app still refers to."""
    completion = make_completion(clock=ticking())
    key = f"{ALICE.key_prefix}swapped.png"
    await put(s3_client, buckets.uploads, key, PNG)
    first = await completion.complete(request(route, key))
    await put(s3_client, buckets.uploads, key, PNG_TWO)
    second = await completion.complete(request(route, key))
    assert first.stored is not None and second.stored is not None

    assert second.idempotency_key != first.idempotency_key
    assert second.stored.key != first.stored.key
    assert await contents(s3_client, buckets.storage) == {
        first.stored.key: PNG,
        second.stored.key: PNG_TWO,
    }
    told = [(c["idempotency_key"], c["message"]["object"]["size"]) for c in recorded.completions]
    assert told == [(first.idempotency_key, len(PNG)), (second.idempotency_key, len(PNG_TWO))]

    await put(s3_client, buckets.uploads, key, PNG_THREE)
    recorded.completion_status = 422
    refused = await completion.complete(request(route, key))

    assert refused.status == 422 and refused.idempotency_key not in told[0] + told[1]
    assert await contents(s3_client, buckets.storage) == {
        first.stored.key: PNG,
        second.stored.key: PNG_TWO,
    }


async def test_a_retry_without_an_etag_once_the_upload_is_gone_is_of_the_latest_completion(
    make_completion: Callable[..., Completion],
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Two objects were completed from one key; a retry that names no ETag (API, Uppy) is taken
    to repeat the latest: its id, its copy, nothing copied or removed."""
    completion = make_completion(clock=ticking())
    key = f"{ALICE.key_prefix}twice.png"
    await put(s3_client, buckets.uploads, key, PNG)
    await completion.complete(request(route, key))
    await put(s3_client, buckets.uploads, key, PNG_TWO)
    latest = await completion.complete(request(route, key))
    before = await contents(s3_client, buckets.storage)

    retry = await completion.complete(request(route, key))

    assert retry.idempotency_key == latest.idempotency_key
    assert retry.stored == latest.stored
    assert await completion.find_stored(route, ALICE, key) == latest.stored
    assert await contents(s3_client, buckets.storage) == before
    assert recorded.completions[-1]["message"] == recorded.completions[-2]["message"]


async def test_a_retry_naming_the_first_etag_answers_as_the_first_though_other_bytes_came(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Fine Uploader's retry names the ETag it uploaded: after the key was written again, it is
    still a retry of that object (same id, same copy), and the newer upload is left alone."""
    key = f"{ALICE.key_prefix}retried.png"
    await put(s3_client, buckets.uploads, key, PNG)
    etag = (await s3_client.head_object(Bucket=buckets.uploads, Key=key))["ETag"]
    first = await completion.complete(request(route, key, etag=etag))
    await put(s3_client, buckets.uploads, key, PNG_TWO)

    retry = await completion.complete(request(route, key, etag=etag.strip('"')))

    assert retry.idempotency_key == first.idempotency_key
    assert retry.stored == first.stored
    assert await contents(s3_client, buckets.uploads) == {key: PNG_TWO}
    assert {c["idempotency_key"] for c in recorded.completions} == {first.idempotency_key}


async def test_the_same_bytes_again_are_the_same_object_and_its_copy_is_never_rewritten(
    make_completion: Callable[..., Completion],
    unreachable: Upstream,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    s3_operations: list[S3Call],
) -> None:
    """An upload whose completion stored it and then failed upstream is sent again, byte for
    byte (Fine Uploader's retry uploads the file again): the same ETag, so the same id and copy.
    The copy is not made again: bytes colliding with that ETag could never replace it."""
    key = f"{ALICE.key_prefix}again.png"
    await put(s3_client, buckets.uploads, key, PNG)
    with pytest.raises(UpstreamUnavailable):
        await make_completion(via=unreachable).complete(request(route, key))
    [kept] = await contents(s3_client, buckets.storage)
    await put(s3_client, buckets.uploads, key, PNG)
    s3_operations.clear()

    result = await make_completion().complete(request(route, key))

    assert result.stored is not None and result.stored.key == kept
    assert [e["idempotency_key"] for e in recorded.completions] == [result.idempotency_key]
    assert "CopyObject" not in [c.operation for c in s3_operations]
    assert await contents(s3_client, buckets.uploads) == {}


async def test_s3_round_trips_of_a_completion_and_of_its_retries(
    make_completion: Callable[..., Completion],
    unreachable: Upstream,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    s3_operations: list[S3Call],
) -> None:
    """A first completion the app fails asks S3 five things (HEAD, list, sniffing GET, copy,
    HEAD of the copy) and keeps the upload for the retry, which skips the GET and the copy and,
    the app answering, deletes the upload; one whose upload is gone only looks."""
    key = f"{ALICE.key_prefix}trips.png"
    up, st = buckets.uploads, buckets.storage
    await put(s3_client, up, key, PNG)
    s3_operations.clear()
    with pytest.raises(UpstreamUnavailable):
        await make_completion(via=unreachable).complete(request(route, key))
    first = [(c.operation, c.bucket) for c in s3_operations]
    s3_operations.clear()
    await make_completion().complete(request(route, key))
    resumed = [(c.operation, c.bucket) for c in s3_operations]
    s3_operations.clear()
    await make_completion().complete(request(route, key))
    gone = [(c.operation, c.bucket) for c in s3_operations]

    assert first == [
        ("HeadObject", up), ("ListObjectsV2", st), ("GetObject", up),
        ("CopyObject", st), ("HeadObject", st),
    ]  # fmt: skip
    assert resumed == [
        ("HeadObject", up), ("ListObjectsV2", st), ("HeadObject", st), ("DeleteObject", up),
    ]  # fmt: skip
    assert gone == [("HeadObject", up), ("ListObjectsV2", st), ("HeadObject", st)]


@pytest.mark.parametrize("planted_by", ["this-object", "another-object"])
async def test_a_copy_finding_its_key_taken_goes_on_only_from_its_own_object(
    make_completion: Callable[..., Completion],
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
    planted_by: str,
) -> None:
    """A concurrent completion of the same object stores it between this one's lookup and its
    copy: S3 refuses the copy (If-None-Match, honoured by moto on the multipart copy's
    completion) and this completion goes on from that copy. Anything else at the key is never
    replaced, nor taken for the copy: 503, and the upload kept for a retry."""
    storage = Storage(
        s3_client,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
        multipart_copy_threshold=1024,  # PNG is larger: the copy goes part by part
    )
    completion = make_completion(over=storage)
    key = f"{ALICE.key_prefix}raced.png"
    await put(s3_client, buckets.uploads, key, PNG)
    completion_id = completion.idempotency_key(
        route, ALICE, key, (await s3_client.head_object(Bucket=buckets.uploads, Key=key))["ETag"]
    )
    planted = {"gateway-id": completion_id if planted_by == "this-object" else "0" * 32}

    async def plant(params: dict[str, Any], **_: Any) -> None:
        if params["Bucket"] == buckets.storage:
            await s3_client.put_object(
                Bucket=buckets.storage, Key=params["Key"], Body=b"first", Metadata=planted
            )

    s3_client.meta.events.register("before-parameter-build.s3.CreateMultipartUpload", plant)
    try:
        if planted_by == "this-object":
            result = await completion.complete(request(route, key))
            assert result.status == 200 and result.stored is not None
            assert await contents(s3_client, buckets.uploads) == {}
        else:
            with pytest.raises(StorageUnavailable) as raised:
                await completion.complete(request(route, key))
            assert raised.value.reason == "copy-check-failed"
            assert list(await contents(s3_client, buckets.uploads)) == [key]
            assert recorded.completions == []
    finally:
        s3_client.meta.events.unregister("before-parameter-build.s3.CreateMultipartUpload", plant)

    assert list((await contents(s3_client, buckets.storage)).values()) == [b"first"]


# ----------------------------------------------------------------------------- deletion


async def test_deleting_an_uncompleted_upload_removes_it_quietly(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Deleting an upload never completed: the object goes, and the app hears nothing."""
    key = f"{ALICE.key_prefix}draft.png"
    await put(s3_client, buckets.uploads, key, PNG)

    assert await completion.delete_upload(route, ALICE, key, {}) is True

    assert await contents(s3_client, buckets.uploads) == {}
    assert recorded.completions == []


async def test_deleting_a_completed_upload_removes_the_copy_and_tells_the_upstream(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """The stored copy is found from the upload key alone and removed; the app is told first."""
    key = f"{ALICE.key_prefix}done.png"
    await put(s3_client, buckets.uploads, key, PNG)
    done = await completion.complete(request(route, key))
    assert done.stored is not None
    assert await completion.find_stored(route, ALICE, key) == done.stored

    deleted = await completion.delete_upload(route, ALICE, key, {"Cookie": COOKIE})

    assert deleted is True
    assert await contents(s3_client, buckets.storage) == {}
    assert await completion.find_stored(route, ALICE, key) is None
    _, told = recorded.completions
    assert told["message"]["event"] == "upload.deleted"
    assert told["message"]["id"] == done.idempotency_key
    assert told["message"]["object"]["key"] == done.stored.key
    assert told["message"]["upload_key"] == key  # as in the completion: what a delete names
    assert told["cookie"] == COOKIE
    # Its own key: an app deduplicating completions must not drop the deletion as a repeat.
    assert told["idempotency_key"] != done.idempotency_key


async def test_deleting_a_key_completed_twice_removes_the_latest_copy_then_the_earlier(
    make_completion: Callable[..., Completion],
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Fine Uploader deletes by upload key: the copy its last completion reported goes first,
    under that object's id; the earlier object's copy stays until a second delete names it."""
    completion = make_completion(clock=ticking())
    key = f"{ALICE.key_prefix}deleted-twice.png"
    await put(s3_client, buckets.uploads, key, PNG)
    first = await completion.complete(request(route, key))
    await put(s3_client, buckets.uploads, key, PNG_TWO)
    second = await completion.complete(request(route, key))
    assert first.stored is not None and second.stored is not None

    assert await completion.delete_upload(route, ALICE, key, {}) is True
    assert await contents(s3_client, buckets.storage) == {first.stored.key: PNG}
    assert await completion.delete_upload(route, ALICE, key, {}) is True
    assert await contents(s3_client, buckets.storage) == {}
    assert await completion.delete_upload(route, ALICE, key, {}) is False

    told = [c for c in recorded.completions if c["message"]["event"] == "upload.deleted"]
    assert [c["message"]["id"] for c in told] == [second.idempotency_key, first.idempotency_key]
    assert [c["message"]["object"]["key"] for c in told] == [second.stored.key, first.stored.key]
    keys_used = {c["idempotency_key"] for c in recorded.completions}
    assert len(keys_used) == 4  # two completions, two deletions: none a repeat of another


async def test_a_deletion_the_upstream_refuses_keeps_the_copy(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """The app still refers to the file (it answers 403): the copy stays and the client is told."""
    key = f"{ALICE.key_prefix}keep.png"
    await put(s3_client, buckets.uploads, key, PNG)
    await completion.complete(request(route, key))
    recorded.completion_status = 403

    with pytest.raises(Forbidden) as refused:
        await completion.delete_upload(route, ALICE, key, {})

    # Its own reason: upstream-refused is the 502 of an app that takes no connection.
    assert (refused.value.status, refused.value.reason) == (403, "delete-refused")
    assert len(await contents(s3_client, buckets.storage)) == 1


async def test_deleting_nothing_or_someone_elses_upload(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """Nothing there: False. Bob's key: 403, and his object stays."""
    assert await completion.delete_upload(route, ALICE, f"{ALICE.key_prefix}none.png", {}) is False
    key = f"{BOB.key_prefix}bobs.png"
    await put(s3_client, buckets.uploads, key, PNG)

    with pytest.raises(Forbidden):
        await completion.delete_upload(route, ALICE, key, {})

    assert list(await contents(s3_client, buckets.uploads)) == [key]


# ----------------------------------------------------------------------------- logs


async def test_logs_name_events_and_never_carry_credentials(
    completion: Completion,
    route: RouteConfig,
    s3_client: Any,
    buckets: BucketNames,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """completion_forwarded and completion_refused are logged; cookies and tokens never are."""
    caplog.set_level(logging.INFO, logger="gateway.completion")
    await put(s3_client, buckets.uploads, f"{ALICE.key_prefix}ok.png", PNG)
    await put(s3_client, buckets.uploads, f"{ALICE.key_prefix}bad.png", HTML)

    await completion.complete(request(route, f"{ALICE.key_prefix}ok.png"))
    with pytest.raises(UnsupportedMediaType):
        await completion.complete(request(route, f"{ALICE.key_prefix}bad.png"))

    events = [(r.getMessage(), getattr(r, "reason", None)) for r in caplog.records]
    assert ("completion_forwarded", None) in events
    assert ("completion_refused", "sniffed-type-not-allowed") in events
    dumped = " ".join(str(r.__dict__) for r in caplog.records)
    assert "s3cr3t" not in dumped and "alice-token" not in dumped and WEBHOOK_SECRET not in dumped


# ------------ storage-key templates (refused by themselves: tests/unit/test_completion.py)


async def test_an_app_with_such_a_template_does_not_start(
    config: Config, serve_gateway: ServeGateway
) -> None:
    """The mistake shows at start-up, naming the route, not on the first failed retry."""
    bad = config.model_copy(
        update={"routes": [config.routes[0].model_copy(update={"storage_key": "{date}/{uuid}"})]}
    )
    with pytest.raises(ValueError, match=r"routes\[0\]\.storage_key"):
        await serve_gateway(bad)
