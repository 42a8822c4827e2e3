"""gateway.buckets against moto's S3 server (and radosgw, where it lacks a feature): setup, doctor
and the least-privilege IAM policy."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.buckets import (
    LIFECYCLE_RULE_ID,
    BucketNames,
    SetupIncomplete,
    desired_cors,
    doctor,
    iam_policy,
    setup_buckets,
)
from gateway.problems import NotFound
from gateway.storage import Storage
from tests.support.s3 import REGION, TEST_ORIGINS, S3Call, S3Server

ORIGINS = list(TEST_ORIGINS)
MiB = 1024**2


async def cors_of(client: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        answer = await client.get_bucket_cors(Bucket=bucket)
    except client.exceptions.ClientError:
        return []
    return list(answer["CORSRules"])


async def lifecycle_of(client: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        answer = await client.get_bucket_lifecycle_configuration(Bucket=bucket)
    except client.exceptions.ClientError:
        return []
    return list(answer["Rules"])


# ----------------------------------------------------------------------------- setup


async def test_setup_creates_both_buckets_with_the_secure_setup(
    s3_client: Any, bucket_names: BucketNames
) -> None:
    """From nothing: both buckets, BPA and encryption on both, CORS and lifecycle on uploads."""
    changes = await setup_buckets(s3_client, bucket_names, origins=ORIGINS, region=REGION)
    up, st = bucket_names.uploads, bucket_names.storage
    assert changes[:2] == [f"uploads bucket {up}: created", f"storage bucket {st}: created"]
    assert len(changes) == 8  # created, BPA, encryption (x2); CORS, lifecycle
    for bucket in (up, st):
        block = await s3_client.get_public_access_block(Bucket=bucket)
        assert set(block["PublicAccessBlockConfiguration"].values()) == {True}
        assert len(block["PublicAccessBlockConfiguration"]) == 4
        encryption = await s3_client.get_bucket_encryption(Bucket=bucket)
        [rule] = encryption["ServerSideEncryptionConfiguration"]["Rules"]
        assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [cors] = await cors_of(s3_client, up)
    assert sorted(cors["AllowedOrigins"]) == sorted(ORIGINS)
    assert sorted(cors["AllowedMethods"]) == ["DELETE", "POST", "PUT"]
    assert cors["ExposeHeaders"] == ["ETag"]
    [rule] = await lifecycle_of(s3_client, up)
    assert rule["ID"] == LIFECYCLE_RULE_ID and rule["Status"] == "Enabled"
    assert rule["Expiration"] == {"Days": 1}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    # The storage bucket keeps its files: no expiry, and no browser ever writes it.
    assert await lifecycle_of(s3_client, st) == []
    assert await cors_of(s3_client, st) == []


@pytest.mark.parametrize("s3_server", ["radosgw"], indirect=True)
async def test_setup_makes_every_change_s3_accepts_and_names_each_refusal(
    s3_client: Any, bucket_names: BucketNames, s3_server: S3Server
) -> None:
    """radosgw 16 has no default-encryption API (InvalidArgument): setup still creates both
    buckets, blocks public access and sets CORS and lifecycle, then names the two refusals;
    doctor reports exactly those two afterwards. Stopping at the first refusal would leave the
    uploads bucket without CORS: no browser could upload."""
    up, st = bucket_names.uploads, bucket_names.storage
    with pytest.raises(SetupIncomplete) as raised:
        await setup_buckets(s3_client, bucket_names, origins=ORIGINS, region=REGION)
    left = [f"uploads bucket {up}: default encryption is off",
            f"storage bucket {st}: default encryption is off"]  # fmt: skip
    assert raised.value.failures == [f"{line}; S3 failed to correct it (InvalidArgument)"
                                     for line in left]  # fmt: skip
    assert raised.value.reason == "setup-incomplete"
    assert [change.split(": ", 1)[0] for change in raised.value.changes] == [
        f"uploads bucket {up}", f"storage bucket {st}",  # created
        f"uploads bucket {up}", f"uploads bucket {up}", f"uploads bucket {up}",  # BPA, CORS, LC
        f"storage bucket {st}",  # BPA
    ]  # fmt: skip
    [cors] = await cors_of(s3_client, up)
    assert sorted(cors["AllowedOrigins"]) == sorted(ORIGINS)
    [rule] = await lifecycle_of(s3_client, up)
    assert rule["ID"] == LIFECYCLE_RULE_ID
    for bucket in (up, st):
        block = await s3_client.get_public_access_block(Bucket=bucket)
        assert set(block["PublicAccessBlockConfiguration"].values()) == {True}
    assert await doctor(s3_client, bucket_names, origins=ORIGINS) == left


async def test_setup_twice_changes_nothing_the_second_time(
    s3_client: Any, buckets: BucketNames
) -> None:
    """setup is idempotent: on a correct setup it reports (and makes) no change."""
    assert await setup_buckets(s3_client, buckets, origins=ORIGINS, region=REGION) == []


async def test_setup_without_create_refuses_missing_buckets(
    s3_client: Any, bucket_names: BucketNames
) -> None:
    """With create=False a missing bucket is an error, and no bucket is made."""
    with pytest.raises(NotFound) as raised:
        await setup_buckets(s3_client, bucket_names, origins=ORIGINS, region=REGION, create=False)
    assert raised.value.reason == "no-such-bucket"
    assert await doctor(s3_client, bucket_names, origins=ORIGINS) == [
        f"uploads bucket {bucket_names.uploads}: does not exist",
        f"storage bucket {bucket_names.storage}: does not exist",
    ]


async def test_setup_creates_buckets_in_the_configured_region(
    s3_client: Any, bucket_names: BucketNames
) -> None:
    """Outside us-east-1 the bucket is created in the config's region, not S3's default."""
    await setup_buckets(s3_client, bucket_names, origins=ORIGINS, region="eu-west-1")
    location = await s3_client.get_bucket_location(Bucket=bucket_names.uploads)
    assert location["LocationConstraint"] == "eu-west-1"


async def test_setup_keeps_the_operators_other_lifecycle_rules(
    s3_client: Any, buckets: BucketNames
) -> None:
    """Correcting the lifecycle adds the gateway's rule without dropping anyone else's."""
    theirs = {
        "ID": "archive-logs",
        "Status": "Enabled",
        "Filter": {"Prefix": "logs/"},
        "Expiration": {"Days": 30},
    }
    await s3_client.put_bucket_lifecycle_configuration(
        Bucket=buckets.uploads, LifecycleConfiguration={"Rules": [theirs]}
    )
    assert len(await doctor(s3_client, buckets, origins=ORIGINS)) == 1
    await setup_buckets(s3_client, buckets, origins=ORIGINS, region=REGION)
    ids = sorted(rule["ID"] for rule in await lifecycle_of(s3_client, buckets.uploads))
    assert ids == ["archive-logs", LIFECYCLE_RULE_ID]
    assert await doctor(s3_client, buckets, origins=ORIGINS) == []


async def test_kms_encryption_is_accepted_and_kept(s3_client: Any, buckets: BucketNames) -> None:
    """SSE-KMS is stronger than SSE-S3: doctor accepts it and setup never downgrades it."""
    await s3_client.put_bucket_encryption(
        Bucket=buckets.storage,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    assert await doctor(s3_client, buckets, origins=ORIGINS) == []
    assert await setup_buckets(s3_client, buckets, origins=ORIGINS, region=REGION) == []


# ----------------------------------------------------------------------------- doctor


async def test_doctor_finds_nothing_on_a_fresh_setup(s3_client: Any, buckets: BucketNames) -> None:
    """A bucket pair that setup just made is exactly the secure setup."""
    assert await doctor(s3_client, buckets, origins=ORIGINS) == []


async def test_doctor_reports_origins_no_longer_configured(
    s3_client: Any, buckets: BucketNames
) -> None:
    """An origin removed from public_origins is drift: its pages could still write."""
    [line] = await doctor(s3_client, buckets, origins=["http://localhost"])
    assert "allows origins the gateway does not use: http://127.0.0.1" in line


async def test_doctor_and_setup_with_no_origins_want_no_cors(
    s3_client: Any, buckets: BucketNames
) -> None:
    """With public_origins empty no origin may upload: the CORS rules are drift, then removed."""
    [line] = await doctor(s3_client, buckets, origins=[])
    assert "public_origins is empty" in line
    [change] = await setup_buckets(s3_client, buckets, origins=[], region=REGION)
    assert "removed CORS rules" in change
    assert await cors_of(s3_client, buckets.uploads) == []


Drift = Callable[[Any, BucketNames], Awaitable[Any]]


def _cors(**rule: Any) -> Drift:
    base = desired_cors(ORIGINS)[0]
    return lambda c, b: c.put_bucket_cors(
        Bucket=b.uploads, CORSConfiguration={"CORSRules": [{**base, **rule}]}
    )


def _lifecycle(**rule: Any) -> Drift:
    base = {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": 1},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
    }
    return lambda c, b: c.put_bucket_lifecycle_configuration(
        Bucket=b.uploads, LifecycleConfiguration={"Rules": [{**base, **rule}]}
    )


def _no_lifecycle_abort() -> Drift:
    rule = {"ID": LIFECYCLE_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""}}
    return lambda c, b: c.put_bucket_lifecycle_configuration(
        Bucket=b.uploads, LifecycleConfiguration={"Rules": [{**rule, "Expiration": {"Days": 1}}]}
    )


def _public_access(bucket: str, **settings: bool) -> Drift:
    full = {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    return lambda c, b: c.put_public_access_block(
        Bucket=getattr(b, bucket), PublicAccessBlockConfiguration={**full, **settings}
    )


DRIFTS: dict[str, tuple[Drift, str, str]] = {
    # name: (how the test breaks it, which bucket's line, what the line must say)
    "cors-removed": (
        lambda c, b: c.delete_bucket_cors(Bucket=b.uploads),
        "uploads",
        "has no CORS rules",
    ),
    "cors-wrong-origin": (
        _cors(AllowedOrigins=["https://evil.example"]),
        "uploads",
        "allows origins the gateway does not use: https://evil.example",
    ),
    "cors-any-origin": (
        _cors(AllowedOrigins=["*"]),
        "uploads",
        "allows origins the gateway does not use: *",
    ),
    "cors-etag-hidden": (_cors(ExposeHeaders=[]), "uploads", "does not expose ETag"),
    "cors-extra-method": (
        _cors(AllowedMethods=["DELETE", "GET", "POST", "PUT"]),
        "uploads",
        "allows methods the gateway does not use: GET",
    ),
    "lifecycle-removed": (
        lambda c, b: c.delete_bucket_lifecycle(Bucket=b.uploads),
        "uploads",
        "no enabled lifecycle rule",
    ),
    "lifecycle-disabled": (_lifecycle(Status="Disabled"), "uploads", "no enabled lifecycle rule"),
    "lifecycle-too-long": (
        _lifecycle(Expiration={"Days": 30}),
        "uploads",
        "no enabled lifecycle rule",
    ),
    "lifecycle-one-prefix": (
        _lifecycle(Filter={"Prefix": "tmp/"}),
        "uploads",
        "no enabled lifecycle rule",
    ),
    "lifecycle-no-abort": (_no_lifecycle_abort(), "uploads", "no enabled lifecycle rule"),
    "uploads-public-access-off": (
        lambda c, b: c.delete_public_access_block(Bucket=b.uploads),
        "uploads",
        "Block Public Access is off",
    ),
    "storage-public-access-off": (
        lambda c, b: c.delete_public_access_block(Bucket=b.storage),
        "storage",
        "Block Public Access is off",
    ),
    "storage-public-policy-allowed": (
        _public_access("storage", BlockPublicPolicy=False),
        "storage",
        "Block Public Access is off (BlockPublicPolicy)",
    ),
    "uploads-encryption-removed": (
        lambda c, b: c.delete_bucket_encryption(Bucket=b.uploads),
        "uploads",
        "default encryption is off",
    ),
    "storage-encryption-removed": (
        lambda c, b: c.delete_bucket_encryption(Bucket=b.storage),
        "storage",
        "default encryption is off",
    ),
}


@pytest.mark.parametrize("name", list(DRIFTS))
async def test_doctor_reports_each_drift_and_setup_corrects_it(
    s3_client: Any, buckets: BucketNames, name: str
) -> None:
    """Each way a bucket can leave the secure setup is one doctor line; setup puts it back."""
    breaks, role, says = DRIFTS[name]
    await breaks(s3_client, buckets)
    [line] = await doctor(s3_client, buckets, origins=ORIGINS)
    assert line.startswith(f"{role} bucket {getattr(buckets, role)}: ")
    assert says in line
    [change] = await setup_buckets(s3_client, buckets, origins=ORIGINS, region=REGION)
    assert change.startswith(f"{role} bucket {getattr(buckets, role)}: ")
    assert await doctor(s3_client, buckets, origins=ORIGINS) == []


async def test_doctor_changes_nothing(s3_client: Any, buckets: BucketNames) -> None:
    """doctor only reads: every drift is still there after it ran."""
    for breaks, _, _ in DRIFTS.values():
        await breaks(s3_client, buckets)
    first = await doctor(s3_client, buckets, origins=ORIGINS)
    assert len(first) >= 5
    assert await doctor(s3_client, buckets, origins=ORIGINS) == first


# ------------------------- IAM policy (the policy itself: tests/unit/test_buckets.py)


def _granted(policy: dict[str, Any]) -> set[tuple[str, str]]:
    grants = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        resources = statement["Resource"]
        for resource in [resources] if isinstance(resources, str) else resources:
            grants |= {(action, resource) for action in statement["Action"]}
    return grants


def _needed(call: S3Call) -> set[tuple[str, str]]:
    """The IAM actions S3 authorizes one API call against (AWS's S3 authorization reference)."""
    objects = f"arn:aws:s3:::{call.bucket}/*"
    source = f"arn:aws:s3:::{call.source_bucket}/*"
    bucket = f"arn:aws:s3:::{call.bucket}"
    table: dict[str, set[tuple[str, str]]] = {
        "HeadObject": {("s3:GetObject", objects)},
        "GetObject": {("s3:GetObject", objects)},
        "PutObject": {("s3:PutObject", objects)},
        "CopyObject": {("s3:GetObject", source), ("s3:PutObject", objects)},
        "UploadPartCopy": {("s3:GetObject", source), ("s3:PutObject", objects)},
        "CreateMultipartUpload": {("s3:PutObject", objects)},
        "UploadPart": {("s3:PutObject", objects)},
        "CompleteMultipartUpload": {("s3:PutObject", objects)},
        "AbortMultipartUpload": {("s3:AbortMultipartUpload", objects)},
        "ListParts": {("s3:ListMultipartUploadParts", objects)},
        "DeleteObject": {("s3:DeleteObject", objects)},
        "HeadBucket": {("s3:ListBucket", bucket)},
        "ListObjectsV2": {("s3:ListBucket", bucket)},
    }
    needed = set(table[call.operation])
    if call.params.get("ACL"):
        needed.add(("s3:PutObjectAcl", objects))
    return needed


async def test_iam_policy_covers_exactly_the_calls_the_gateway_makes(
    s3_client: Any, buckets: BucketNames, s3_operations: list[S3Call]
) -> None:
    """Every Storage verb plus the browser's signed writes need exactly the policy's grants.

    The S3 calls are recorded as the client sends them, so a verb that starts calling a new
    operation, or a grant nothing uses, fails here.
    """
    storage = Storage(
        s3_client,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
        multipart_copy_threshold=6 * MiB,
        copy_part_size=5 * MiB,
    )
    used: set[str] = set()

    def verb(name: str) -> Any:
        used.add(name)
        return getattr(storage, name)

    # What browsers do with signatures the gateway makes: a Fine Uploader form POST (its policy
    # always has `acl`), and a chunked upload, one part of it aborted.
    await s3_client.put_object(Bucket=buckets.uploads, Key="u/small", Body=b"s", ACL="private")
    multipart_id = await verb("create_multipart")("u/chunked", content_type="video/mp4")
    part = await s3_client.upload_part(
        Bucket=buckets.uploads, Key="u/chunked", UploadId=multipart_id, PartNumber=1,
        Body=os.urandom(7 * MiB),
    )  # fmt: skip
    await verb("list_parts")("u/chunked", multipart_id)
    await verb("complete_multipart")("u/chunked", multipart_id, [(1, part["ETag"])])
    dropped = await storage.create_multipart("u/dropped", content_type="image/png")
    await verb("abort_multipart")("u/dropped", dropped)
    # The completion: check, sniff, hash, copy (plain and multipart), find, delete.
    await verb("ping")()
    await verb("head")(buckets.uploads, "u/small")
    await verb("read_prefix")(buckets.uploads, "u/small", 512)
    await verb("sha256")(buckets.uploads, "u/small")
    await verb("copy_to_storage")("u/small", "s/small")
    await storage.copy_to_storage("u/chunked", "s/chunked")
    await verb("list_keys")(buckets.storage, "s/")
    await verb("delete")(buckets.uploads, "u/small")
    await storage.delete(buckets.storage, "s/small")
    # The sweep: list the uploads bucket, its lease records there and owner/dead-letter records
    # in the storage bucket (conditional writes, reads).
    await verb("list_page")(buckets.uploads, start_after=".gateway0")
    await verb("put_record")(buckets.uploads, ".gateway/leases/x", b"{}")
    await storage.put_record(buckets.storage, ".gateway/owners/x/r", b"x")
    await verb("get_record")(buckets.uploads, ".gateway/leases/x")
    await storage.get_record(buckets.storage, ".gateway/owners/x/r")
    await storage.list_page(buckets.storage, prefix=".gateway/dead/")
    # A multipart copy that fails half way is aborted in the storage bucket.
    await s3_client.put_object(Bucket=buckets.uploads, Key="u/vanishing", Body=os.urandom(11 * MiB))

    async def vanish(model: Any, params: dict[str, Any], **_: Any) -> None:
        if params.get("PartNumber") == 2:
            await s3_client.delete_object(Bucket=buckets.uploads, Key="u/vanishing")

    s3_client.meta.events.register("before-parameter-build.s3.UploadPartCopy", vanish)
    with pytest.raises(NotFound):
        await storage.copy_to_storage("u/vanishing", "s/vanishing")

    public = {
        name
        for name, member in inspect.getmembers(Storage, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }
    assert used == public, "exercise every Storage verb here, so the policy covers its calls"
    needed = set().union(*(_needed(call) for call in s3_operations))
    assert needed == _granted(iam_policy(buckets))
