"""The completion pipeline every protocol shares: verify, copy, forward, clean up (SPEC.md).

1. The object must be in the uploads bucket under the user's prefix, within ``max_size``, with
   a declared and a sniffed content type the route allows. An object that breaks a rule can
   never complete, so it is removed at once rather than left for the lifecycle rule.
2. It is copied into the storage bucket and the copy checked; only then is the original removed.
3. The upstream gets a signed ``upload.completed`` message, with an ``Idempotency-Key`` that is
   the same for every retry of the same upload.
4. A 2xx is relayed; a 4xx is relayed and the stored copy removed; a failure (5xx, timeout,
   unreachable) is a 502/504 and leaves everything where it is.

No state is kept besides S3: a retry recognises its own earlier work from the stored copy's
metadata, found by listing the storage key up to its ``{uuid}``, which is derived from the
idempotency key. So a process killed anywhere in the pipeline ends, after a retry, with exactly
one stored copy, and the stored copy's key never depends on what a retry says (file name, date).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import unicodedata
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, Protocol
from urllib.parse import quote, unquote

from aiohttp import web

from . import keys, sniff, webhook
from .appkeys import CLOCK, CONFIG, METRICS, STORAGE, UPSTREAM
from .config import RouteConfig
from .identity import Identity
from .logs import request_id_var, valid_request_id
from .metrics import Metrics
from .problems import (
    BadRequest,
    Forbidden,
    GatewayError,
    NotFound,
    PayloadTooLarge,
    PolicyRefused,
    StorageUnavailable,
    UnsupportedMediaType,
    UpstreamUnavailable,
)
from .rules import check_key, content_type_allowed
from .storage import StoredObject
from .upstream import UpstreamAnswer

log = logging.getLogger(__name__)

ID_PURPOSE = "upload-gateway/idempotency/v1"
# User metadata on the stored copy, by which a retry or a delete recognises it (S3 keeps
# metadata names in lower case and values in ASCII, hence the percent-encoding).
META_ID = "gateway-id"
META_SOURCE = "gateway-source-key"
META_FILENAME = "gateway-filename"

# Placeholders whose value could differ between retries: they may only follow {uuid}, so the
# key up to {uuid} is known on every retry and a listing under it finds the stored copy.
_UNSTABLE = ("{filename}", "{ext}", "{date}")
_MAX_FILENAME_BYTES = 200
_MAX_METADATA_BYTES = 2048  # S3's limit on user metadata, names and values in UTF-8
# Characters AWS's object key guidelines list as ones to avoid, plus both path separators.
_KEY_UNSAFE = frozenset('\\/{}^%`[]"<>~#|')
_EXT_RE = re.compile(r"[a-z0-9]{1,10}")
_GENERIC_TYPES = frozenset({"binary/octet-stream", "application/octet-stream"})
_FORWARDED = {"cookie": "Cookie", "authorization": "Authorization", "x-request-id": "X-Request-ID"}


class CompletionStorage(Protocol):
    """The part of ``storage.Storage`` the completion uses."""

    @property
    def uploads_bucket(self) -> str: ...

    @property
    def storage_bucket(self) -> str: ...

    async def head(self, bucket: str, key: str) -> StoredObject | None: ...

    async def read_prefix(self, bucket: str, key: str, n: int) -> bytes: ...

    async def list_keys(self, bucket: str, prefix: str, limit: int = ...) -> list[str]: ...

    async def copy_to_storage(
        self,
        src_key: str,
        dst_key: str,
        *,
        source_etag: str | None = ...,
        content_type: str | None = ...,
        metadata: Mapping[str, str] | None = ...,
    ) -> StoredObject: ...

    async def delete(self, bucket: str, key: str) -> None: ...


class CompletionUpstream(Protocol):
    """The part of ``upstream.Upstream`` the completion uses."""

    async def call(
        self,
        method: str,
        raw_path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> UpstreamAnswer: ...


@dataclass(frozen=True)
class CompletionRequest:
    """What a protocol adapter learnt from its client about one finished upload.

    ``forward_headers`` may carry Cookie, Authorization and X-Request-ID; nothing else is sent.
    """

    route: RouteConfig
    identity: Identity
    key: str
    filename: str
    params: Mapping[str, Any] = field(default_factory=dict)
    declared_size: int | None = None
    declared_content_type: str | None = None
    etag: str | None = None
    forward_headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompletionResult:
    """The upstream's status and JSON body (None when it sent none), and the stored copy."""

    status: int
    body: Any
    stored: StoredObject | None
    idempotency_key: str


def idempotency_key(
    id_key: bytes, route: str, user: str, upload_key: str, event: str = "completed"
) -> str:
    """32 hex chars naming one event of one upload of one user on one route, on every retry."""
    message = json.dumps([event, route, user, upload_key], ensure_ascii=True).encode()
    return hmac.new(id_key, message, hashlib.sha256).hexdigest()[:32]


def storage_uuid(id_key: bytes, idempotency: str) -> str:
    """The ``{uuid}`` of an upload's storage key: derived, so a retry names the same copy."""
    digest = hmac.new(id_key, b"storage-uuid\n" + idempotency.encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def safe_filename(name: str) -> str:
    """The client's file name fit for an object key: its base name, printable, at most 200 bytes."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(
        "_" if char in _KEY_UNSAFE else char
        for char in base
        if not unicodedata.category(char).startswith(("C", "Z")) or char == " "
    ).strip(" .")
    if not cleaned or cleaned in (".", ".."):
        return "file"
    stem, dot, ext = cleaned.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = cleaned, ""
    suffix = "." + ext if ext else ""
    room = _MAX_FILENAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:room].decode("utf-8", errors="ignore").rstrip(" .")
    return (stem or "file") + suffix


def extension(name: str) -> str:
    """``.jpg`` from ``Cat.JPG``: a short alphanumeric extension with its dot, or nothing."""
    _, dot, ext = safe_filename(name).rpartition(".")
    ext = ext.lower()
    return "." + ext if dot and _EXT_RE.fullmatch(ext) else ""


def stable_prefix(template: str, *, route: str, user_hash: str, uuid_text: str) -> str:
    """The storage key up to and including ``{uuid}``: known on every retry, unique per upload."""
    head = template.partition("{uuid}")[0]
    if "{uuid}" not in template or any(p in head for p in _UNSTABLE):
        raise ValueError(
            "storage_key must contain {uuid} before {filename}, {ext} and {date}: "
            "the gateway finds a stored copy again by the key up to its {uuid}"
        )
    return head.replace("{route}", route).replace("{user_hash}", user_hash) + uuid_text


def render_storage_key(
    template: str,
    *,
    route: str,
    user_hash: str,
    uuid_text: str,
    filename: str,
    now: datetime,
) -> str:
    """The stored copy's key: placeholders replaced literally (never ``str.format``)."""
    prefix = stable_prefix(template, route=route, user_hash=user_hash, uuid_text=uuid_text)
    tail = template.partition("{uuid}")[2]
    values = {
        "{route}": route,
        "{user_hash}": user_hash,
        "{uuid}": uuid_text,
        "{filename}": safe_filename(filename),
        "{ext}": extension(filename),
        "{date}": now.strftime("%Y-%m-%d"),
    }
    return prefix + re.sub(r"{[a-z_]+}", lambda m: values.get(m[0], m[0]), tail)


def _same_etag(a: str, b: str) -> bool:
    def norm(etag: str) -> str:
        return etag.strip().removeprefix("W/").strip('"').lower()

    return norm(a) == norm(b)


def _object_json(stored: StoredObject) -> dict[str, Any]:
    return {
        "bucket": stored.bucket,
        "key": stored.key,
        "size": stored.size,
        "etag": stored.etag,
        "content_type": stored.content_type,
    }


def check_upload(req: CompletionRequest, upload: StoredObject, sniffed: str | None) -> str:
    """The content type to store the upload with, once it passes the route's rules (else raise).

    ``sniffed`` is what its first bytes show. When the browser declared no type (S3 then says
    ``binary/octet-stream``), a sniffed type stands in for it, so the copy is served as what it is.
    """
    route = req.route
    if upload.size > route.max_size:
        raise PayloadTooLarge(
            f"the file is {upload.size} bytes; this route accepts at most {route.max_size}",
            reason="too-large",
        )
    if req.declared_size is not None and req.declared_size != upload.size:
        raise BadRequest(
            f"the object is {upload.size} bytes, not the {req.declared_size} declared",
            reason="size-mismatch",
        )
    stored_type = upload.content_type or "binary/octet-stream"
    if _essence(stored_type) in _GENERIC_TYPES:
        # S3's binary/octet-stream means "no type given"; IANA's name for unknown bytes is
        # application/octet-stream, which is what a route lists to accept them.
        stored_type = sniffed or "application/octet-stream"
    if sniffed is not None and not any(
        content_type_allowed(name, route.content_types)
        for name in sniff.acceptable_names(sniffed, stored_type)
    ):
        raise UnsupportedMediaType(
            f"the file's content is {sniffed}, which this route does not accept",
            reason="sniffed-type-not-allowed",
        )
    for declared in (stored_type, req.declared_content_type):
        if declared is not None and not content_type_allowed(declared, route.content_types):
            raise UnsupportedMediaType(
                "this route does not accept the file's content type",
                reason="content-type-not-allowed",
            )
    return stored_type


class Completion:
    """Runs completions and deletions for every route; one per app (``Completion.from_app``)."""

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
        self._upstream = upstream
        self._secret = webhook_secret
        self._id_key = id_key
        self._timeout = webhook_timeout
        self._metrics = metrics
        self._sniff_bytes = sniff_bytes
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def from_app(cls, app: web.Application) -> Completion:
        """The app's completion, over its storage and upstream; refuses unusable storage keys."""
        config = app[CONFIG]
        for index, route in enumerate(config.routes):
            try:
                stable_prefix(route.storage_key, route="r", user_hash="h", uuid_text="u")
            except ValueError as exc:
                raise ValueError(f"routes[{index}].storage_key: {exc}") from None
        return cls(
            app[STORAGE],
            app[UPSTREAM],
            webhook_secret=config.webhook.secret.get_secret_value(),
            id_key=keys.derive(config.session.keys[0].get_secret_value(), ID_PURPOSE),
            webhook_timeout=config.webhook.timeout,
            metrics=app[METRICS],
            clock=app[CLOCK],
        )

    def idempotency_key(self, route: RouteConfig, identity: Identity, upload_key: str) -> str:
        """The ``Idempotency-Key`` (and message ``id``) of this user's upload on this route."""
        return idempotency_key(self._id_key, route.name, identity.user, upload_key)

    # ------------------------------------------------------------------ completion

    async def complete(self, req: CompletionRequest) -> CompletionResult:
        """Verify, store and forward one upload; relay the upstream's answer (SPEC steps 1-4)."""
        route = req.route
        try:
            self._check_key(route, req.identity, req.key)
            upload_id = self.idempotency_key(route, req.identity, req.key)
            upload = await self._storage.head(self._storage.uploads_bucket, req.key)
            stored = await self._find(route, req.identity, upload_id)
            if upload is not None:
                content_type = await self._verify(req, upload)
                try:
                    stored = await self._store(req, upload, upload_id, content_type, stored)
                except NotFound:
                    # A concurrent completion of the same upload moved it first: go on from its
                    # copy, which the upstream then hears about twice under one Idempotency-Key.
                    stored = await self._find(route, req.identity, upload_id)
                    if stored is None:
                        raise
            elif stored is None:
                raise NotFound(
                    "no such upload: it was never sent, or is gone", reason="no-such-upload"
                )
            else:
                # An earlier attempt stored it and then failed upstream (or died): go on from there.
                log.info("completion_resumed", extra={"route": route.name})
            return await self._forward(req, stored, upload_id)
        except GatewayError as exc:
            self._count(route, _outcome(exc))
            raise

    def _check_key(self, route: RouteConfig, identity: Identity, key: str) -> None:
        try:
            check_key(key, identity.key_prefix)
        except PolicyRefused as exc:
            log.info("completion_refused", extra={"route": route.name, "reason": exc.reason})
            if exc.reason == "key-outside-prefix":
                # Someone else's object: refused before anything is read or touched.
                raise Forbidden("this object is not yours", reason="key-not-yours") from None
            raise BadRequest(exc.detail, reason=exc.reason) from None

    async def _verify(self, req: CompletionRequest, upload: StoredObject) -> str:
        """Check the upload against the route, removing it if it breaks a rule; its stored type."""
        if req.etag and upload.etag and not _same_etag(req.etag, upload.etag):
            # Not removed: the object was replaced since the client sent it (the same user wrote
            # the same key again), and a completion naming the new ETag may still come.
            raise BadRequest("the object changed since it was uploaded", reason="etag-mismatch")
        head = b""
        if 0 < upload.size <= req.route.max_size:
            head = await self._storage.read_prefix(
                self._storage.uploads_bucket, upload.key, self._sniff_bytes
            )
        try:
            return check_upload(req, upload, sniff.sniff(head))
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
        self,
        req: CompletionRequest,
        upload: StoredObject,
        upload_id: str,
        content_type: str,
        existing: StoredObject | None,
    ) -> StoredObject:
        """Copy to the storage bucket (over an earlier attempt's copy), check, drop the original."""
        route, identity = req.route, req.identity
        if existing is not None:
            dest = existing.key
        else:
            dest = render_storage_key(
                route.storage_key,
                route=route.name,
                user_hash=identity.user_hash,
                uuid_text=storage_uuid(self._id_key, upload_id),
                filename=req.filename,
                now=self._clock(),
            )
        ours = {META_ID: upload_id, META_FILENAME: quote(safe_filename(req.filename))}
        source = quote(req.key, safe="/")
        if len(source) <= 1024:  # the id names the source anyway
            ours[META_SOURCE] = source
        metadata = _copy_metadata(upload.metadata, ours)
        # If-Match on the checked ETag: bytes written over the upload since it was checked (by
        # the same user, racing the completion) are never what gets stored.
        copy = await self._storage.copy_to_storage(
            req.key, dest, source_etag=upload.etag, content_type=content_type, metadata=metadata
        )
        if copy.size != upload.size or copy.metadata.get(META_ID) != upload_id:
            raise StorageUnavailable(
                "the stored copy does not match the upload", reason="copy-check-failed"
            )
        await self._storage.delete(self._storage.uploads_bucket, req.key)
        return copy

    async def _forward(
        self, req: CompletionRequest, stored: StoredObject, upload_id: str
    ) -> CompletionResult:
        """Tell the upstream; remove the copy if it refuses; 502/504 (keeping it) if it fails."""
        route = req.route
        name = stored.metadata.get(META_FILENAME)
        message = {
            "event": "upload.completed",
            "id": upload_id,
            "route": route.name,
            "user": req.identity.user,
            # The first attempt's name: a retry may know it less well (SPEC: same id, same file).
            "filename": unquote(name) if name else safe_filename(req.filename),
            "params": dict(req.params),
            "object": _object_json(stored),
        }
        answer = await self._send(route, req.identity, upload_id, message, req.forward_headers)
        body = _json_or_none(answer.body)
        extra = {"route": route.name, "upstream_status": answer.status}
        if 200 <= answer.status < 300:
            log.info("completion_forwarded", extra={**extra, "outcome": "stored"})
            self._count(route, "stored")
            return CompletionResult(answer.status, body, stored, upload_id)
        if 400 <= answer.status < 500:
            await self._storage.delete(stored.bucket, stored.key)
            log.info("completion_forwarded", extra={**extra, "outcome": "upstream-rejected"})
            self._count(route, "upstream-rejected")
            return CompletionResult(answer.status, body, None, upload_id)
        log.warning("completion_forwarded", extra={**extra, "outcome": "upstream-failed"})
        raise UpstreamUnavailable(
            f"the application answered {answer.status}; the upload is kept for a retry",
            reason="upstream-failed",
        )

    async def _send(
        self,
        route: RouteConfig,
        identity: Identity,
        idempotency: str,
        message: Mapping[str, Any],
        forward_headers: Mapping[str, str],
    ) -> UpstreamAnswer:
        """POST a signed message to the route's forward path, with the client's credentials."""
        body = json.dumps(message, separators=(",", ":")).encode()
        headers = {
            _FORWARDED[name.lower()]: value
            for name, value in forward_headers.items()
            if name.lower() in _FORWARDED
        }
        headers["X-Request-ID"] = valid_request_id(
            headers.get("X-Request-ID") or request_id_var.get()
        )
        headers["Content-Type"] = "application/json"
        headers["X-Upload-User"] = identity.user
        headers["Idempotency-Key"] = idempotency
        headers[webhook.HEADER] = webhook.sign(self._secret, body)
        try:
            return await self._upstream.call(
                "POST", route.forward, headers=headers, body=body, timeout=self._timeout
            )
        except GatewayError as exc:
            log.warning(
                "completion_upstream_failed", extra={"route": route.name, "reason": exc.reason}
            )
            raise

    # ------------------------------------------------------------------ lookups and deletion

    async def find_stored(
        self, route: RouteConfig, identity: Identity, upload_key: str
    ) -> StoredObject | None:
        """The stored copy of this user's upload, if a completion stored one."""
        self._check_key(route, identity, upload_key)
        return await self._find(route, identity, self.idempotency_key(route, identity, upload_key))

    async def _find(
        self, route: RouteConfig, identity: Identity, upload_id: str
    ) -> StoredObject | None:
        prefix = stable_prefix(
            route.storage_key,
            route=route.name,
            user_hash=identity.user_hash,
            uuid_text=storage_uuid(self._id_key, upload_id),
        )
        bucket = self._storage.storage_bucket
        for key in await self._storage.list_keys(bucket, prefix, limit=10):
            found = await self._storage.head(bucket, key)
            # The uuid is derived from the id, but the id is what proves it is this upload's.
            if found is not None and found.metadata.get(META_ID) == upload_id:
                return found
        return None

    async def delete_upload(
        self,
        route: RouteConfig,
        identity: Identity,
        upload_key: str,
        forward_headers: Mapping[str, str],
    ) -> bool:
        """Remove this user's upload and its stored copy (telling the upstream); False if none."""
        self._check_key(route, identity, upload_key)
        upload_id = self.idempotency_key(route, identity, upload_key)
        deleted = False
        if await self._storage.head(self._storage.uploads_bucket, upload_key) is not None:
            await self._storage.delete(self._storage.uploads_bucket, upload_key)
            deleted = True
        stored = await self._find(route, identity, upload_id)
        if stored is None:
            return deleted
        name = stored.metadata.get(META_FILENAME)
        message = {
            "event": "upload.deleted",
            "id": upload_id,
            "route": route.name,
            "user": identity.user,
            "filename": unquote(name) if name else None,
            "object": _object_json(stored),
        }
        # Its own Idempotency-Key: an app that records completions by key must not take the
        # deletion for a repeat of the completion.
        idempotency = idempotency_key(
            self._id_key, route.name, identity.user, upload_key, "deleted"
        )
        answer = await self._send(route, identity, idempotency, message, forward_headers)
        log.info("upload_deleted", extra={"route": route.name, "upstream_status": answer.status})
        if 200 <= answer.status < 300 or answer.status == 404:
            # 404: the app never recorded it (its completion failed), so nothing refers to it.
            await self._storage.delete(stored.bucket, stored.key)
            return True
        if 400 <= answer.status < 500:
            raise Forbidden("the application refused to delete the file", reason="upstream-refused")
        raise UpstreamUnavailable(
            f"the application answered {answer.status}; the file is kept", reason="upstream-failed"
        )

    def _count(self, route: RouteConfig, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.completions.labels(route.name, outcome).inc()


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


def _essence(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
