"""The only module that talks to S3 for requests: a small class over an aiobotocore client.

It returns frozen dataclasses, never botocore dicts, and translates botocore's errors in one
place: a missing object is ``None`` (or NotFound where the client named it), an unreachable or
failing S3 is StorageUnavailable (503).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from .config import S3Config
from .problems import BadRequest, Forbidden, NotFound, StorageUnavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

MULTIPART_COPY_THRESHOLD = 5 * 1024**3  # S3's largest single CopyObject
COPY_PART_SIZE = 512 * 1024**2

_MISSING = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_CLIENT_FAULTS = {
    "NoSuchUpload": (NotFound, "no-such-upload", "no such multipart upload"),
    "InvalidPart": (BadRequest, "part-invalid", "a part was not uploaded with that ETag"),
    "InvalidPartOrder": (BadRequest, "part-order-invalid", "parts must be in ascending order"),
    "EntityTooSmall": (BadRequest, "part-too-small", "every part but the last needs 5 MiB"),
    "PreconditionFailed": (Forbidden, "etag-mismatch", "the object changed since it was checked"),
    "412": (Forbidden, "etag-mismatch", "the object changed since it was checked"),
}


@dataclass(frozen=True)
class StoredObject:
    """What HEAD says about an object."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    number: int
    etag: str
    size: int


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code", "")) or str(
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    )


@contextlib.contextmanager
def _mapped(action: str) -> Iterator[None]:
    """Translate botocore and transport errors into the gateway's problems."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _CLIENT_FAULTS:
            cls, reason, detail = _CLIENT_FAULTS[code]
            raise cls(detail, reason=reason) from exc
        if code in _MISSING:
            raise NotFound(f"S3 has no such object ({action})", reason="no-such-object") from exc
        raise StorageUnavailable(
            f"S3 failed to {action} ({code})", reason="storage-failed"
        ) from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        raise StorageUnavailable(
            f"S3 is unreachable ({action})", reason="storage-unreachable"
        ) from exc
    except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise StorageUnavailable(f"S3 failed to {action}", reason="storage-failed") from exc


class Storage:
    """Domain verbs over the uploads and storage buckets."""

    def __init__(
        self,
        client: S3Client,
        *,
        uploads_bucket: str,
        storage_bucket: str,
        multipart_copy_threshold: int = MULTIPART_COPY_THRESHOLD,
        copy_part_size: int = COPY_PART_SIZE,
    ) -> None:
        self.client = client
        self.uploads_bucket = uploads_bucket
        self.storage_bucket = storage_bucket
        self.multipart_copy_threshold = multipart_copy_threshold
        self.copy_part_size = copy_part_size

    async def head(self, bucket: str, key: str) -> StoredObject | None:
        """The object's size, ETag, type and metadata, or None when it does not exist."""
        try:
            with _mapped("read an object's headers"):
                answer = await self.client.head_object(Bucket=bucket, Key=key)
        except NotFound:
            return None
        return StoredObject(
            bucket=bucket,
            key=key,
            size=int(answer.get("ContentLength", 0)),
            etag=str(answer.get("ETag", "")),
            content_type=str(answer.get("ContentType", "")),
            metadata=dict(answer.get("Metadata", {})),
        )

    async def read_prefix(self, bucket: str, key: str, n: int) -> bytes:
        """The first ``n`` bytes (a ranged GET), for sniffing the type; b"" for an empty object."""
        if n <= 0:
            return b""
        head = await self.head(bucket, key)
        if head is None:
            raise NotFound("no such object", reason="no-such-upload")
        if head.size == 0:
            return b""
        with _mapped("read an object"):
            answer = await self.client.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{n - 1}")
            async with answer["Body"] as body:
                data: bytes = await body.read()
        return data[:n]

    async def sha256(self, bucket: str, key: str) -> str | None:
        """Hex SHA-256 of the object's bytes, streamed (never held whole); None when missing."""
        digest = hashlib.sha256()
        try:
            with _mapped("read an object"):
                answer = await self.client.get_object(Bucket=bucket, Key=key)
                async with answer["Body"] as body:
                    async for chunk in body.iter_chunks(1024 * 1024):
                        digest.update(chunk)
        except NotFound:
            return None
        return digest.hexdigest()

    async def copy_to_storage(
        self,
        src_key: str,
        dst_key: str,
        *,
        source_etag: str | None = None,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        """Copy an upload into the storage bucket and check the copy's size against the source."""
        source = await self.head(self.uploads_bucket, src_key)
        if source is None:
            raise NotFound("no such upload", reason="no-such-upload")
        if source_etag is not None and source.etag != source_etag:
            raise Forbidden("the object changed since it was checked", reason="etag-mismatch")
        extra: dict[str, Any] = {"MetadataDirective": "REPLACE", "Metadata": dict(metadata or {})}
        extra["ContentType"] = content_type or source.content_type or "application/octet-stream"
        copy_source = {"Bucket": self.uploads_bucket, "Key": src_key}
        if source.size > self.multipart_copy_threshold:
            await self._multipart_copy(copy_source, source, dst_key, extra)
        else:
            with _mapped("copy an object"):
                await self.client.copy_object(
                    Bucket=self.storage_bucket,
                    Key=dst_key,
                    CopySource=copy_source,  # type: ignore[arg-type]
                    CopySourceIfMatch=source.etag,
                    **extra,
                )
        copied = await self.head(self.storage_bucket, dst_key)
        if copied is None or copied.size != source.size:
            raise StorageUnavailable(
                "the copy in the storage bucket does not match the upload", reason="copy-mismatch"
            )
        return copied

    async def _multipart_copy(
        self,
        copy_source: dict[str, str],
        source: StoredObject,
        dst_key: str,
        extra: dict[str, Any],
    ) -> None:
        with _mapped("start a multipart copy"):
            created = await self.client.create_multipart_upload(
                Bucket=self.storage_bucket,
                Key=dst_key,
                ContentType=extra["ContentType"],
                Metadata=extra["Metadata"],
            )
        upload_id = created["UploadId"]
        parts = []
        try:
            for number, start in enumerate(range(0, source.size, self.copy_part_size), start=1):
                end = min(start + self.copy_part_size, source.size) - 1
                with _mapped("copy a part"):
                    answer = await self.client.upload_part_copy(
                        Bucket=self.storage_bucket,
                        Key=dst_key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource=copy_source,  # type: ignore[arg-type]
                        CopySourceIfMatch=source.etag,
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            with _mapped("finish a multipart copy"):
                await self.client.complete_multipart_upload(
                    Bucket=self.storage_bucket,
                    Key=dst_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
        except BaseException:
            with contextlib.suppress(StorageUnavailable, NotFound), _mapped("abort a copy"):
                await self.client.abort_multipart_upload(
                    Bucket=self.storage_bucket, Key=dst_key, UploadId=upload_id
                )
            raise

    async def delete(self, bucket: str, key: str) -> None:
        """Remove an object; a missing one is already gone."""
        try:
            with _mapped("delete an object"):
                await self.client.delete_object(Bucket=bucket, Key=key)
        except NotFound:
            return

    async def list_keys(self, bucket: str, prefix: str, limit: int = 100) -> list[str]:
        """Keys under a prefix (at most ``limit``)."""
        with _mapped("list objects"):
            answer = await self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
        return [str(item["Key"]) for item in answer.get("Contents", [])]

    async def create_multipart(
        self, key: str, *, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> str:
        """Start a multipart upload in the uploads bucket; its S3 upload id."""
        with _mapped("start a multipart upload"):
            answer = await self.client.create_multipart_upload(
                Bucket=self.uploads_bucket,
                Key=key,
                ContentType=content_type,
                Metadata=dict(metadata or {}),
            )
        return str(answer["UploadId"])

    async def list_parts(self, key: str, upload_id: str) -> list[Part]:
        """Every uploaded part of a multipart upload (all pages)."""
        parts: list[Part] = []
        marker = 0
        while True:
            with _mapped("list parts"):
                answer = await self.client.list_parts(
                    Bucket=self.uploads_bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumberMarker=marker,
                    MaxParts=1000,
                )
            for item in answer.get("Parts", []):
                parts.append(
                    Part(int(item["PartNumber"]), str(item["ETag"]), int(item.get("Size", 0)))
                )
            if not answer.get("IsTruncated"):
                return parts
            marker = int(answer.get("NextPartNumberMarker", parts[-1].number if parts else 0))

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        with _mapped("complete a multipart upload"):
            await self.client.complete_multipart_upload(
                Bucket=self.uploads_bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={
                    "Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]
                },
            )

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort a multipart upload; one already gone is fine."""
        try:
            with _mapped("abort a multipart upload"):
                await self.client.abort_multipart_upload(
                    Bucket=self.uploads_bucket, Key=key, UploadId=upload_id
                )
        except NotFound:
            return

    async def ping(self) -> None:
        """Both buckets answer (for /-/readyz)."""
        for bucket in (self.uploads_bucket, self.storage_bucket):
            with _mapped("reach the bucket"):
                await self.client.head_bucket(Bucket=bucket)


@contextlib.asynccontextmanager
async def open_s3_client(
    s3: S3Config, *, connect_timeout: float = 5, read_timeout: float = 30
) -> AsyncIterator[S3Client]:
    """An aiobotocore S3 client for the gateway's own calls, built from the config."""
    style = s3.addressing_style
    if style == "auto" and s3.endpoint_url is not None:
        # A custom endpoint (MinIO, moto, an IP) rarely resolves <bucket>.<host>: use paths.
        style = "path"
    config = AioConfig(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": style},
        signature_version="s3v4",
    )
    session = get_session()
    async with session.create_client(
        "s3",
        region_name=s3.region,
        endpoint_url=str(s3.endpoint_url).rstrip("/") if s3.endpoint_url else None,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key.get_secret_value(),
        config=config,
    ) as client:
        yield client
