"""gateway.storage against moto's S3 server: the verbs, their checks, and the error mapping."""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import pytest

from gateway.config import S3Config
from gateway.problems import BadRequest, NotFound, StorageUnavailable
from gateway.storage import Part, Storage, StorageKeyTaken, StoredObject, open_s3_client
from tests.support.s3 import BucketNames, S3Call

MiB = 1024**2


async def put(client: Any, bucket: str, key: str, body: bytes, **extra: Any) -> str:
    answer = await client.put_object(Bucket=bucket, Key=key, Body=body, **extra)
    return str(answer["ETag"])


async def read(client: Any, bucket: str, key: str) -> bytes:
    answer = await client.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as body:
        data: bytes = await body.read()
    return data


async def keys(client: Any, bucket: str) -> list[str]:
    answer = await client.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in answer.get("Contents", [])]


def ops(calls: list[S3Call]) -> list[str]:
    return [call.operation for call in calls]


# ----------------------------------------------------------------------------- head, read


async def test_head_reports_size_etag_type_and_metadata(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """HEAD answers with the object's facts as a StoredObject, not a botocore dict."""
    etag = await put(
        s3_client, buckets.uploads, "u/a.png", b"x" * 1234,
        ContentType="image/png", Metadata={"qqfilename": "a.png"},
    )  # fmt: skip
    found = await storage.head(buckets.uploads, "u/a.png")
    assert found == StoredObject(
        bucket=buckets.uploads,
        key="u/a.png",
        size=1234,
        etag=etag,
        content_type="image/png",
        metadata={"qqfilename": "a.png"},
    )
    assert etag.startswith('"') and etag.endswith('"')


async def test_head_of_a_missing_object_is_none(storage: Storage, buckets: BucketNames) -> None:
    """A missing object is None, not an error: the completion asks before it acts."""
    assert await storage.head(buckets.uploads, "u/never-sent") is None


async def test_read_prefix_reads_only_the_first_bytes(
    storage: Storage, s3_client: Any, buckets: BucketNames, s3_operations: list[S3Call]
) -> None:
    """Sniffing reads a ranged prefix, never the whole (possibly huge) object."""
    body = os.urandom(64 * 1024)
    await put(s3_client, buckets.uploads, "u/big", body)
    s3_operations.clear()
    assert await storage.read_prefix(buckets.uploads, "u/big", 512) == body[:512]
    assert [(c.operation, c.params.get("Range")) for c in s3_operations] == [
        ("GetObject", "bytes=0-511")
    ]
    assert await storage.read_prefix(buckets.uploads, "u/big", 10 * MiB) == body


async def test_read_prefix_of_a_version_is_refused_once_the_object_changed(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """With the checked ETag the read is If-Match it: bytes written since are never returned."""
    first = await put(s3_client, buckets.uploads, "u/v", b"first version")
    assert await storage.read_prefix(buckets.uploads, "u/v", 5, etag=first) == b"first"
    await put(s3_client, buckets.uploads, "u/v", b"other version")
    with pytest.raises(BadRequest) as raised:
        await storage.read_prefix(buckets.uploads, "u/v", 5, etag=first)
    assert raised.value.reason == "etag-mismatch"


async def test_read_prefix_of_an_empty_object_is_empty(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """S3 answers 416 to any range of an empty object; that is b"", not a 503."""
    await put(s3_client, buckets.uploads, "u/empty", b"")
    assert await storage.read_prefix(buckets.uploads, "u/empty", 512) == b""


async def test_read_prefix_of_a_missing_object_is_not_found(
    storage: Storage, buckets: BucketNames
) -> None:
    """A missing object read is NotFound (the client's upload is gone), not a storage outage."""
    with pytest.raises(NotFound):
        await storage.read_prefix(buckets.uploads, "u/gone", 512)


async def test_sha256_hashes_every_byte_and_is_none_when_missing(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """The API route's declared sha256 is checked against all the stored bytes."""
    body = os.urandom(3 * MiB + 17)
    await put(s3_client, buckets.uploads, "u/f", body)
    assert await storage.sha256(buckets.uploads, "u/f") == hashlib.sha256(body).hexdigest()
    assert await storage.sha256(buckets.uploads, "u/none") is None


async def test_list_keys_lists_under_the_prefix_only_up_to_the_limit(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """Finding an earlier copy looks under one prefix and reads one bounded page."""
    for name in ("p/a/1", "p/a/2", "p/a/3", "p/b/1"):
        await put(s3_client, buckets.storage, name, b"-")
    assert sorted(await storage.list_keys(buckets.storage, "p/a/")) == ["p/a/1", "p/a/2", "p/a/3"]
    assert len(await storage.list_keys(buckets.storage, "p/", limit=2)) == 2


# ----------------------------------------------------------------------------- copy


async def test_copy_to_storage_copies_bytes_type_and_metadata(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """The copy lands in the storage bucket with the checked type and the given metadata."""
    body = os.urandom(10_000)
    etag = await put(
        s3_client, buckets.uploads, "u/c.bin", body,
        ContentType="application/octet-stream", Metadata={"from": "browser"},
    )  # fmt: skip
    copied = await storage.copy_to_storage(
        "u/c.bin",
        "route/x/c.png",
        source_etag=etag.strip('"'),  # clients pass ETags with or without quotes
        content_type="image/png",
        metadata={"upload-id": "abc"},
    )
    assert copied.bucket == buckets.storage and copied.key == "route/x/c.png"
    assert copied.size == len(body)
    assert copied.content_type == "image/png"
    assert copied.metadata == {"upload-id": "abc"}
    assert await read(s3_client, buckets.storage, "route/x/c.png") == body
    # The original stays: removing it is the completion's decision, after its own checks.
    assert await keys(s3_client, buckets.uploads) == ["u/c.bin"]


async def test_copy_keeps_the_uploads_metadata_when_given_none(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """metadata=None keeps what was uploaded, and the type falls back to the upload's."""
    await put(
        s3_client, buckets.uploads, "u/m", b"abc", ContentType="text/plain", Metadata={"k": "v"}
    )
    copied = await storage.copy_to_storage("u/m", "s/m")
    assert (copied.content_type, copied.metadata) == ("text/plain", {"k": "v"})


@pytest.mark.parametrize("threshold", [5 * 1024**3, 1], ids=["copy-object", "multipart-copy"])
async def test_the_copy_is_served_as_the_gateway_says_not_as_the_uploader_said(
    s3_client: Any, buckets: BucketNames, threshold: int
) -> None:
    """The uploader's Content-Type and Content-Disposition never reach the copy, by either copy
    path: it gets the given ones, and ``attachment`` when none is given."""
    storage = Storage(
        s3_client,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
        multipart_copy_threshold=threshold,
    )
    await put(
        s3_client, buckets.uploads, "u/page", b"<html>",
        ContentType="text/html", ContentDisposition="inline", CacheControl="public",
    )  # fmt: skip
    given = await storage.copy_to_storage(
        "u/page", "s/given", content_type="image/png", content_disposition="inline"
    )
    default = await storage.copy_to_storage("u/page", "s/default", content_type="text/plain")

    for key, expected in (
        ("s/given", ("image/png", "inline")),
        ("s/default", ("text/plain", "attachment")),
    ):
        head = await s3_client.head_object(Bucket=buckets.storage, Key=key)
        assert (head["ContentType"], head.get("ContentDisposition")) == expected
        assert "CacheControl" not in head
    assert (given.content_type, given.content_disposition) == ("image/png", "inline")
    assert default.content_disposition == "attachment"


async def test_copy_with_a_wrong_etag_is_refused_and_copies_nothing(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """An upload replaced since it was checked is never what gets stored."""
    await put(s3_client, buckets.uploads, "u/e", b"new bytes")
    stale = '"' + hashlib.md5(b"old bytes").hexdigest() + '"'  # noqa: S324 - S3's ETag is MD5
    with pytest.raises(BadRequest) as raised:
        await storage.copy_to_storage("u/e", "s/e", source_etag=stale)
    assert raised.value.reason == "etag-mismatch"
    assert await keys(s3_client, buckets.storage) == []


async def test_copy_is_conditional_on_the_checked_etag(
    storage: Storage, s3_client: Any, buckets: BucketNames, s3_operations: list[S3Call]
) -> None:
    """CopyObject carries If-Match on the HEAD's ETag, closing the race between HEAD and copy.

    moto ignores x-amz-copy-source-if-match, so the request itself is what can be checked.
    """
    etag = await put(s3_client, buckets.uploads, "u/r", b"bytes")
    await storage.copy_to_storage("u/r", "s/r", source_etag=etag)
    [copy] = [c for c in s3_operations if c.operation == "CopyObject"]
    assert copy.params["CopySourceIfMatch"] == etag
    assert (copy.bucket, copy.source_bucket) == (buckets.storage, buckets.uploads)


async def test_copy_of_a_checked_upload_takes_its_head_and_asks_no_other(
    storage: Storage, s3_client: Any, buckets: BucketNames, s3_operations: list[S3Call]
) -> None:
    """Given the caller's HEAD, the copy is made If-Match its ETag with no second HEAD first;
    the fresh copy's HEAD still checks what landed."""
    etag = await put(s3_client, buckets.uploads, "u/c", b"checked bytes")
    checked = await storage.head(buckets.uploads, "u/c")
    assert checked is not None
    s3_operations.clear()
    copied = await storage.copy_to_storage("u/c", "s/c", checked=checked)
    assert [(c.operation, c.bucket) for c in s3_operations] == [
        ("CopyObject", buckets.storage),
        ("HeadObject", buckets.storage),
    ]
    assert s3_operations[0].params["CopySourceIfMatch"] == etag
    assert copied.size == len(b"checked bytes")
    assert await read(s3_client, buckets.storage, "s/c") == b"checked bytes"


async def test_a_copy_made_only_if_new_is_conditional_on_an_empty_destination(
    storage: Storage, s3_client: Any, buckets: BucketNames, s3_operations: list[S3Call]
) -> None:
    """only_new sends If-None-Match: * with CopyObject, so S3 refuses to replace a stored copy.

    moto ignores If-None-Match on CopyObject (it honours it on CompleteMultipartUpload, tested
    below), so the request itself is what can be checked here.
    """
    await put(s3_client, buckets.uploads, "u/n", b"bytes")
    await storage.copy_to_storage("u/n", "s/n", only_new=True)
    await storage.copy_to_storage("u/n", "s/plain")
    first, second = [c for c in s3_operations if c.operation == "CopyObject"]
    assert first.params["IfNoneMatch"] == "*"
    assert "IfNoneMatch" not in second.params


async def test_a_multipart_copy_made_only_if_new_never_replaces_what_is_there(
    s3_client: Any, buckets: BucketNames
) -> None:
    """A multipart copy onto a taken key is refused by S3 at CompleteMultipartUpload: the
    object there keeps its bytes, the caller learns what is there, no upload is left open."""
    storage = Storage(
        s3_client,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
        multipart_copy_threshold=1024,
        copy_part_size=5 * MiB,
    )
    await put(s3_client, buckets.uploads, "u/other", os.urandom(4096))
    await put(s3_client, buckets.storage, "s/taken", b"stored first", Metadata={"who": "first"})

    with pytest.raises(StorageKeyTaken) as raised:
        await storage.copy_to_storage("u/other", "s/taken", only_new=True)

    assert raised.value.existing.metadata == {"who": "first"}
    assert await read(s3_client, buckets.storage, "s/taken") == b"stored first"
    pending = await s3_client.list_multipart_uploads(Bucket=buckets.storage)
    assert pending.get("Uploads", []) == []


async def test_copy_of_a_missing_upload_is_not_found(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """A completion racing another one finds the upload gone: NotFound, which it handles."""
    with pytest.raises(NotFound) as raised:
        await storage.copy_to_storage("u/none", "s/none")
    assert raised.value.reason == "no-such-upload"
    assert await keys(s3_client, buckets.storage) == []


async def test_a_copy_whose_size_differs_from_the_source_is_removed_and_refused(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """If bytes change between HEAD and copy (a store ignoring If-Match), no wrong copy stays."""
    await put(s3_client, buckets.uploads, "u/s", b"checked: 20 bytes...")

    async def overwrite(model: Any, **_: Any) -> None:
        if model.name == "CopyObject":
            await put(s3_client, buckets.uploads, "u/s", b"swapped in after the check")

    s3_client.meta.events.register("before-parameter-build.s3", overwrite)
    with pytest.raises(StorageUnavailable) as raised:
        await storage.copy_to_storage("u/s", "s/s")
    assert raised.value.reason == "copy-mismatch"
    assert await keys(s3_client, buckets.storage) == []


async def test_multipart_copy_above_the_threshold_is_byte_identical(
    s3_client: Any, buckets: BucketNames, s3_operations: list[S3Call]
) -> None:
    """Objects above the threshold (5 GiB in production) are copied part by part, intact."""
    storage = Storage(
        s3_client,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
        multipart_copy_threshold=6 * MiB,
        copy_part_size=5 * MiB,
    )
    body = os.urandom(12 * MiB)
    await put(s3_client, buckets.uploads, "u/big", body, ContentType="video/mp4")
    s3_operations.clear()
    copied = await storage.copy_to_storage("u/big", "s/big", metadata={"upload-id": "m1"})
    assert ops(s3_operations).count("UploadPartCopy") == 3  # 5 + 5 + 2 MiB
    assert "CopyObject" not in ops(s3_operations)
    ranges = [c.params["CopySourceRange"] for c in s3_operations if c.operation == "UploadPartCopy"]
    assert ranges == [
        f"bytes=0-{5 * MiB - 1}",
        f"bytes={5 * MiB}-{10 * MiB - 1}",
        f"bytes={10 * MiB}-{12 * MiB - 1}",
    ]
    assert copied.size == len(body)
    assert (copied.content_type, copied.metadata) == ("video/mp4", {"upload-id": "m1"})
    stored = await read(s3_client, buckets.storage, "s/big")
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(body).hexdigest()


async def test_a_failed_multipart_copy_is_aborted(s3_client: Any, buckets: BucketNames) -> None:
    """A multipart copy that fails half way leaves no billed, unfinished upload behind."""
    storage = Storage(
        s3_client,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
        multipart_copy_threshold=6 * MiB,
        copy_part_size=5 * MiB,
    )
    await put(s3_client, buckets.uploads, "u/big", os.urandom(11 * MiB))
    seen = 0

    async def vanish(model: Any, **_: Any) -> None:
        nonlocal seen
        if model.name == "UploadPartCopy":
            seen += 1
            if seen == 2:
                await s3_client.delete_object(Bucket=buckets.uploads, Key="u/big")

    s3_client.meta.events.register("before-parameter-build.s3.UploadPartCopy", vanish)
    with pytest.raises(NotFound):
        await storage.copy_to_storage("u/big", "s/big")
    pending = await s3_client.list_multipart_uploads(Bucket=buckets.storage)
    assert pending.get("Uploads", []) == []
    assert await keys(s3_client, buckets.storage) == []


# ----------------------------------------------------------------------------- delete


async def test_delete_removes_and_is_idempotent(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """Deleting twice, or deleting what never existed, is fine: cleanup may run again."""
    await put(s3_client, buckets.uploads, "u/d", b"x")
    await storage.delete(buckets.uploads, "u/d")
    assert await keys(s3_client, buckets.uploads) == []
    await storage.delete(buckets.uploads, "u/d")
    await storage.delete(buckets.uploads, "u/never")


async def test_delete_in_a_missing_bucket_is_storage_unavailable(storage: Storage) -> None:
    """A misconfigured bucket is the gateway's fault (503), never a silent success."""
    with pytest.raises(StorageUnavailable) as raised:
        await storage.delete("no-such-bucket-for-this-test", "k")
    assert raised.value.reason == "no-such-bucket"


# ----------------------------------------------------------------------------- multipart


async def upload_parts(
    client: Any, bucket: str, key: str, multipart_id: str, bodies: list[bytes]
) -> list[tuple[int, str]]:
    """The browser's side: PUT each part, as a client with a presigned URL would."""
    parts = []
    for number, body in enumerate(bodies, start=1):
        answer = await client.upload_part(
            Bucket=bucket, Key=key, UploadId=multipart_id, PartNumber=number, Body=body
        )
        parts.append((number, str(answer["ETag"])))
    return parts


async def test_multipart_create_list_complete(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """A multipart upload is created, its parts listed with sizes, and completed into one."""
    multipart_id = await storage.create_multipart(
        "u/mp.bin", content_type="application/pdf", metadata={"qqfilename": "mp.pdf"}
    )
    bodies = [os.urandom(5 * MiB), os.urandom(1000)]
    sent = await upload_parts(s3_client, buckets.uploads, "u/mp.bin", multipart_id, bodies)
    listed = await storage.list_parts("u/mp.bin", multipart_id)
    assert listed == [
        Part(number=1, etag=sent[0][1], size=5 * MiB),
        Part(number=2, etag=sent[1][1], size=1000),
    ]
    await storage.complete_multipart("u/mp.bin", multipart_id, sent)
    found = await storage.head(buckets.uploads, "u/mp.bin")
    assert found is not None
    assert (found.size, found.content_type) == (5 * MiB + 1000, "application/pdf")
    assert found.metadata == {"qqfilename": "mp.pdf"}
    assert await read(s3_client, buckets.uploads, "u/mp.bin") == b"".join(bodies)


async def test_list_parts_reads_every_page(
    storage: Storage, s3_client: Any, buckets: BucketNames, s3_operations: list[S3Call]
) -> None:
    """ListParts answers in pages; an upload with more parts than a page is listed whole.

    S3's pages hold 1000 parts; the test asks moto for pages of 10 so 25 parts need three.
    """
    multipart_id = await storage.create_multipart("u/many", content_type="application/zip")
    bodies = [b"%d" % n for n in range(1, 26)]
    await upload_parts(s3_client, buckets.uploads, "u/many", multipart_id, bodies)

    def small_pages(params: dict[str, Any], **_: Any) -> None:
        params["MaxParts"] = 10

    s3_client.meta.events.register("before-parameter-build.s3.ListParts", small_pages)
    s3_operations.clear()
    listed = await storage.list_parts("u/many", multipart_id)
    assert [p.number for p in listed] == list(range(1, 26))
    assert [p.size for p in listed] == [len(b) for b in bodies]
    markers = [c.params["PartNumberMarker"] for c in s3_operations if c.operation == "ListParts"]
    assert markers == [0, 10, 20]


async def test_completing_with_a_wrong_etag_is_part_invalid(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """An ETag that no uploaded part has is the client's mistake: 400 part-invalid."""
    multipart_id = await storage.create_multipart("u/w", content_type="image/png")
    [(number, _)] = await upload_parts(s3_client, buckets.uploads, "u/w", multipart_id, [b"x"])
    with pytest.raises(BadRequest) as raised:
        await storage.complete_multipart("u/w", multipart_id, [(number, '"' + "0" * 32 + '"')])
    assert raised.value.reason == "part-invalid"


async def test_completing_with_a_small_part_is_part_too_small(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """Every part but the last needs 5 MiB: S3's EntityTooSmall becomes 400 part-too-small."""
    multipart_id = await storage.create_multipart("u/t", content_type="image/png")
    parts = await upload_parts(s3_client, buckets.uploads, "u/t", multipart_id, [b"a", b"b"])
    with pytest.raises(BadRequest) as raised:
        await storage.complete_multipart("u/t", multipart_id, parts)
    assert raised.value.reason == "part-too-small"


@pytest.mark.parametrize(
    "order",
    [[2, 1], [1, 1, 2], [], [0, 1]],
    ids=["descending", "duplicate", "empty", "zero"],
)
async def test_part_lists_s3_would_refuse_are_refused_before_completing(
    storage: Storage, s3_client: Any, buckets: BucketNames, order: list[int]
) -> None:
    """Parts out of order, repeated, missing or numbered 0 are refused before S3 sees them.

    moto assembles out-of-order parts in the order given; S3 refuses them. Checked here so that
    both answer the same, and the upload stays completable afterwards.
    """
    multipart_id = await storage.create_multipart("u/o", content_type="image/png")
    bodies = [os.urandom(5 * MiB), b"tail"]
    sent = dict(await upload_parts(s3_client, buckets.uploads, "u/o", multipart_id, bodies))
    claimed = [(n, sent.get(n, '"x"')) for n in order]
    with pytest.raises(BadRequest) as raised:
        await storage.complete_multipart("u/o", multipart_id, claimed)
    assert raised.value.reason in {"part-order-invalid", "no-parts"}
    assert await storage.head(buckets.uploads, "u/o") is None
    await storage.complete_multipart("u/o", multipart_id, sorted(sent.items()))
    assert await read(s3_client, buckets.uploads, "u/o") == b"".join(bodies)


async def test_an_unknown_upload_id_is_not_found(storage: Storage, buckets: BucketNames) -> None:
    """Listing the parts of an upload id S3 does not know is 404 no-such-upload.

    (Completing one is too on S3; moto answers that with a 500, so it is not tested here.)
    """
    with pytest.raises(NotFound) as listed:
        await storage.list_parts("u/x", "not-an-upload-id")
    assert listed.value.reason == "no-such-upload"


async def test_abort_drops_the_parts_and_is_idempotent(
    storage: Storage, s3_client: Any, buckets: BucketNames
) -> None:
    """An aborted upload is gone (its parts with it); aborting again is fine."""
    multipart_id = await storage.create_multipart("u/a", content_type="image/png")
    await upload_parts(s3_client, buckets.uploads, "u/a", multipart_id, [b"part"])
    await storage.abort_multipart("u/a", multipart_id)
    with pytest.raises(NotFound):
        await storage.list_parts("u/a", multipart_id)
    pending = await s3_client.list_multipart_uploads(Bucket=buckets.uploads)
    assert pending.get("Uploads", []) == []
    await storage.abort_multipart("u/a", multipart_id)


# ----------------------------------------------------------------------------- reachability


async def test_ping_answers_when_both_buckets_exist(storage: Storage) -> None:
    """Readiness passes against a working S3 with both buckets."""
    await storage.ping()


async def test_ping_fails_when_a_bucket_is_missing(s3_client: Any, buckets: BucketNames) -> None:
    """A gateway configured with a missing bucket is not ready (503), not 'not found'."""
    storage = Storage(s3_client, uploads_bucket=buckets.uploads, storage_bucket="st-not-created")
    with pytest.raises(StorageUnavailable) as raised:
        await storage.ping()
    assert raised.value.reason == "no-such-bucket"


def s3_config(endpoint: str, names: BucketNames) -> S3Config:
    return S3Config.model_validate(
        {
            "endpoint_url": endpoint,
            "access_key_id": "AKIDTEST",
            "secret_access_key": "test-secret",
            "uploads_bucket": names.uploads,
            "storage_bucket": names.storage,
        }
    )


async def test_an_unreachable_endpoint_is_storage_unavailable_quickly(
    bucket_names: BucketNames,
) -> None:
    """Nothing listens on port 1: a verb fails fast with 503, not a hang or a traceback."""
    config = s3_config("http://127.0.0.1:1", bucket_names)
    started = time.monotonic()
    async with open_s3_client(config, connect_timeout=1, read_timeout=1) as client:
        storage = Storage(
            client, uploads_bucket=bucket_names.uploads, storage_bucket=bucket_names.storage
        )
        with pytest.raises(StorageUnavailable) as raised:
            await storage.head(bucket_names.uploads, "k")
    assert raised.value.reason == "storage-unreachable"
    assert raised.value.status == 503
    assert time.monotonic() - started < 10


async def test_open_s3_client_uses_the_configured_endpoint_and_keys(
    s3_endpoint: str, s3_client: Any, buckets: BucketNames
) -> None:
    """The client built from the config reaches that endpoint, path style, with its own keys."""
    sent: list[tuple[str, str]] = []

    def record(request: Any, **_: Any) -> None:
        sent.append((request.url, request.headers["Authorization"].decode()))

    async with open_s3_client(s3_config(s3_endpoint, buckets)) as client:
        client.meta.events.register("before-send.s3", record)
        storage = Storage(client, uploads_bucket=buckets.uploads, storage_bucket=buckets.storage)
        await storage.ping()
        await put(client, buckets.uploads, "u/via-config", b"hello")
    assert await read(s3_client, buckets.uploads, "u/via-config") == b"hello"
    assert [url for url, _ in sent] == [
        f"{s3_endpoint}/{buckets.uploads}",
        f"{s3_endpoint}/{buckets.storage}",
        f"{s3_endpoint}/{buckets.uploads}/u/via-config",
    ]
    assert all(auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/") for _, auth in sent)
