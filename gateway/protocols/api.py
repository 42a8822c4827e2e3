"""API clients (no browser): presigned PUT, presigned multipart parts, complete, abort, delete.

``POST P`` grants an upload; its ``upload_id`` is a sealed token (gateway.tokens) holding the
route, user, key, multipart id, size and expiry, so no server-side state is needed and any
gateway instance can finish an upload another began.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..completion import CompletionRequest
from ..config import ApiRouteConfig
from ..problems import BadRequest, GatewayError
from ..rules import MAX_PARTS, SigningContext, check_declared_file
from ..services import Services
from ..storage import Storage
from ..tokens import UploadToken
from .base import PartRules, RouteEntry, UploadRoute
from .common import (
    TOKEN_LIFETIME,
    Presigner,
    grant,
    new_key,
    passed_headers,
    signing_context,
)

__all__ = ["TOKEN_LIFETIME", "ApiRoute", "part_size_for"]

# A grant request is a few hundred bytes; a completion lists up to 10,000 parts of ~80 bytes.
MAX_CREATE_BODY = 16 * 1024
MAX_COMPLETE_BODY = 1024 * 1024


class _CreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field(min_length=3, max_length=255)
    size: int = Field(ge=0, strict=True)  # strict: `true` or "12" is not a size
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")


class _PartBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    part_number: int = Field(ge=1, le=MAX_PARTS, strict=True)
    etag: str = Field(min_length=1, max_length=128)


class _CompleteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parts: list[_PartBody] = Field(default_factory=list, max_length=MAX_PARTS)


def _check_declared(size: int, content_type: str, ctx: SigningContext) -> None:
    """The route's rules on the declared file, the refusal naming the field it is about."""
    try:
        check_declared_file(size=size, content_type=content_type, ctx=ctx)
    except GatewayError as exc:
        exc.extra.setdefault("field", "content_type" if exc.status == 415 else "size")
        raise


def part_size_for(size: int, route: ApiRouteConfig) -> int:
    """The route's part size, grown when needed so no upload takes more than 10,000 parts."""
    return max(route.part_size, math.ceil(size / MAX_PARTS))


# API clients may list parts in any order; the parts hold exactly the declared size.
_PARTS = PartRules(
    sort=True, numbering="parts must be numbered 1..N without gaps", field="parts", exact_size=True
)


class ApiRoute(UploadRoute[ApiRouteConfig]):
    """``POST P`` (grant), ``POST P/{upload_id}/complete``, ``DELETE P/{upload_id}`` (abort)
    and ``DELETE P/files?key=`` (a completed upload) of one ``protocol: api`` route."""

    protocol_name = "api"

    def __init__(self, services: Services, route: ApiRouteConfig) -> None:
        super().__init__(services, route)
        self.presigner = Presigner(self.config, services.signing_keys)

    def table(self) -> list[RouteEntry]:
        path = self.route.path
        return [
            RouteEntry("POST", path, self.create),
            RouteEntry("POST", path + "/{upload_id}/complete", self.complete),
            # Before P/{upload_id}: an upload id is a sealed token, never "files".
            RouteEntry("DELETE", path + "/files", self.delete_by_key),
            RouteEntry("DELETE", path + "/{upload_id}", self.abort),
            RouteEntry("*", path + "/{tail:.*}", self.not_found),
        ]

    async def create(self, request: web.Request) -> web.Response:
        """Grant an upload: a presigned PUT, or a multipart upload's presigned parts."""
        with self.signing:
            answer = await self._grant(request)
        return web.json_response(answer, status=201)

    async def _grant(self, request: web.Request) -> dict[str, Any]:
        route = self.route
        identity = await self.caller(request)
        body = await self.read_json(request, _CreateBody, MAX_CREATE_BODY)
        content_type = body.content_type.lower()
        _check_declared(body.size, content_type, signing_context(self.config, route, identity))
        now = self.clock()
        key = new_key(identity, body.filename)
        url_expiry = now + timedelta(seconds=route.signature_ttl)
        token = grant(
            route,
            identity,
            key,
            now=now,
            size=body.size,
            content_type=content_type,
            filename=body.filename,
            sha256=body.sha256.lower() if body.sha256 else None,
        )
        tokens = self.services.tokens
        await self.note_owner(identity)
        if body.size <= route.multipart_threshold:
            headers = {"Content-Type": content_type}
            if body.sha256:
                # S3 recomputes this and refuses other bytes; it is signed, so it must be sent.
                headers["x-amz-checksum-sha256"] = base64.b64encode(
                    bytes.fromhex(body.sha256)
                ).decode()
            # The declared size is signed too: without it the URL would take up to S3's 5 GiB
            # into the uploads bucket, refused only later by the completion. Clients send
            # Content-Length themselves (browsers must), so it is not among the headers to send.
            signed = {k.lower(): v for k, v in headers.items()}
            signed["content-length"] = str(body.size)
            url = self.presigner.url(key, now=now, expires=route.signature_ttl, headers=signed)
            return {
                "upload_id": tokens.seal(token),
                "key": key,
                "method": "PUT",
                "url": url,
                "headers": headers,
                "expires_at": url_expiry.isoformat().replace("+00:00", "Z"),
            }

        part_size = part_size_for(body.size, route)
        count = math.ceil(body.size / part_size)
        multipart_id = await self.services.storage.create_multipart(
            key, content_type=content_type, metadata={"gateway-route": route.name}
        )
        token = dataclasses.replace(token, multipart_id=multipart_id, part_size=part_size)
        parts = [
            {
                "part_number": number,
                "url": self.presigner.part_url(
                    key,
                    multipart_id,
                    number,
                    now=now,
                    expires=route.signature_ttl,
                    length=min(part_size, body.size - (number - 1) * part_size),
                ),
            }
            for number in range(1, count + 1)
        ]
        return {
            "upload_id": tokens.seal(token),
            "key": key,
            "part_size": part_size,
            "parts": parts,
            "expires_at": url_expiry.isoformat().replace("+00:00", "Z"),
        }

    async def complete(self, request: web.Request) -> web.Response:
        """Finish the caller's upload (its parts, its checksum), then run the completion."""
        identity, token = await self.open_upload(request)
        body = await self.read_json(request, _CompleteBody, MAX_COMPLETE_BODY)
        storage = self.services.storage
        if token.multipart_id is not None:
            parts = [(p.part_number, p.etag) for p in body.parts]
            await self.finish_multipart(identity, token, parts, _PARTS)
        if token.sha256 is not None:
            await _check_checksum(storage, token)
        result = await self.services.completion.complete(
            CompletionRequest(
                route=self.route,
                identity=identity,
                key=token.key,
                filename=token.filename,
                params={},
                declared_size=token.size,
                declared_content_type=token.content_type,
                etag=None,
                passed_headers=passed_headers(request, self.config),
            )
        )
        return web.json_response(result.body, status=result.status)

    async def abort(self, request: web.Request) -> web.Response:
        """Abort the caller's upload and drop anything it stored in the uploads bucket."""
        _identity, token = await self.open_upload(request)
        storage = self.services.storage
        if token.multipart_id is not None:
            await storage.abort_multipart(token.key, token.multipart_id)
        await storage.delete(storage.uploads_bucket, token.key)
        return web.Response(status=204)


async def _check_checksum(storage: Storage, token: UploadToken) -> None:
    """The declared SHA-256 against the object's bytes; a mismatch removes the upload."""
    assert token.sha256 is not None  # noqa: S101 - callers check
    digest = await storage.sha256(storage.uploads_bucket, token.key)
    if digest is not None and digest != token.sha256:
        await storage.delete(storage.uploads_bucket, token.key)
        raise BadRequest(
            "the uploaded bytes do not match the declared sha256", reason="checksum-mismatch"
        )
