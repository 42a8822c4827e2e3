"""The secure bucket setup behind ``upload-gateway s3 setup | doctor | iam-policy``.

The uploads bucket takes browser writes: CORS for the app's origins only, a lifecycle rule that
expires what was never completed, no public access, default encryption. The storage bucket is
written only by the gateway's copy: no CORS, no public access, default encryption.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

LIFECYCLE_RULE_ID = "upload-gateway-expire-uploads"
LIFECYCLE_DAYS = 1

# What Fine Uploader and Uppy send to the bucket (shared/reference/fineuploader-protocol.md §6):
# the policy form POST, part PUTs, initiate/complete POSTs, aborts, and GET/HEAD for resumes.
CORS_METHODS = ["DELETE", "GET", "HEAD", "POST", "PUT"]
CORS_HEADERS = ["*"]
CORS_EXPOSE = ["ETag", "x-amz-request-id"]
CORS_MAX_AGE = 3000

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@dataclass(frozen=True)
class BucketNames:
    uploads: str
    storage: str


def desired_cors(origins: Sequence[str]) -> list[dict[str, Any]]:
    """The uploads bucket's one CORS rule: the app's origins, the verbs the clients use."""
    return [
        {
            "AllowedOrigins": sorted(o.rstrip("/") for o in origins),
            "AllowedMethods": list(CORS_METHODS),
            "AllowedHeaders": list(CORS_HEADERS),
            "ExposeHeaders": list(CORS_EXPOSE),
            "MaxAgeSeconds": CORS_MAX_AGE,
        }
    ]


def desired_lifecycle() -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": LIFECYCLE_DAYS},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": LIFECYCLE_DAYS},
    }


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


async def _exists(client: Any, bucket: str) -> bool:
    try:
        await client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise
    return True


async def _cors(client: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        answer = await client.get_bucket_cors(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "NoSuchCORSConfiguration":
            return []
        raise
    return list(answer.get("CORSRules", []))


async def _lifecycle_rule(client: Any, bucket: str) -> dict[str, Any] | None:
    try:
        answer = await client.get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "NoSuchLifecycleConfiguration":
            return None
        raise
    for rule in answer.get("Rules", []):
        if rule.get("ID") == LIFECYCLE_RULE_ID:
            return dict(rule)
    return None


async def _public_access(client: Any, bucket: str) -> dict[str, Any]:
    try:
        answer = await client.get_public_access_block(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "NoSuchPublicAccessBlockConfiguration":
            return {}
        raise
    return dict(answer.get("PublicAccessBlockConfiguration", {}))


async def _encrypted(client: Any, bucket: str) -> bool:
    try:
        answer = await client.get_bucket_encryption(Bucket=bucket)
    except ClientError as exc:
        if _code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
            return False
        raise
    rules = answer.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
    algorithms = [
        r.get("ApplyServerSideEncryptionByDefault", {}).get("SSEAlgorithm") for r in rules
    ]
    return "AES256" in algorithms or "aws:kms" in algorithms


def _cors_matches(actual: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> bool:
    def norm(rules: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [
            (
                tuple(sorted(r.get("AllowedOrigins", []))),
                tuple(sorted(r.get("AllowedMethods", []))),
                tuple(sorted(r.get("AllowedHeaders", []))),
                tuple(sorted(r.get("ExposeHeaders", []))),
                r.get("MaxAgeSeconds"),
            )
            for r in rules
        ]

    return norm(actual) == norm(wanted)


def _lifecycle_matches(rule: dict[str, Any] | None) -> bool:
    if rule is None or rule.get("Status") != "Enabled":
        return False
    expiration: object = rule.get("Expiration", {}).get("Days")
    abort: object = rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation")
    return expiration == LIFECYCLE_DAYS and abort == LIFECYCLE_DAYS


async def doctor(client: Any, names: BucketNames, *, origins: Sequence[str]) -> list[str]:
    """Every way the buckets differ from the secure setup; changes nothing."""
    drifts: list[str] = []
    for role, bucket in (("uploads", names.uploads), ("storage", names.storage)):
        if not await _exists(client, bucket):
            drifts.append(f"{role} bucket {bucket}: does not exist")
            continue
        if (await _public_access(client, bucket)) != PUBLIC_ACCESS_BLOCK:
            drifts.append(f"{role} bucket {bucket}: Block Public Access is not fully on")
        if not await _encrypted(client, bucket):
            drifts.append(f"{role} bucket {bucket}: default encryption is off")
    if await _exists(client, names.uploads):
        if not _cors_matches(await _cors(client, names.uploads), desired_cors(origins)):
            drifts.append(
                f"uploads bucket {names.uploads}: CORS rules differ from public_origins "
                f"({', '.join(sorted(origins)) or 'none'})"
            )
        if not _lifecycle_matches(await _lifecycle_rule(client, names.uploads)):
            drifts.append(
                f"uploads bucket {names.uploads}: no lifecycle rule expiring uploads and "
                f"aborting multipart uploads after {LIFECYCLE_DAYS} day"
            )
    if await _exists(client, names.storage) and await _cors(client, names.storage):
        drifts.append(f"storage bucket {names.storage}: has CORS rules; browsers never write it")
    return drifts


async def setup_buckets(
    client: Any,
    names: BucketNames,
    *,
    origins: Sequence[str],
    region: str,
    create: bool = True,
) -> list[str]:
    """Create or correct both buckets, idempotently; the lines say what changed."""
    changes: list[str] = []
    for role, bucket in (("uploads", names.uploads), ("storage", names.storage)):
        if not await _exists(client, bucket):
            if not create:
                raise LookupError(f"{role} bucket {bucket} does not exist")
            params: dict[str, Any] = {"Bucket": bucket}
            if region != "us-east-1":
                params["CreateBucketConfiguration"] = {"LocationConstraint": region}
            await client.create_bucket(**params)
            changes.append(f"{role} bucket {bucket}: created")
        if (await _public_access(client, bucket)) != PUBLIC_ACCESS_BLOCK:
            await client.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=dict(PUBLIC_ACCESS_BLOCK)
            )
            changes.append(f"{role} bucket {bucket}: turned on Block Public Access")
        if not await _encrypted(client, bucket):
            await client.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                },
            )
            changes.append(f"{role} bucket {bucket}: turned on default encryption (AES256)")
    wanted = desired_cors(origins)
    if not _cors_matches(await _cors(client, names.uploads), wanted):
        await client.put_bucket_cors(Bucket=names.uploads, CORSConfiguration={"CORSRules": wanted})
        changes.append(f"uploads bucket {names.uploads}: set CORS rules for {len(origins)} origins")
    if not _lifecycle_matches(await _lifecycle_rule(client, names.uploads)):
        await client.put_bucket_lifecycle_configuration(
            Bucket=names.uploads, LifecycleConfiguration={"Rules": [desired_lifecycle()]}
        )
        changes.append(
            f"uploads bucket {names.uploads}: set lifecycle rule (expire after "
            f"{LIFECYCLE_DAYS} day, abort incomplete multipart uploads after {LIFECYCLE_DAYS} day)"
        )
    if await _cors(client, names.storage):
        await client.delete_bucket_cors(Bucket=names.storage)
        changes.append(f"storage bucket {names.storage}: removed CORS rules")
    return changes


def iam_policy(names: BucketNames) -> dict[str, Any]:
    """The least-privilege policy for the gateway's signing credentials.

    Each action is one the gateway's code calls (gateway/storage.py) or signs for a browser:
    uploads/*: PutObject (form POST, presigned PUT, CreateMultipartUpload, UploadPart,
    CompleteMultipartUpload), GetObject (HEAD, ranged GET for sniffing, CopyObject's source),
    DeleteObject (after the copy), AbortMultipartUpload, ListMultipartUploadParts (ListParts).
    storage/*: PutObject (CopyObject's target), GetObject (HEAD of the copy), DeleteObject
    (upstream rejected the upload, or the user deleted it), AbortMultipartUpload (a failed
    multipart copy above 5 GiB). Both buckets: ListBucket, which
    HeadBucket (readiness) and list_keys (finding a stored copy) need.
    """
    uploads = f"arn:aws:s3:::{names.uploads}"
    storage = f"arn:aws:s3:::{names.storage}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UploadsObjects",
                "Effect": "Allow",
                "Action": sorted(
                    [
                        "s3:AbortMultipartUpload",
                        "s3:DeleteObject",
                        "s3:GetObject",
                        "s3:ListMultipartUploadParts",
                        "s3:PutObject",
                    ]
                ),
                "Resource": f"{uploads}/*",
            },
            {
                "Sid": "StorageObjects",
                "Effect": "Allow",
                "Action": [
                    "s3:AbortMultipartUpload",
                    "s3:DeleteObject",
                    "s3:GetObject",
                    "s3:PutObject",
                ],
                "Resource": f"{storage}/*",
            },
            {
                "Sid": "Buckets",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": [uploads, storage],
            },
        ],
    }
