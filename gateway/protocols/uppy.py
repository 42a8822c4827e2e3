"""Uppy's S3 uploads through Companion's protocol (``@uppy/aws-s3`` 6.x, ``companionEndpoint: P``).

Paths, parameters and JSON shapes are those of Uppy Companion's S3 controller
(packages/@uppy/companion/src/server/controllers/s3.js) as ``lib/s3-client/CompanionS3.js``
calls them. Unlike Companion, the gateway picks every key under the user's prefix, and the
multipart ``uploadId`` it hands out is a sealed token (gateway.tokens) naming the user, key,
multipart id, type and a size bound: another user's id is refused, no state is kept. Multipart
uploads complete at Companion's complete call; single-request ones at ``POST P/complete``
(``{"key": ...}``, the gateway's own: docs/protocols/uppy.md), which the page sends on Uppy's
``upload-success``. ``DELETE P/files?key=`` (the gateway's too) removes a completed upload and
tells the upstream.
"""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..completion import CompletionRequest, CompletionResult, check_own_key
from ..config import UppyRouteConfig
from ..endpoints import browser_bucket
from ..identity import Identity
from ..problems import BadRequest, GatewayError, PolicyRefused
from ..rules import MAX_PARTS, SigningContext, check_declared_file, tighten_policy
from ..services import Services
from ..signing import amz_date, encode_policy, format_expiration, scope, sign_v4
from ..tokens import UploadToken
from .base import PartRules, Rendering, RouteEntry, UploadRoute
from .common import Presigner, grant, new_key, passed_headers, signing_context
from .uppy_metadata import object_metadata, query_metadata, read_object_metadata, uppy_params

MAX_BODY = 64 * 1024
# 10,000 parts of about 50 bytes each; Companion allows 1 MB here for the same reason.
MAX_COMPLETE_BODY = 1024 * 1024
# S3's smallest part but the last, which @uppy/aws-s3 also never goes below (S3Uploader.js):
# an upload of N bytes has at most ceil(N / MIN_PART) parts.
MIN_PART = 5 * 1024 * 1024


class _CreateBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    filename: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=3, max_length=255)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # Not sent by Uppy; a page may declare the size so it is refused before any byte is sent.
    size: int | None = Field(None, ge=0)


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")
    PartNumber: int = Field(ge=1, le=MAX_PARTS)
    ETag: str = Field(min_length=1, max_length=128)


class _CompleteBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    parts: list[_Part] = Field(min_length=1, max_length=MAX_PARTS)


class _KeyBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=1, max_length=1024)


def _problem_fields(exc: GatewayError) -> dict[str, Any]:
    # Companion answers its errors as {"error": message}.
    return {"error": exc.detail}


def _status_text(exc: GatewayError) -> str:
    # @uppy/aws-s3 6.x never reads an error's body: it shows "Companion request failed:
    # <statusText>" (CompanionS3.ts), so the sentence rides in the reason phrase too. HTTP/2
    # has no reason phrase; behind an h2 proxy Uppy shows the prefix alone.
    return exc.detail


def _declared_size(text: str | None) -> int | None:
    if text is None:
        return None
    if not (0 < len(text) <= 20 and text.isascii() and text.isdigit()):
        raise BadRequest("size must be a byte count", reason="size-invalid")
    return int(text)


def max_part_number(token: UploadToken) -> int:
    """The highest part an upload of at most ``token.size`` bytes can have, at least 1."""
    return max(1, min(MAX_PARTS, math.ceil(token.size / MIN_PART)))


# Uppy lists its parts in order; without a declared size the route's limit bounds them, and a
# list over it aborts the upload.
_PARTS = PartRules(
    sort=False, numbering="parts must be numbered 1..N in order", field=None, exact_size=False
)


class UppyRoute(UploadRoute[UppyRouteConfig]):
    """The handlers of one ``protocol: uppy`` route: Companion's S3 endpoints, ``P/complete``,
    ``P/files`` (delete) and ``P/config`` under its path."""

    rendering = Rendering(_problem_fields, status_text=_status_text)
    protocol_name = "Uppy"

    def __init__(self, services: Services, route: UppyRouteConfig) -> None:
        super().__init__(services, route)
        self.bucket = browser_bucket(self.config.s3, self.config.s3.uploads_bucket)
        self.presigner = Presigner(self.config, services.signing_keys)

    def table(self) -> list[RouteEntry]:
        path, multipart = self.route.path, f"{self.route.path}/s3/multipart/{{upload_id}}"
        return [
            RouteEntry("GET", f"{path}/config", self.options),
            RouteEntry("POST", f"{path}/complete", self.complete_single),
            RouteEntry("DELETE", f"{path}/files", self.delete_by_key),
            RouteEntry("GET", f"{path}/s3/params", self.params),
            RouteEntry("POST", f"{path}/s3/multipart", self.create),
            # Before {part_number}: Companion's routes match "batch" first too.
            RouteEntry("GET", f"{multipart}/batch", self.batch),
            RouteEntry("GET", f"{multipart}/{{part_number:[0-9]+}}", self.sign_part),
            RouteEntry("POST", f"{multipart}/complete", self.complete_multipart),
            RouteEntry("GET", multipart, self.list_parts),
            RouteEntry("DELETE", multipart, self.abort),
            # Anything else under P (Companion's /s3/sts too) is the gateway's: never proxied.
            RouteEntry("*", f"{path}/{{tail:.*}}", self.not_found),
        ]

    def _context(self, identity: Identity) -> SigningContext:
        return signing_context(self.config, self.route, identity)

    # ------------------------------------------------------------------ GET P/s3/params

    async def params(self, request: web.Request) -> web.Response:
        """Form-POST parameters of a single-request upload: a tightened, signed POST policy."""
        with self.signing:
            identity = await self.caller(request)
            query = request.query
            filename, content_type = query.get("filename", ""), query.get("type", "").lower()
            if not 0 < len(filename) <= 255:
                raise BadRequest("filename must be 1 to 255 characters", reason="filename-invalid")
            size = _declared_size(query.get("size"))
            ctx = self._context(identity)
            check_declared_file(size=size or 0, content_type=content_type, ctx=ctx)
            metadata = uppy_params(query_metadata(query))
            stored = object_metadata(self.route, filename, metadata)
            key = new_key(identity, filename)
            answer = self._post_form(request, ctx, key, content_type, stored, size)
            await self.note_owner(identity)
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    def _post_form(
        self,
        request: web.Request,
        ctx: SigningContext,
        key: str,
        content_type: str,
        metadata: dict[str, str],
        size: int | None,
    ) -> dict[str, Any]:
        now = self.clock()
        s3 = self.config.s3
        stamp = amz_date(now)
        fields = {
            "key": key,
            "acl": self.route.acl,
            "content-type": content_type,
            # The only status the rules allow; @uppy/aws-s3 refuses a redirect.
            "success_action_status": "200",
            **{f"x-amz-meta-{name}": value for name, value in metadata.items()},
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": f"{s3.access_key_id}/{scope(stamp[:8], s3.region)}",
            "x-amz-date": stamp,
        }
        # The document Fine Uploader would send, through the same rules: they bound the size by
        # max_size and set the expiration, so a form this route would refuse is never signed.
        document = {
            "expiration": format_expiration(now),
            "conditions": [
                {"bucket": s3.uploads_bucket},
                *({name: value} for name, value in fields.items()),
                ["content-length-range", 0, self.route.max_size if size is None else size],
            ],
        }
        policy = encode_policy(tighten_policy(document, ctx, version=4, now=now))
        signature = sign_v4(self.services.signing_keys.get(stamp[:8], s3.region), policy)
        return {
            "method": "POST",
            "url": self.bucket.url,
            "fields": {**fields, "policy": policy, "x-amz-signature": signature},
            "expires": self.route.signature_ttl,
        }

    # ------------------------------------------------------------------ POST P/s3/multipart

    async def create(self, request: web.Request) -> web.Response:
        """Start a multipart upload at a key of the gateway's choosing; the uploadId is a token."""
        identity = await self.caller(request)
        body = await self.read_json(request, _CreateBody, MAX_BODY)
        content_type = body.type.lower()
        ctx = self._context(identity)
        check_declared_file(size=body.size or 0, content_type=content_type, ctx=ctx)
        metadata = object_metadata(self.route, body.filename, uppy_params(body.metadata))
        # The limit the rules put on a POST policy's x-amz-meta-* fields, S3's own.
        if sum(len(k) + len(v) for k, v in metadata.items()) > ctx.max_meta_bytes:
            raise PolicyRefused("the metadata is too large", reason="meta-too-large")
        key = new_key(identity, body.filename)
        now = self.clock()
        await self.note_owner(identity)
        multipart_id = await self.services.storage.create_multipart(
            key, content_type=content_type, metadata=metadata
        )
        token = grant(
            self.route,
            identity,
            key,
            now=now,
            multipart_id=multipart_id,
            # Without a declared size the route's limit bounds the part numbers.
            size=self.route.max_size if body.size is None else body.size,
            content_type=content_type,
            filename=body.filename,
            part_size=MIN_PART,
        )
        sealed = self.services.tokens.seal(token)
        return web.json_response(
            {"key": key, "uploadId": sealed, "bucket": self.config.s3.uploads_bucket}
        )

    async def _open(self, request: web.Request) -> tuple[Identity, UploadToken, str]:
        """The caller's own multipart upload, named by its token and ``?key=``."""
        identity, token = await self.open_upload(request, key_param="key", multipart=True)
        assert token.multipart_id is not None  # noqa: S101 - open_upload checked
        return identity, token, token.multipart_id

    def _part_url(
        self, request: web.Request, token: UploadToken, multipart_id: str, text: str
    ) -> str:
        if not (0 < len(text) <= 5 and text.isascii() and text.isdigit()):
            raise BadRequest("a part number is 1 to 10000", reason="part-number-invalid")
        highest = max_part_number(token)
        if not 1 <= int(text) <= highest:
            raise BadRequest(
                f"part numbers of this upload are 1 to {highest}", reason="part-number-out-of-range"
            )
        return self.presigner.part_url(
            token.key,
            multipart_id,
            int(text),
            now=self.clock(),
            expires=self.route.signature_ttl,
        )

    # ------------------------------------------------------------------ GET P/s3/multipart/...

    async def sign_part(self, request: web.Request) -> web.Response:
        """A presigned PUT URL for one part of the caller's own upload."""
        with self.signing:
            _identity, token, multipart_id = await self._open(request)
            url = self._part_url(request, token, multipart_id, request.match_info["part_number"])
        return web.json_response({"url": url, "expires": self.route.signature_ttl})

    async def batch(self, request: web.Request) -> web.Response:
        """Companion's batch signing (``?partNumbers=1,2``), which older Uppy versions use."""
        with self.signing:
            _identity, token, multipart_id = await self._open(request)
            numbers = request.query.get("partNumbers", "").split(",")
            if len(numbers) > max_part_number(token):
                raise BadRequest("too many part numbers", reason="part-number-out-of-range")
            urls = {n: self._part_url(request, token, multipart_id, n) for n in numbers}
        return web.json_response({"presignedUrls": urls})

    async def list_parts(self, request: web.Request) -> web.Response:
        """The parts S3 holds so far, as Companion lists them (resuming uploads)."""
        _identity, token, multipart_id = await self._open(request)
        parts = await self.services.storage.list_parts(token.key, multipart_id)
        return web.json_response(
            [{"PartNumber": p.number, "ETag": p.etag, "Size": p.size} for p in parts]
        )

    async def abort(self, request: web.Request) -> web.Response:
        """Abort the caller's own multipart upload and drop anything it stored."""
        _identity, token, multipart_id = await self._open(request)
        storage = self.services.storage
        await storage.abort_multipart(token.key, multipart_id)
        await storage.delete(storage.uploads_bucket, token.key)
        return web.json_response({})

    # ------------------------------------------------------------------ completions

    async def complete_multipart(self, request: web.Request) -> web.Response:
        """Complete the S3 upload from the client's checked parts, then run the completion."""
        identity, token, _upload_id = await self._open(request)
        body = await self.read_json(request, _CompleteBody, MAX_COMPLETE_BODY)
        parts = [(p.PartNumber, p.ETag) for p in body.parts]
        await self.finish_multipart(identity, token, parts, _PARTS)
        result = await self._complete(request, identity, token.key, token.filename)
        answer = result.body if isinstance(result.body, dict) else {}
        if 200 <= result.status < 300 and result.stored is not None:
            stored = result.stored
            location = browser_bucket(self.config.s3, stored.bucket).url + "/" + quote(stored.key)
            answer = {**answer, "location": location, "bucket": stored.bucket, "key": stored.key}
        return web.json_response(answer, status=result.status)

    async def complete_single(self, request: web.Request) -> web.Response:
        """``POST P/complete {"key"}``: complete a form-POSTed upload; relay the answer."""
        identity = await self.caller(request)
        body = await self.read_json(request, _KeyBody, MAX_BODY)
        # Before the object's metadata is read: someone else's object is not even looked at.
        check_own_key(body.key, identity)
        result = await self._complete(request, identity, body.key, None)
        return web.json_response(result.body, status=result.status)

    async def _complete(
        self, request: web.Request, identity: Identity, key: str, filename: str | None
    ) -> CompletionResult:
        """The shared completion, with the file name and params the gateway stored on the object."""
        storage, completion = self.services.storage, self.services.completion
        found = await storage.head(storage.uploads_bucket, key)
        if found is None:
            found = await completion.find_stored(self.route, identity, key)
        name, params = read_object_metadata(found.metadata if found else {}, key)
        result = await completion.complete(
            CompletionRequest(
                route=self.route,
                identity=identity,
                key=key,
                filename=filename or name,
                params=params,
                declared_size=None,
                declared_content_type=None,
                etag=None,
                passed_headers=passed_headers(request, self.config),
            )
        )
        return result

    # ------------------------------------------------------------------ GET P/config

    async def options(self, request: web.Request) -> web.Response:
        """What this user's Uppy page needs: endpoints, restrictions, key prefix."""
        identity = await self.services.identity.require(request)
        path, types = self.route.path, list(self.route.content_types)
        body = {
            "companionEndpoint": path,
            "completeEndpoint": f"{path}/complete",
            "restrictions": {
                "maxFileSize": self.route.max_size,
                "allowedFileTypes": None if "*/*" in types else types,
            },
            "maxSize": self.route.max_size,
            "allowedTypes": types,
            "keyPrefix": identity.key_prefix,
            "minPartSize": MIN_PART,
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})
