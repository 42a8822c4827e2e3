"""The completion pipeline: verify, copy, notify, clean up; and deleting an upload again."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import NoReturn
from urllib.parse import quote, unquote

from .. import sniff
from ..config import RouteConfig
from ..identity import Identity
from ..jsonbody import check_params
from ..metrics import Metrics
from ..problems import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    PolicyRefused,
    StorageUnavailable,
    UpstreamUnavailable,
)
from ..rules import check_key
from ..storage import StorageKeyTaken, StoredObject
from .checks import check_upload, content_disposition, same_etag
from .interfaces import CompletionRequest, CompletionResult, CompletionStorage, CompletionUpstream
from .naming import (
    etag_value,
    idempotency_key,
    render_storage_key,
    safe_filename,
    stable_prefix,
    storage_uuid,
    storage_uuid_prefix,
)
from .notify import Notifier, json_or_none, object_json

# The package's name, so log lines name the logger they always named.
log = logging.getLogger("gateway.completion")

ID_PURPOSE = "upload-gateway/idempotency/v1"
# User metadata on the stored copy, by which a retry or a delete recognises it (S3 keeps
# metadata names in lower case and values in ASCII, hence the percent-encoding).
META_ID = "gateway-id"
META_SOURCE = "gateway-source-key"
META_FILENAME = "gateway-filename"
# The uploaded object's ETag (its id is recomputed from it) and when its copy was stored (UTC,
# microseconds: of two copies from one upload key, a retry without an ETag means the newer).
META_ETAG = "gateway-upload-etag"
META_STORED_AT = "gateway-stored-at"
_MAX_METADATA_BYTES = 2048  # S3's limit on user metadata, names and values in UTF-8


class Completion:
    """Runs completions and deletions for every route; one per app, built in its wiring
    (gateway/services.py ``completion_for``)."""

    def __init__(
        self,
        storage: CompletionStorage,
        upstream: CompletionUpstream,
        *,
        webhook_secret: str,
        id_key: bytes,
        webhook_timeout: float,
        metrics: Metrics | None = None,
        sniff_bytes: int = 4096,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._storage = storage
        self._notifier = Notifier(upstream, secret=webhook_secret, timeout=webhook_timeout)
        self._id_key = id_key
        self._metrics = metrics
        self._sniff_bytes = sniff_bytes
        self._clock = clock or (lambda: datetime.now(UTC))

    def idempotency_key(
        self, route: RouteConfig, identity: Identity, upload_key: str, etag: str
    ) -> str:
        """The ``Idempotency-Key`` (and message ``id``) of this user's object on this route."""
        return idempotency_key(self._id_key, route.name, identity.user, upload_key, etag)

    # ------------------------------------------------------------------ completion

    async def complete(self, req: CompletionRequest) -> CompletionResult:
        """Verify and store one upload, notify the upstream and relay its answer (docs/http.md)."""
        route = req.route
        try:
            self._check_key(route, req.identity, req.key)
            # Before any S3 work: params the message could not carry must not cost a copy.
            check_params(req.params)
            upload = await self._storage.head(self._storage.uploads_bucket, req.key)
            if upload is not None and (not req.etag or same_etag(req.etag, upload.etag)):
                stored = await self._complete_upload(req, upload)
                result = await self._notify(req, stored)
                # Only once the app has answered for good (2xx, or 4xx and the copy removed):
                # while its delivery is pending the upload stays where the sweep finds it, so
                # no stored copy exists that the app was never told about and nobody retries.
                await self._storage.delete(self._storage.uploads_bucket, req.key)
                return result
            if req.upload_only:
                raise NotFound("the upload was completed meanwhile", reason="no-such-upload")
            stored = await self._earlier_copy(req, replaced=upload is not None)
            return await self._notify(req, stored)
        except GatewayError as exc:
            self._count(route, _outcome(exc), req.trigger)
            raise

    async def _complete_upload(self, req: CompletionRequest, upload: StoredObject) -> StoredObject:
        """The stored copy of the object now in the uploads bucket, made unless one exists; the
        upload itself stays until the app has answered (``complete``)."""
        route, identity = req.route, req.identity
        completion_id = self.idempotency_key(route, identity, req.key, upload.etag)
        stored = await self._find(route, identity, req.key, completion_id)
        if stored is not None:
            # An earlier attempt stored this very object (same ETag) and then failed or died:
            # its copy stands, never rewritten, so the bytes an app was told about stay put.
            log.info("completion_resumed", extra={"route": route.name})
        else:
            content_type = await self._verify(req, upload)
            try:
                stored = await self._store(req, upload, completion_id, content_type)
            except NotFound:
                # A concurrent completion of the same object moved it first: go on from its
                # copy, which the upstream then hears about twice under one Idempotency-Key.
                stored = await self._find(route, identity, req.key, completion_id)
                if stored is None:
                    raise
        return stored

    async def _earlier_copy(self, req: CompletionRequest, *, replaced: bool) -> StoredObject:
        """The copy an earlier completion stored, when the upload is gone (or, ``replaced``,
        other bytes were written at its key since the client sent the ETag it names)."""
        route, identity = req.route, req.identity
        if req.etag:
            completion_id = self.idempotency_key(route, identity, req.key, req.etag)
            found = await self._find(route, identity, req.key, completion_id)
            copies = [found] if found is not None else []
        else:
            copies = await self._copies(route, identity, req.key)
        if copies:
            # Newest first: without an ETag, a retry is taken to be of the latest completion.
            log.info("completion_resumed", extra={"route": route.name})
            return copies[0]
        if replaced:
            # Not removed: the newer object may still be completed by a request naming it.
            raise BadRequest("the object changed since it was uploaded", reason="etag-mismatch")
        raise NotFound("no such upload: it was never sent, or is gone", reason="no-such-upload")

    def _check_key(self, route: RouteConfig, identity: Identity, key: str) -> None:
        try:
            check_own_key(key, identity)
        except GatewayError as exc:
            log.info("completion_refused", extra={"route": route.name, "reason": exc.reason})
            raise

    async def _verify(self, req: CompletionRequest, upload: StoredObject) -> str:
        """Check the upload against the route, removing it if it breaks a rule; its stored type."""
        head = b""
        if 0 < upload.size <= req.route.max_size:
            # If-Match the checked ETag: the bytes judged are those the copy (If-Match too) takes,
            # even if the same user writes the key again in between.
            head = await self._storage.read_prefix(
                self._storage.uploads_bucket, upload.key, self._sniff_bytes, etag=upload.etag
            )
        try:
            return check_upload(req, upload, sniff.sniff(head), text=sniff.is_text(head))
        except GatewayError as error:
            await self._refuse(req, error)

    async def _refuse(self, req: CompletionRequest, error: GatewayError) -> NoReturn:
        """Remove an upload that can never complete, then raise why (lifecycle is a backstop)."""
        log.info("completion_refused", extra={"route": req.route.name, "reason": error.reason})
        try:
            await self._storage.delete(self._storage.uploads_bucket, req.key)
        except StorageUnavailable:
            log.warning("completion_cleanup_failed", extra={"route": req.route.name})
        raise error

    async def _store(
        self, req: CompletionRequest, upload: StoredObject, completion_id: str, content_type: str
    ) -> StoredObject:
        """Copy to the storage bucket, at a key no other object is stored under, and check it."""
        route, identity = req.route, req.identity
        now = self._clock()
        dest = render_storage_key(
            route.storage_key,
            route=route.name,
            user_hash=identity.user_hash,
            uuid_text=storage_uuid(self._id_key, route.name, identity.user, req.key, completion_id),
            filename=req.filename,
            now=now,
        )
        ours = {
            META_ID: completion_id,
            META_ETAG: etag_value(upload.etag),
            META_STORED_AT: now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            META_FILENAME: quote(safe_filename(req.filename)),
        }
        source = quote(req.key, safe="/")
        if len(source) <= 1024:  # the id names the source anyway
            ours[META_SOURCE] = source
        metadata = _copy_metadata(upload.metadata, ours)
        # If-Match on the checked ETag: bytes written over the upload since it was checked (by
        # the same user, racing the completion) are never what gets stored. The HEAD this
        # completion began with is the copy's source: S3 applies If-Match as it copies, so a
        # second HEAD here would only cost a round trip. If-None-Match: the lookup before found
        # no copy, and a concurrent completion of the same object must not write over its.
        try:
            copy = await self._storage.copy_to_storage(
                req.key,
                dest,
                checked=upload,
                content_type=content_type,
                content_disposition=content_disposition(content_type),
                metadata=metadata,
                only_new=True,
            )
        except StorageKeyTaken as taken:
            copy = taken.existing
            log.info("completion_copy_exists", extra={"route": route.name})
            if copy.metadata.get(META_ID) != completion_id:
                raise StorageUnavailable(
                    "the storage key holds another object", reason="copy-check-failed"
                ) from None
            return copy
        if copy.size != upload.size or copy.metadata.get(META_ID) != completion_id:
            raise StorageUnavailable(
                "the stored copy does not match the upload", reason="copy-check-failed"
            )
        return copy

    async def _notify(self, req: CompletionRequest, stored: StoredObject) -> CompletionResult:
        """Tell the upstream; remove the copy if it refuses; 502/504 (keeping it) if it fails."""
        route = req.route
        completion_id = stored.metadata[META_ID]
        name = stored.metadata.get(META_FILENAME)
        message = {
            "event": "upload.completed",
            "id": completion_id,
            "route": route.name,
            "user": req.identity.user,
            # The first attempt's name: a retry may know it less well (same id, same file).
            "filename": unquote(name) if name else safe_filename(req.filename),
            "params": dict(req.params),
            "object": object_json(stored),
            # What P/files?key= (DELETE) names, for an app that offers to delete the file.
            "upload_key": req.key,
            "trigger": req.trigger,
        }
        answer = await self._notifier.send(
            route, req.identity, completion_id, message, req.passed_headers
        )
        body = json_or_none(answer.body)
        extra = {"route": route.name, "upstream_status": answer.status, "trigger": req.trigger}
        if 200 <= answer.status < 300:
            log.info("completion_forwarded", extra={**extra, "outcome": "stored"})
            self._count(route, "stored", req.trigger)
            return CompletionResult(answer.status, body, stored, completion_id)
        if 400 <= answer.status < 500:
            # Only this object's copy: one stored from other bytes at the same key has its own
            # id and key, and the app may still refer to it.
            await self._storage.delete(stored.bucket, stored.key)
            log.info("completion_forwarded", extra={**extra, "outcome": "upstream-rejected"})
            self._count(route, "upstream-rejected", req.trigger)
            return CompletionResult(answer.status, body, None, completion_id)
        log.warning("completion_forwarded", extra={**extra, "outcome": "upstream-failed"})
        raise UpstreamUnavailable(
            f"the application answered {answer.status}; the upload is kept for a retry",
            reason="upstream-failed",
        )

    # ------------------------------------------------------------------ lookups and deletion

    async def find_stored(
        self, route: RouteConfig, identity: Identity, upload_key: str
    ) -> StoredObject | None:
        """The newest stored copy of this user's upload key, if a completion stored one."""
        self._check_key(route, identity, upload_key)
        copies = await self._copies(route, identity, upload_key)
        return copies[0] if copies else None

    def _uuid_prefix(
        self, route: RouteConfig, identity: Identity, upload_key: str, completion_id: str | None
    ) -> str:
        """The storage key up to that object's ``{uuid}``, or (no id) any copy's of the key."""
        if completion_id is None:
            uuid_text = storage_uuid_prefix(self._id_key, route.name, identity.user, upload_key)
        else:
            uuid_text = storage_uuid(
                self._id_key, route.name, identity.user, upload_key, completion_id
            )
        return stable_prefix(
            route.storage_key, route=route.name, user_hash=identity.user_hash, uuid_text=uuid_text
        )

    async def _find(
        self, route: RouteConfig, identity: Identity, upload_key: str, completion_id: str
    ) -> StoredObject | None:
        """The stored copy of one object (its id known), if a completion stored it."""
        bucket = self._storage.storage_bucket
        prefix = self._uuid_prefix(route, identity, upload_key, completion_id)
        for key in await self._storage.list_keys(bucket, prefix, limit=10):
            found = await self._storage.head(bucket, key)
            # The uuid is derived from the id, but the id is what proves it is this upload's.
            if found is not None and found.metadata.get(META_ID) == completion_id:
                return found
        return None

    async def _copies(
        self, route: RouteConfig, identity: Identity, upload_key: str
    ) -> list[StoredObject]:
        """Every stored copy made from this upload key (one per object written there), newest
        first. Usually one: a second exists only if other bytes were written at the key after
        a completion, and each is proven this key's by its id, recomputed from its ETag."""
        bucket = self._storage.storage_bucket
        prefix = self._uuid_prefix(route, identity, upload_key, None)
        copies: list[StoredObject] = []
        for key in await self._storage.list_keys(bucket, prefix, limit=10):
            found = await self._storage.head(bucket, key)
            if found is None:
                continue
            etag = found.metadata.get(META_ETAG)
            if etag and found.metadata.get(META_ID) == self.idempotency_key(
                route, identity, upload_key, etag
            ):
                copies.append(found)
        copies.sort(key=lambda c: (c.metadata.get(META_STORED_AT, ""), c.key), reverse=True)
        return copies

    async def delete_upload(
        self,
        route: RouteConfig,
        identity: Identity,
        upload_key: str,
        passed_headers: Mapping[str, str],
    ) -> bool:
        """Remove this user's upload and the newest copy stored from it (telling the upstream);
        False if there is neither.

        The newest copy is the one the key's last completion reported. An older one exists only
        if other bytes were written at the key after a completion; it has its own id, and a
        second delete removes it.
        """
        self._check_key(route, identity, upload_key)
        deleted = False
        if await self._storage.head(self._storage.uploads_bucket, upload_key) is not None:
            await self._storage.delete(self._storage.uploads_bucket, upload_key)
            deleted = True
        copies = await self._copies(route, identity, upload_key)
        if not copies:
            return deleted
        stored = copies[0]
        name = stored.metadata.get(META_FILENAME)
        message = {
            "event": "upload.deleted",
            "id": stored.metadata[META_ID],
            "route": route.name,
            "user": identity.user,
            "filename": unquote(name) if name else None,
            "object": object_json(stored),
            "upload_key": upload_key,
        }
        # Its own Idempotency-Key: an app that records completions by key must not take the
        # deletion for a repeat of the completion.
        idempotency = idempotency_key(
            self._id_key,
            route.name,
            identity.user,
            upload_key,
            stored.metadata[META_ETAG],
            "deleted",
        )
        answer = await self._notifier.send(route, identity, idempotency, message, passed_headers)
        log.info("upload_deleted", extra={"route": route.name, "upstream_status": answer.status})
        if 200 <= answer.status < 300 or answer.status == 404:
            # 404: the app never recorded it (its completion failed), so nothing refers to it.
            await self._storage.delete(stored.bucket, stored.key)
            return True
        if 400 <= answer.status < 500:
            raise Forbidden("the application refused to delete the file", reason="delete-refused")
        raise UpstreamUnavailable(
            f"the application answered {answer.status}; the file is kept", reason="upstream-failed"
        )

    def _count(self, route: RouteConfig, outcome: str, trigger: str) -> None:
        if self._metrics is not None:
            self._metrics.completions.labels(route.name, outcome, trigger).inc()


def check_own_key(key: str, identity: Identity) -> None:
    """A key a client names must be this user's: 403 ``key-not-yours`` outside their prefix
    (someone else's object, refused before anything is read or touched), 400 with check_key's
    reason when it is no key the gateway would grant. Every protocol answers it alike."""
    try:
        check_key(key, identity.key_prefix)
    except PolicyRefused as exc:
        if exc.reason == "key-outside-prefix":
            raise Forbidden("this object is not yours", reason="key-not-yours") from None
        raise BadRequest(exc.detail, reason=exc.reason) from None


def _outcome(exc: GatewayError) -> str:
    if isinstance(exc, NotFound):
        return "not-found"
    if isinstance(exc, StorageUnavailable):
        return "storage-failed"
    if exc.status >= 500:
        return "upstream-failed"
    return "refused"


def _copy_metadata(uploaded: Mapping[str, str], ours: Mapping[str, str]) -> dict[str, str]:
    """The upload's own metadata (an adapter may keep the file's name there) plus ours, which
    wins; the upload's is dropped when both would pass S3's 2 KB limit (names and values)."""
    merged = {k: v for k, v in uploaded.items() if not k.lower().startswith("gateway-")}
    merged.update(ours)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in merged.items())
    return merged if size <= _MAX_METADATA_BYTES else dict(ours)
