"""The only module that talks to S3 for requests: a small class over an aiobotocore client.

It returns frozen dataclasses, never botocore dicts, and translates botocore's errors in one
place (``s3_errors``): a missing thing the client named is NotFound, a request S3 refuses as
malformed is BadRequest, and an unreachable, refusing or failing S3 is StorageUnavailable (503).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from .config import S3Config
from .problems import BadRequest, GatewayError, NotFound, StorageUnavailable
from .values import Part as Part
from .values import StoredObject as StoredObject

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CompleteMultipartUploadRequestTypeDef,
        CopyObjectRequestTypeDef,
        CopySourceTypeDef,
    )

MULTIPART_COPY_THRESHOLD = 5 * 1024**3  # CopyObject's limit: larger objects need UploadPartCopy
COPY_PART_SIZE = 512 * 1024**2
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
_LIST_PARTS_PAGE = 1000  # S3's largest ListParts page

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_DENIED = frozenset({"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})
# Errors that are the client's fault: what it named does not exist or its parts are wrong.
# PreconditionFailed is 400, not 412 or 403: the client's claim about its own upload (the
# ETag it was given) is wrong, the same answer gateway/completion gives when it notices first.
_CLIENT_FAULTS: Mapping[str, tuple[type[GatewayError], str, str]] = MappingProxyType(
    {
        "NoSuchUpload": (NotFound, "no-such-upload", "no such multipart upload"),
        "InvalidPart": (BadRequest, "part-invalid", "a part was not uploaded with that ETag"),
        "InvalidPartOrder": (BadRequest, "part-order-invalid", "parts must be in ascending order"),
        "EntityTooSmall": (BadRequest, "part-too-small", "every part but the last needs 5 MiB"),
        "PreconditionFailed": (
            BadRequest,
            "etag-mismatch",
            "the upload changed since it was checked",
        ),
        "412": (BadRequest, "etag-mismatch", "the upload changed since it was checked"),
    }
)
# What S3 answers a write made If-None-Match: * when the key is taken (412), or being written
# by a concurrent conditional request (409).
_TAKEN = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


@dataclass(frozen=True)
class Listed:
    """One object of a bucket listing: its key, ETag, size and when it was written (UTC)."""

    key: str
    etag: str
    size: int
    last_modified: datetime


class RecordConflict(StorageUnavailable):
    """A conditional write of a record lost: another writer created or changed it first."""

    def __init__(self) -> None:
        super().__init__("the record changed meanwhile", reason="record-conflict")


class StorageKeyTaken(StorageUnavailable):
    """A copy made only-if-absent found its destination taken; ``existing`` is what is there."""

    def __init__(self, existing: StoredObject) -> None:
        super().__init__("the storage key already holds an object", reason="storage-key-taken")
        self.existing = existing


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
    return str(error.get("Code", "")) or str(status)


def _same_etag(a: str, b: str) -> bool:
    # S3 quotes ETags; clients pass them on with or without the quotes.
    return a.strip().strip('"') == b.strip().strip('"')


@contextlib.contextmanager
def s3_errors(action: str) -> Iterator[None]:
    """Translate botocore and transport errors into the gateway's problems (``action`` names it).

    For every gateway module that calls S3 (this one and ``buckets``), so no botocore error or
    response dict escapes them.
    """
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in _CLIENT_FAULTS:
            cls, reason, detail = _CLIENT_FAULTS[code]
            raise cls(detail, reason=reason) from exc
        if code in _MISSING:
            raise NotFound(f"S3 has no such object ({action})", reason="no-such-object") from exc
        if code == "NoSuchBucket":
            # The config names a bucket that is not there: the gateway's fault, not the client's.
            raise StorageUnavailable(
                f"S3 has no such bucket ({action})", reason="no-such-bucket"
            ) from exc
        if code in _DENIED:
            raise StorageUnavailable(
                f"S3 refused to {action} ({code})", reason="storage-denied"
            ) from exc
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
    """Domain verbs over the uploads bucket (browsers write it) and the storage bucket."""

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
            with s3_errors("read an object's headers"):
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
            content_disposition=answer.get("ContentDisposition"),
        )

    async def read_prefix(
        self, bucket: str, key: str, n: int, *, etag: str | None = None
    ) -> bytes:
        """The first ``n`` bytes (one ranged GET), to sniff the type; b"" for an empty object.

        With ``etag``, only of that version (If-Match): otherwise 400 ``etag-mismatch``, so what
        is sniffed is what a copy made If-Match the same ETag takes, whatever is written between.
        """
        if n <= 0:
            return b""
        with s3_errors("read an object"):
            try:
                if etag:
                    answer = await self.client.get_object(
                        Bucket=bucket, Key=key, Range=f"bytes=0-{n - 1}", IfMatch=etag
                    )
                else:
                    answer = await self.client.get_object(
                        Bucket=bucket, Key=key, Range=f"bytes=0-{n - 1}"
                    )
            except ClientError as exc:
                # S3 answers 416 InvalidRange to any range of an empty object.
                if _code(exc) == "InvalidRange":
                    return b""
                raise
            async with answer["Body"] as body:
                data: bytes = await body.read()
        return data[:n]

    async def sha256(self, bucket: str, key: str) -> str | None:
        """Hex SHA-256 of the object's bytes, streamed (never held whole); None when missing."""
        digest = hashlib.sha256()
        try:
            with s3_errors("read an object"):
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
        checked: StoredObject | None = None,
        content_type: str | None = None,
        content_disposition: str = "attachment",
        metadata: Mapping[str, str] | None = None,
        only_new: bool = False,
    ) -> StoredObject:
        """Copy an upload into the storage bucket; the copy's HEAD, checked against the source.

        ``source_etag`` is the version the caller checked: any other is refused (etag-mismatch),
        also when it changes between this HEAD and the copy (If-Match). ``checked`` is the
        caller's own HEAD of the upload, taken as the source without a second one (the copy is
        If-Match its ETag). ``metadata`` None keeps the upload's own. The copy's headers are
        replaced, never copied: it has ``content_type`` and ``content_disposition``, whatever
        the uploader set on the upload. Above
        ``multipart_copy_threshold`` the copy goes part by part.

        ``only_new``: the copy is written If-None-Match ``*`` (CopyObject, or the multipart
        copy's CompleteMultipartUpload), so it never replaces an object already at ``dst_key``;
        S3 refusing it for that raises ``StorageKeyTaken`` with what is there. A store that
        ignores the condition (moto ignores it on CopyObject) leaves only the caller's own
        check before the copy, which a concurrent writer can race.
        """
        source = checked if checked is not None else await self.head(self.uploads_bucket, src_key)
        if source is None:
            raise NotFound("no such upload: it was never sent, or is gone", reason="no-such-upload")
        if source_etag is not None and not _same_etag(source.etag, source_etag):
            raise BadRequest("the upload changed since it was checked", reason="etag-mismatch")
        kept = dict(source.metadata if metadata is None else metadata)
        media = content_type or source.content_type or "application/octet-stream"
        try:
            if source.size > self.multipart_copy_threshold:
                await self._multipart_copy(
                    source, dst_key, (media, content_disposition), kept, only_new=only_new
                )
            else:
                request: CopyObjectRequestTypeDef = {
                    "Bucket": self.storage_bucket,
                    "Key": dst_key,
                    "CopySource": self._source(src_key),
                    "CopySourceIfMatch": source.etag,
                    "MetadataDirective": "REPLACE",
                    "ContentType": media,
                    "ContentDisposition": content_disposition,
                    "Metadata": kept,
                }
                if only_new:
                    request["IfNoneMatch"] = "*"
                with s3_errors("copy an object"):
                    await self.client.copy_object(**request)
        except GatewayError as exc:
            cause = exc.__cause__
            if only_new and isinstance(cause, ClientError) and _code(cause) in _TAKEN:
                # 412 is also what a changed source gets (CopySourceIfMatch): only a HEAD of
                # the destination tells the two apart, and it is needed only on this failure.
                existing = await self.head(self.storage_bucket, dst_key)
                if existing is not None:
                    raise StorageKeyTaken(existing) from exc
            raise
        copied = await self.head(self.storage_bucket, dst_key)
        if copied is None or copied.size != source.size:
            # Only a store that ignores If-Match lets this happen; never leave a wrong copy.
            with contextlib.suppress(GatewayError):
                await self.delete(self.storage_bucket, dst_key)
            raise StorageUnavailable(
                "the copy in the storage bucket does not match the upload", reason="copy-mismatch"
            )
        return copied

    def _source(self, key: str) -> CopySourceTypeDef:
        return {"Bucket": self.uploads_bucket, "Key": key}

    async def _multipart_copy(
        self,
        source: StoredObject,
        dst_key: str,
        served_as: tuple[str, str],
        metadata: dict[str, str],
        *,
        only_new: bool,
    ) -> None:
        # Parts grow past copy_part_size when the object would otherwise need over 10,000.
        part_size = max(self.copy_part_size, math.ceil(source.size / MAX_PARTS))
        with s3_errors("start a multipart copy"):
            created = await self.client.create_multipart_upload(
                Bucket=self.storage_bucket,
                Key=dst_key,
                ContentType=served_as[0],
                ContentDisposition=served_as[1],
                Metadata=metadata,
            )
        multipart_id = created["UploadId"]
        parts: list[CompletedPartTypeDef] = []
        try:
            for number, start in enumerate(range(0, source.size, part_size), start=1):
                end = min(start + part_size, source.size) - 1
                with s3_errors("copy a part"):
                    answer = await self.client.upload_part_copy(
                        Bucket=self.storage_bucket,
                        Key=dst_key,
                        UploadId=multipart_id,
                        PartNumber=number,
                        CopySource=self._source(source.key),
                        CopySourceIfMatch=source.etag,
                        CopySourceRange=f"bytes={start}-{end}",
                    )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            finish: CompleteMultipartUploadRequestTypeDef = {
                "Bucket": self.storage_bucket,
                "Key": dst_key,
                "UploadId": multipart_id,
                "MultipartUpload": {"Parts": parts},
            }
            if only_new:
                finish["IfNoneMatch"] = "*"
            with s3_errors("finish a multipart copy"):
                await self.client.complete_multipart_upload(**finish)
        except BaseException:
            # An unfinished multipart upload is billed until aborted; the storage bucket has
            # no lifecycle rule to clean it up.
            with contextlib.suppress(GatewayError), s3_errors("abort a multipart copy"):
                await self.client.abort_multipart_upload(
                    Bucket=self.storage_bucket, Key=dst_key, UploadId=multipart_id
                )
            raise

    async def delete(self, bucket: str, key: str) -> None:
        """Remove an object; one already gone is fine."""
        try:
            with s3_errors("delete an object"):
                await self.client.delete_object(Bucket=bucket, Key=key)
        except NotFound:
            return

    async def list_keys(self, bucket: str, prefix: str, limit: int = 100) -> list[str]:
        """Keys under a prefix, at most ``limit`` (one page: callers look for a few)."""
        with s3_errors("list objects"):
            answer = await self.client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=limit)
        return [str(item["Key"]) for item in answer.get("Contents", [])]

    async def list_page(
        self,
        bucket: str,
        *,
        prefix: str = "",
        start_after: str = "",
        token: str | None = None,
        limit: int = 1000,
    ) -> tuple[list[Listed], str | None]:
        """One page of a listing (keys in UTF-8 byte order) and the token of the next, if any."""
        request: dict[str, object] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": limit}
        if token is not None:
            request["ContinuationToken"] = token
        elif start_after:
            request["StartAfter"] = start_after
        with s3_errors("list objects"):
            answer = await self.client.list_objects_v2(**request)  # type: ignore[arg-type]
        items = [
            Listed(
                key=str(item["Key"]),
                etag=str(item.get("ETag", "")),
                size=int(item.get("Size", 0)),
                last_modified=item["LastModified"],
            )
            for item in answer.get("Contents", [])
        ]
        following = answer.get("NextContinuationToken") if answer.get("IsTruncated") else None
        return items, following

    async def get_record(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        """A small record the gateway wrote (its bytes and ETag), or None when there is none."""
        try:
            with s3_errors("read a record"):
                answer = await self.client.get_object(Bucket=bucket, Key=key)
                async with answer["Body"] as body:
                    data: bytes = await body.read()
        except NotFound:
            return None
        return data, str(answer.get("ETag", ""))

    async def put_record(
        self, bucket: str, key: str, body: bytes, *, if_match: str | None = None
    ) -> str:
        """Write a record only if absent (``if_match`` None: If-None-Match ``*``) or only over
        the version with that ETag; ``RecordConflict`` when another writer came first."""
        try:
            with s3_errors("write a record"):
                if if_match is None:
                    answer = await self.client.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=body,
                        ContentType="application/octet-stream",
                        IfNoneMatch="*",
                    )
                else:
                    answer = await self.client.put_object(
                        Bucket=bucket,
                        Key=key,
                        Body=body,
                        ContentType="application/octet-stream",
                        IfMatch=if_match,
                    )
        except GatewayError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _code(cause) in _TAKEN:
                raise RecordConflict from exc
            if isinstance(exc, NotFound) and if_match is not None:
                # If-Match on a record deleted meanwhile: S3 answers 404.
                raise RecordConflict from exc
            raise
        return str(answer.get("ETag", ""))

    async def create_multipart(
        self, key: str, *, content_type: str, metadata: Mapping[str, str] | None = None
    ) -> str:
        """Start a multipart upload in the uploads bucket; its multipart id (S3's UploadId)."""
        with s3_errors("start a multipart upload"):
            answer = await self.client.create_multipart_upload(
                Bucket=self.uploads_bucket,
                Key=key,
                ContentType=content_type,
                Metadata=dict(metadata or {}),
            )
        return str(answer["UploadId"])

    async def list_parts(self, key: str, multipart_id: str) -> list[Part]:
        """Every uploaded part of a multipart upload, all pages; NotFound when there is no such."""
        parts: list[Part] = []
        marker = 0
        while True:
            with s3_errors("list parts"):
                answer = await self.client.list_parts(
                    Bucket=self.uploads_bucket,
                    Key=key,
                    UploadId=multipart_id,
                    PartNumberMarker=marker,
                    MaxParts=_LIST_PARTS_PAGE,
                )
            page = [
                Part(int(item["PartNumber"]), str(item["ETag"]), int(item.get("Size", 0)))
                for item in answer.get("Parts", [])
            ]
            parts += page
            if not answer.get("IsTruncated") or not page:
                return parts
            marker = int(answer.get("NextPartNumberMarker") or page[-1].number)

    async def complete_multipart(
        self, key: str, multipart_id: str, parts: Sequence[tuple[int, str]]
    ) -> None:
        """Assemble the upload from ``(part number, ETag)`` pairs, in ascending order."""
        numbers = [number for number, _ in parts]
        if not numbers:
            raise BadRequest("a multipart upload needs at least one part", reason="no-parts")
        # S3 refuses these (InvalidPartOrder, InvalidArgument); some S3 servers (moto) instead
        # assemble the parts in the order given. Checked here so every store answers alike.
        if numbers != sorted(set(numbers)) or not 1 <= numbers[0] <= numbers[-1] <= MAX_PARTS:
            raise BadRequest(
                "part numbers must be unique, ascending, from 1 to 10000",
                reason="part-order-invalid",
            )
        with s3_errors("complete a multipart upload"):
            await self.client.complete_multipart_upload(
                Bucket=self.uploads_bucket,
                Key=key,
                UploadId=multipart_id,
                MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etag} for n, etag in parts]},
            )

    async def abort_multipart(self, key: str, multipart_id: str) -> None:
        """Abort a multipart upload and drop its parts; one already gone is fine."""
        try:
            with s3_errors("abort a multipart upload"):
                await self.client.abort_multipart_upload(
                    Bucket=self.uploads_bucket, Key=key, UploadId=multipart_id
                )
        except NotFound:
            return

    async def ping(self) -> None:
        """Both buckets answer (for /-/readyz); StorageUnavailable otherwise."""
        for bucket in (self.uploads_bucket, self.storage_bucket):
            try:
                with s3_errors("reach a bucket"):
                    await self.client.head_bucket(Bucket=bucket)
            except NotFound:
                # HeadBucket has no body, so a missing bucket is a bare 404.
                raise StorageUnavailable(
                    "a configured bucket does not exist", reason="no-such-bucket"
                ) from None


# How ``create_app`` opens its S3 client: ``open_s3_client`` in production; tests pass one that
# builds every gateway's client over one parsed botocore model (tests/support/s3.py).
S3ClientFactory = Callable[[S3Config], contextlib.AbstractAsyncContextManager["S3Client"]]


@contextlib.asynccontextmanager
async def open_s3_client(
    s3: S3Config,
    *,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    session: AioSession | None = None,
) -> AsyncIterator[S3Client]:
    """An aiobotocore S3 client for the gateway's own calls, built from the config alone.

    Credentials come from the config only, so the process environment and instance metadata
    never choose who the gateway is. ``session``: the aiobotocore session to build it from; a
    new one (the default) parses botocore's S3 model again: over 100 ms and several MiB, which a
    process opening one client never notices and a test suite starting a gateway per test does.
    """
    style = s3.addressing_style
    if style == "auto" and s3.endpoint_url is not None:
        # A custom endpoint (MinIO, moto, an IP address) rarely resolves <bucket>.<host>.
        style = "path"
    config = AioConfig(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": style},
        signature_version="s3v4",
        # botocore >= 1.36 adds CRC checksums to every upload by default, which older
        # S3-compatible servers refuse; S3 itself does not need them.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    async with (session or get_session()).create_client(
        "s3",
        region_name=s3.region,
        endpoint_url=str(s3.endpoint_url).rstrip("/") if s3.endpoint_url else None,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key.get_secret_value(),
        config=config,
    ) as client:
        yield client
