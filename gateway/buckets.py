"""The secure bucket setup behind ``upload-gateway s3 setup | doctor | iam-policy``.

The uploads bucket takes browser writes: CORS for ``public_origins`` only, a lifecycle rule
that expires what was never completed and aborts abandoned multipart uploads, no public access,
default encryption. The storage bucket is written only by the gateway's copy: no public access,
default encryption. ``doctor`` lists every drift from that; ``setup`` corrects exactly those.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError

from .problems import NotFound, StorageUnavailable
from .storage import s3_errors

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CORSRuleTypeDef,
        LifecycleRuleTypeDef,
        PublicAccessBlockConfigurationTypeDef,
    )

LIFECYCLE_RULE_ID = "upload-gateway-expire-uploads"
LIFECYCLE_DAYS = 1
_DAY = 86400


def lifecycle_days(give_up_after: float) -> int:
    """The uploads bucket's expiry for a config's ``completion.give_up_after`` (seconds): a day
    past it, so the sweep always gives up (keeping a dead letter) before S3 removes an upload."""
    return max(LIFECYCLE_DAYS, math.ceil(give_up_after / _DAY) + 1)


ENCRYPTION: Final = "AES256"  # SSE-S3
# SSE-KMS is stronger, so doctor accepts it, and setup never replaces it; its key policy must
# then let the gateway's credentials use the key (kms:GenerateDataKey, kms:Decrypt).
_ACCEPTED_ENCRYPTION = frozenset({ENCRYPTION, "aws:kms", "aws:kms:dsse"})

# What browsers send to the uploads bucket (docs/protocols/: Fine Uploader's forms and chunks):
# POST for policy forms, initiate and complete; PUT for parts and presigned PUTs; DELETE for
# Fine Uploader's abort. Neither client GETs or HEADs the bucket (resume state lives in the
# browser; Uppy lists parts through the gateway), so those stay closed.
CORS_METHODS = ("DELETE", "POST", "PUT")
# "*": Fine Uploader sends one x-amz-meta-<param> per page-defined param, which no list can
# name; the signature, not CORS, decides what may be written. The Fetch standard never lets
# "*" cover Authorization, which chunked uploads send; S3 echoes the requested names back so
# "*" suffices there, but moto (the demo's S3) answers the rule literally.
CORS_HEADERS = ("*", "Authorization")
# Without ETag exposed, chunked uploads complete with null ETags and S3 answers InvalidPart.
CORS_EXPOSE = ("ETag",)
CORS_MAX_AGE = 3000

PUBLIC_ACCESS_SETTINGS = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)


@dataclass(frozen=True)
class BucketNames:
    """The uploads bucket (browsers write it) and the storage bucket (files end up there)."""

    uploads: str
    storage: str


@dataclass(frozen=True)
class _Drift:
    problem: str  # what doctor reports
    change: str  # what setup reports once it has corrected it
    fix: Callable[[], Awaitable[Any]]


class SetupIncomplete(StorageUnavailable):
    """S3 refused some corrections; every other one was made (``changes``).

    An S3 without one feature (Ceph's radosgw 16 has no default-encryption API) must not leave
    the buckets without the rest: without CORS no browser can upload at all."""

    def __init__(self, changes: list[str], failures: list[str]) -> None:
        super().__init__(
            "S3 refused part of the bucket setup: " + "; ".join(failures),
            reason="setup-incomplete",
        )
        self.changes = changes
        self.failures = failures


def desired_cors(origins: Sequence[str]) -> list[CORSRuleTypeDef]:
    """The uploads bucket's CORS rules: one rule for the app's origins; none without origins."""
    allowed = sorted({o.rstrip("/") for o in origins})
    if not allowed:
        return []
    return [
        {
            "AllowedOrigins": allowed,
            "AllowedMethods": list(CORS_METHODS),
            "AllowedHeaders": list(CORS_HEADERS),
            "ExposeHeaders": list(CORS_EXPOSE),
            "MaxAgeSeconds": CORS_MAX_AGE,
        }
    ]


def desired_lifecycle_rule(days: int = LIFECYCLE_DAYS) -> LifecycleRuleTypeDef:
    """Expire every upload and abort every multipart upload ``days`` after it started."""
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
    }


async def doctor(
    client: S3Client, names: BucketNames, *, origins: Sequence[str], give_up_after: float = 0
) -> list[str]:
    """Every way the buckets differ from the secure setup, one line each; changes nothing.

    ``give_up_after``: the config's ``completion.give_up_after``; the lifecycle rule must
    outlast it (``lifecycle_days``), or S3 would remove uploads the sweep still retries."""
    lines: list[str] = []
    missing: set[str] = set()
    for role, bucket in _roles(names):
        if not await _exists(client, bucket):
            lines.append(f"{role} bucket {bucket}: does not exist")
            missing.add(bucket)
    drifts = await _drifts(client, names, origins, skip=missing, give_up_after=give_up_after)
    return lines + [d.problem for d in drifts]


async def setup_buckets(
    client: S3Client,
    names: BucketNames,
    *,
    origins: Sequence[str],
    region: str,
    create: bool = True,
    give_up_after: float = 0,
) -> list[str]:
    """Create missing buckets (when ``create``) and correct every drift, idempotently.

    Returns one line per change; an empty list when everything was already right. A correction
    S3 refuses does not stop the others: SetupIncomplete then lists the changes made and, per
    refusal, the drift left and S3's answer.
    """
    changes: list[str] = []
    for role, bucket in _roles(names):
        if await _exists(client, bucket):
            continue
        if not create:
            raise NotFound(f"the {role} bucket {bucket} does not exist", reason="no-such-bucket")
        params: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            # us-east-1 is the one region S3 refuses as an explicit LocationConstraint.
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        with s3_errors(f"create the {role} bucket"):
            await client.create_bucket(**params)
        changes.append(f"{role} bucket {bucket}: created")
    failures: list[str] = []
    for drift in await _drifts(client, names, origins, skip=set(), give_up_after=give_up_after):
        try:
            with s3_errors("correct it"):
                await drift.fix()
        except StorageUnavailable as exc:
            if exc.reason == "storage-unreachable":
                raise
            failures.append(f"{drift.problem}; {exc.detail}")
            continue
        changes.append(drift.change)
    if failures:
        raise SetupIncomplete(changes, failures)
    return changes


def _roles(names: BucketNames) -> tuple[tuple[str, str], tuple[str, str]]:
    return (("uploads", names.uploads), ("storage", names.storage))


async def _drifts(
    client: S3Client,
    names: BucketNames,
    origins: Sequence[str],
    *,
    skip: set[str],
    give_up_after: float = 0,
) -> list[_Drift]:
    drifts: list[_Drift] = []
    for role, bucket in _roles(names):
        if bucket in skip:
            continue
        drifts += await _public_access_drift(client, role, bucket)
        drifts += await _encryption_drift(client, role, bucket)
        if role == "uploads":
            drifts += await _cors_drift(client, bucket, origins)
            drifts += await _lifecycle_drift(client, bucket, give_up_after)
    return drifts


async def _read(action: str, call: Awaitable[Any], *, absent: str) -> Any:
    """The answer of a Get* call, or None when S3 says the configuration is not set."""
    with s3_errors(action):
        try:
            return await call
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == absent:
                return None
            raise


async def _exists(client: S3Client, bucket: str) -> bool:
    try:
        with s3_errors("reach a bucket"):
            await client.head_bucket(Bucket=bucket)
    except NotFound:
        return False
    return True


async def _public_access_drift(client: S3Client, role: str, bucket: str) -> list[_Drift]:
    answer = await _read(
        "read Block Public Access",
        client.get_public_access_block(Bucket=bucket),
        absent="NoSuchPublicAccessBlockConfiguration",
    )
    actual = (answer or {}).get("PublicAccessBlockConfiguration", {})
    off = [name for name in PUBLIC_ACCESS_SETTINGS if actual.get(name) is not True]
    if not off:
        return []
    return [
        _Drift(
            f"{role} bucket {bucket}: Block Public Access is off ({', '.join(off)})",
            f"{role} bucket {bucket}: turned on Block Public Access",
            lambda: client.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=_all_public_access_blocked()
            ),
        )
    ]


def _all_public_access_blocked() -> PublicAccessBlockConfigurationTypeDef:
    return {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


async def _encryption_drift(client: S3Client, role: str, bucket: str) -> list[_Drift]:
    answer = await _read(
        "read default encryption",
        client.get_bucket_encryption(Bucket=bucket),
        absent="ServerSideEncryptionConfigurationNotFoundError",
    )
    rules = (answer or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    algorithms = {
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules
    }
    if algorithms & _ACCEPTED_ENCRYPTION:
        return []
    return [
        _Drift(
            f"{role} bucket {bucket}: default encryption is off",
            f"{role} bucket {bucket}: turned on default encryption ({ENCRYPTION})",
            lambda: client.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": ENCRYPTION}}]
                },
            ),
        )
    ]


def _cors_key(rules: Sequence[Any]) -> list[tuple[Any, ...]]:
    """CORS rules without IDs or order, as comparable values (S3 keeps the order it was given)."""
    return sorted(
        (
            tuple(sorted(r.get("AllowedOrigins", []))),
            tuple(sorted(m.upper() for m in r.get("AllowedMethods", []))),
            tuple(sorted(h.lower() for h in r.get("AllowedHeaders", []))),
            tuple(sorted(h.lower() for h in r.get("ExposeHeaders", []))),
            r.get("MaxAgeSeconds"),
        )
        for r in rules
    )


def _cors_differences(actual: Sequence[Any], wanted: Sequence[Any]) -> str:
    """What a doctor line says about CORS rules that are not the wanted ones."""
    if not actual:
        return "has no CORS rules: browsers cannot upload to it"
    if not wanted:
        return "has CORS rules, but public_origins is empty: no origin should be allowed"

    def union(field: str, rules: Sequence[Any]) -> set[str]:
        return {value for rule in rules for value in rule.get(field, [])}

    notes: list[str] = []
    for field, what in (("AllowedOrigins", "origins"), ("AllowedMethods", "methods")):
        extra = union(field, actual) - union(field, wanted)
        missing = union(field, wanted) - union(field, actual)
        if extra:
            notes.append(f"allows {what} the gateway does not use: {', '.join(sorted(extra))}")
        if missing:
            notes.append(f"does not allow {what} {', '.join(sorted(missing))}")
    if "etag" not in {h.lower() for h in union("ExposeHeaders", actual)}:
        notes.append("does not expose ETag: chunked uploads fail with InvalidPart")
    return "CORS rules differ from the gateway's: " + (
        "; ".join(notes) or "headers, max age or the number of rules"
    )


async def _cors_drift(client: S3Client, bucket: str, origins: Sequence[str]) -> list[_Drift]:
    answer = await _read(
        "read CORS rules", client.get_bucket_cors(Bucket=bucket), absent="NoSuchCORSConfiguration"
    )
    actual = (answer or {}).get("CORSRules", [])
    wanted = desired_cors(origins)
    if _cors_key(actual) == _cors_key(wanted):
        return []
    if wanted:
        change = (
            f"uploads bucket {bucket}: set CORS rules for {', '.join(wanted[0]['AllowedOrigins'])}"
        )

        def fix() -> Awaitable[Any]:
            return client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": wanted})
    else:
        change = f"uploads bucket {bucket}: removed CORS rules (public_origins is empty)"

        def fix() -> Awaitable[Any]:
            return client.delete_bucket_cors(Bucket=bucket)

    return [_Drift(f"uploads bucket {bucket}: {_cors_differences(actual, wanted)}", change, fix)]


def _whole_bucket(rule: Any) -> bool:
    """Whether a lifecycle rule applies to every object (no prefix, tag or size filter)."""
    filters = rule.get("Filter")
    if filters is None:
        return not rule.get("Prefix")  # the legacy top-level Prefix
    return set(filters) <= {"Prefix"} and not filters.get("Prefix")


def _cleans_up(rule: Any, give_up_after: float) -> bool:
    """Whether a rule expires uploads within ``lifecycle_days`` but only after the sweep gives
    up on them (a dead letter keeps its bytes in the storage bucket by then)."""
    days = lifecycle_days(give_up_after)
    expires = rule.get("Expiration", {}).get("Days")
    aborts = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
    return (
        rule.get("Status") == "Enabled"
        and _whole_bucket(rule)
        and isinstance(expires, int)
        and isinstance(aborts, int)
        and give_up_after < expires * _DAY
        and expires <= days
        and aborts <= days
    )


async def _lifecycle_drift(client: S3Client, bucket: str, give_up_after: float) -> list[_Drift]:
    answer = await _read(
        "read lifecycle rules",
        client.get_bucket_lifecycle_configuration(Bucket=bucket),
        absent="NoSuchLifecycleConfiguration",
    )
    rules = list((answer or {}).get("Rules", []))
    if any(_cleans_up(rule, give_up_after) for rule in rules):
        return []
    days = lifecycle_days(give_up_after)
    # The operator's other rules stay; only the gateway's own is replaced.
    kept = [rule for rule in rules if rule.get("ID") != LIFECYCLE_RULE_ID]
    return [
        _Drift(
            f"uploads bucket {bucket}: no enabled lifecycle rule for the whole bucket that expires "
            f"uploads and aborts incomplete multipart uploads after {_days(days)}, longer "
            f"than completion.give_up_after",
            f"uploads bucket {bucket}: set lifecycle rule {LIFECYCLE_RULE_ID} (expire uploads and "
            f"abort incomplete multipart uploads after {_days(days)})",
            lambda: client.put_bucket_lifecycle_configuration(
                Bucket=bucket,
                LifecycleConfiguration={"Rules": [*kept, desired_lifecycle_rule(days)]},
            ),
        )
    ]


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"


# Every S3 action the gateway's credentials need, by bucket, with who needs it. The gateway
# signs for browsers with the same credentials it calls S3 with, so both count.
_UPLOADS_OBJECT_ACTIONS = frozenset(
    {
        # Browsers: POST-policy forms, presigned PUTs, and multipart initiate, part and complete.
        # Storage.create_multipart and complete_multipart (CreateMultipartUpload, Complete...).
        "s3:PutObject",
        # Fine Uploader's policies always carry an `acl` field (gateway/rules requires it), and S3
        # authorizes a write that sets an ACL as s3:PutObjectAcl too.
        "s3:PutObjectAcl",
        # Storage.head, read_prefix, sha256 (HeadObject, GetObject), and the source of
        # copy_to_storage (CopyObject, UploadPartCopy).
        "s3:GetObject",
        # Storage.delete of the original after the copy, and of refused uploads.
        "s3:DeleteObject",
        # Storage.abort_multipart, and Fine Uploader's DELETE ?uploadId= abort.
        "s3:AbortMultipartUpload",
        # Storage.list_parts (ListParts).
        "s3:ListMultipartUploadParts",
    }
)
_STORAGE_OBJECT_ACTIONS = frozenset(
    {
        # Storage.copy_to_storage: CopyObject's target, and CreateMultipartUpload, UploadPartCopy
        # and CompleteMultipartUpload of a multipart copy.
        "s3:PutObject",
        # Storage.head of the copy, and of an earlier attempt's copy (HeadObject).
        "s3:GetObject",
        # Storage.delete of a copy the upstream refused, or a stored file the user deleted.
        "s3:DeleteObject",
        # The cleanup of a multipart copy that failed half way.
        "s3:AbortMultipartUpload",
    }
)
# Storage.ping (HeadBucket) and list_keys (ListObjectsV2) need s3:ListBucket; without it S3
# also answers HEAD of a missing key with 403 instead of 404, and head() could not say None.
_BUCKET_ACTIONS = frozenset({"s3:ListBucket"})


def iam_policy(names: BucketNames) -> dict[str, Any]:
    """The least-privilege IAM policy for the gateway's credentials (``s3 iam-policy``).

    Exactly the actions its code calls or signs for browsers, each on the one bucket it needs.
    """
    uploads, storage = f"arn:aws:s3:::{names.uploads}", f"arn:aws:s3:::{names.storage}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UploadsBucketObjects",
                "Effect": "Allow",
                "Action": sorted(_UPLOADS_OBJECT_ACTIONS),
                "Resource": f"{uploads}/*",
            },
            {
                "Sid": "StorageBucketObjects",
                "Effect": "Allow",
                "Action": sorted(_STORAGE_OBJECT_ACTIONS),
                "Resource": f"{storage}/*",
            },
            {
                "Sid": "Buckets",
                "Effect": "Allow",
                "Action": sorted(_BUCKET_ACTIONS),
                "Resource": [uploads, storage],
            },
        ],
    }
