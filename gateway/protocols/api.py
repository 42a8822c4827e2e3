"""API clients (no browser): presigned PUT, presigned multipart parts, complete, abort, delete.

``POST P`` grants an upload; its ``upload_id`` is a sealed token (gateway.tokens) holding the
route, user, key, S3 upload id, size and expiry, so no server-side state is needed and any
gateway instance can finish an upload another began.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from datetime import timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..appkeys import CLOCK, COMPLETION, CONFIG, METRICS, STORAGE, TOKENS
from ..completion import CompletionRequest
from ..config import ApiRouteConfig
from ..jsonbody import parse_json
from ..problems import BadRequest, GatewayError, NotFound
from ..render import route_handler
from ..rules import MAX_PARTS, SigningContext, check_declared_file
from ..storage import Storage
from ..tokens import UploadToken
from .common import (
    TOKEN_LIFETIME,
    Presigner,
    caller,
    delete_by_key,
    forward_headers,
    grant,
    invalid_field,
    new_key,
    note_owner,
    open_upload,
    read_limited,
    signing_context,
)

__all__ = ["TOKEN_LIFETIME", "add_routes", "part_size_for"]

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


async def _json_body(request: web.Request, model: type[BaseModel], limit: int) -> Any:
    data = parse_json(await read_limited(request, limit) or b"{}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_field(exc) from None


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


def add_routes(app: web.Application, route: ApiRouteConfig) -> None:
    """Register ``POST P``, ``POST P/{upload_id}/complete``, ``DELETE P/{upload_id}`` (abort)
    and ``DELETE P/files?key=`` (a completed upload)."""
    handle = route_handler(route.name)
    presigner = Presigner(app)

    @handle
    async def create(request: web.Request) -> web.StreamResponse:
        config = request.app[CONFIG]
        identity = await caller(request, config)
        body: _CreateBody = await _json_body(request, _CreateBody, MAX_CREATE_BODY)
        content_type = body.content_type.lower()
        _check_declared(body.size, content_type, signing_context(config, route, identity))
        now = request.app[CLOCK]()
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
        tokens = request.app[TOKENS]
        await note_owner(request, route, identity)
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
            url = presigner.url(key, now=now, expires=route.signature_ttl, headers=signed)
            answer: dict[str, Any] = {
                "upload_id": tokens.seal(token),
                "key": key,
                "method": "PUT",
                "url": url,
                "headers": headers,
                "expires_at": url_expiry.isoformat().replace("+00:00", "Z"),
            }
            request.app[METRICS].signature_issued(route.name)
            return web.json_response(answer, status=201)

        part_size = part_size_for(body.size, route)
        count = math.ceil(body.size / part_size)
        s3_upload_id = await request.app[STORAGE].create_multipart(
            key, content_type=content_type, metadata={"gateway-route": route.name}
        )
        token = dataclasses.replace(token, s3_upload_id=s3_upload_id, part_size=part_size)
        parts = [
            {
                "part_number": number,
                "url": presigner.part_url(
                    key,
                    s3_upload_id,
                    number,
                    now=now,
                    expires=route.signature_ttl,
                    length=min(part_size, body.size - (number - 1) * part_size),
                ),
            }
            for number in range(1, count + 1)
        ]
        request.app[METRICS].signature_issued(route.name)
        return web.json_response(
            {
                "upload_id": tokens.seal(token),
                "key": key,
                "part_size": part_size,
                "parts": parts,
                "expires_at": url_expiry.isoformat().replace("+00:00", "Z"),
            },
            status=201,
        )

    @handle
    async def complete(request: web.Request) -> web.StreamResponse:
        identity, token = await open_upload(request, request.app[CONFIG], route)
        body: _CompleteBody = await _json_body(request, _CompleteBody, MAX_COMPLETE_BODY)
        storage = request.app[STORAGE]
        completion = request.app[COMPLETION]
        if token.s3_upload_id is not None:
            done_before = (
                await storage.head(storage.uploads_bucket, token.key) is not None
                or await completion.find_stored(route, identity, token.key) is not None
            )
            await _finish_multipart(storage, done_before, token, body)
        if token.sha256 is not None:
            await _check_checksum(storage, token)
        result = await completion.complete(
            CompletionRequest(
                route=route,
                identity=identity,
                key=token.key,
                filename=token.filename,
                params={},
                declared_size=token.size,
                declared_content_type=token.content_type,
                etag=None,
                forward_headers=forward_headers(request, request.app[CONFIG]),
            )
        )
        return web.json_response(result.body, status=result.status)

    @handle
    async def abort(request: web.Request) -> web.StreamResponse:
        _identity, token = await open_upload(request, request.app[CONFIG], route)
        storage = request.app[STORAGE]
        if token.s3_upload_id is not None:
            await storage.abort_multipart(token.key, token.s3_upload_id)
        await storage.delete(storage.uploads_bucket, token.key)
        return web.Response(status=204)

    @handle
    async def delete(request: web.Request) -> web.StreamResponse:
        return await delete_by_key(request, request.app[CONFIG], route)

    @handle
    async def unknown(request: web.Request) -> web.StreamResponse:
        raise NotFound("no such api endpoint", reason="not-found")

    app.router.add_post(route.path, create)
    app.router.add_post(route.path + "/{upload_id}/complete", complete)
    # Before P/{upload_id}: an upload id is a sealed token, never "files".
    app.router.add_delete(route.path + "/files", delete)
    app.router.add_delete(route.path + "/{upload_id}", abort)
    app.router.add_route("*", route.path + "/{tail:.*}", unknown)


async def _finish_multipart(
    storage: Storage, done_before: bool, token: UploadToken, body: _CompleteBody
) -> None:
    """Complete the multipart upload from the client's part list, checked against ListParts.

    ``done_before``: an earlier attempt completed it (its object is in the uploads bucket, or
    already stored), and that attempt failed upstream or its answer was lost; S3 no longer
    knows the upload id, and the completion checks the object all the same.
    """
    assert token.s3_upload_id is not None  # noqa: S101 - callers check
    if done_before:
        return
    claimed = sorted(body.parts, key=lambda p: p.part_number)
    numbers = [p.part_number for p in claimed]
    if not claimed or numbers != list(range(1, len(claimed) + 1)):
        raise BadRequest(
            "parts must be numbered 1..N without gaps", reason="parts-invalid", field="parts"
        )
    listed = {part.number: part for part in await storage.list_parts(token.key, token.s3_upload_id)}
    for part in claimed:
        held = listed.get(part.part_number)
        if held is None or held.etag.strip('"') != part.etag.strip('"'):
            raise BadRequest(
                f"part {part.part_number} was not uploaded with that ETag",
                reason="part-mismatch",
                field="parts",
            )
    total = sum(listed[n].size for n in numbers)
    if total != token.size:
        raise BadRequest(
            f"the parts hold {total} bytes, the upload declared {token.size}",
            reason="size-mismatch",
        )
    if token.part_size is not None and any(listed[n].size != token.part_size for n in numbers[:-1]):
        # S3 would refuse a short middle part only at CompleteMultipartUpload, less readably.
        raise BadRequest(
            f"every part but the last must hold {token.part_size} bytes",
            reason="part-size-mismatch",
            field="parts",
        )
    await storage.complete_multipart(
        token.key, token.s3_upload_id, [(p.part_number, p.etag) for p in claimed]
    )


async def _check_checksum(storage: Storage, token: UploadToken) -> None:
    """The declared SHA-256 against the object's bytes; a mismatch removes the upload."""
    assert token.sha256 is not None  # noqa: S101 - callers check
    digest = await storage.sha256(storage.uploads_bucket, token.key)
    if digest is not None and digest != token.sha256:
        await storage.delete(storage.uploads_bucket, token.key)
        raise BadRequest(
            "the uploaded bytes do not match the declared sha256", reason="checksum-mismatch"
        )
