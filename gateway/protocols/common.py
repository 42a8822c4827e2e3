"""What the adapters share: the caller, body reading, key choice, upload tokens, presigned URLs."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import ValidationError

from ..appkeys import (
    CLOCK,
    COMPLETION,
    CONFIG,
    IDENTITY,
    OWNERS,
    SIGNING_KEYS,
    STORAGE,
    TOKENS,
)
from ..completion import extension
from ..config import Config, RouteConfig
from ..endpoints import browser_bucket
from ..headers import upstream_cookie
from ..identity import Identity
from ..origins import check_origin
from ..problems import BadRequest, NotFound, PayloadTooLarge
from ..rules import SigningContext
from ..signing import presign_v4
from ..tokens import UploadToken

# A granted upload may be completed for a day: the uploads bucket's lifecycle rule removes what
# is left after that anyway (`upload-gateway s3 setup`).
TOKEN_LIFETIME = timedelta(days=1)


async def caller(request: web.Request, config: Config) -> Identity:
    """The identity of a caller whose Origin (if any) is one of ours; 401/403 otherwise."""
    check_origin(request, config.origins)
    return await request.app[IDENTITY].require(request)


async def note_owner(request: web.Request, route: RouteConfig, identity: Identity) -> None:
    """Record whose uploads this user's hash names on ``route``, for the sweep: one S3 request
    the first time a process signs or grants for this user and route, none after
    (gateway/completion/owners.py)."""
    await request.app[OWNERS].note(request.app[STORAGE], identity, route.name)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The whole body, or 413 ``body-too-large`` as soon as it passes ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    content = request.content
    body = bytearray()
    # readany takes all that is in at once: a body that came with its head (every signing
    # request's) is one call, not an async iterator's rounds.
    while not content.at_eof():
        body += await content.readany()
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> PayloadTooLarge:
    # Built only when refused: every signing request (each chunk's) reads a body here.
    return PayloadTooLarge(f"the body is larger than {limit} bytes", reason="body-too-large")


def invalid_field(exc: ValidationError) -> BadRequest:
    """The first of pydantic's complaints as 400 ``invalid-field``, naming the field."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(p) for p in first["loc"]) or "body"
    return BadRequest(f"{field}: {first['msg']}", reason="invalid-field", field=field)


def signing_context(config: Config, route: RouteConfig, identity: Identity) -> SigningContext:
    """What this user may have signed on this route (no blank page: no iframe path here)."""
    bucket = browser_bucket(config.s3, config.s3.uploads_bucket)
    return SigningContext(
        uploads_bucket=config.s3.uploads_bucket,
        bucket_host=bucket.host,
        key_prefix=identity.key_prefix,
        acl=route.acl,
        content_types=tuple(route.content_types),
        max_size=route.max_size,
        signature_ttl=route.signature_ttl,
        blank_page_url="",
        access_key_id=config.s3.access_key_id,
        region=config.s3.region,
    )


def new_key(identity: Identity, filename: str) -> str:
    """A fresh key under the user's prefix: random, so it never carries the client's file name."""
    return f"{identity.key_prefix}{uuid.uuid4().hex}{extension(filename)}"


def forward_headers(request: web.Request, config: Config) -> dict[str, str]:
    """The client's Cookie (without the gateway's session) and Authorization, for the upstream."""
    headers: dict[str, str] = {}
    cookies = request.headers.getall("Cookie", None)
    if cookies:
        joined = upstream_cookie(cookies, config.session.cookie_name)
        if joined:
            headers["Cookie"] = joined
    if "Authorization" in request.headers:
        headers["Authorization"] = request.headers["Authorization"]
    return headers


async def delete_by_key(request: web.Request, config: Config, route: RouteConfig) -> web.Response:
    """``DELETE P/files?key=<upload key>``: remove the caller's completed upload (or what is left
    of it in the uploads bucket); the upstream is told with ``upload.deleted``. 204, or 404."""
    identity = await caller(request, config)
    key = request.query.get("key")
    if not key:
        raise BadRequest("the upload's key must be passed as ?key=", reason="key-missing")
    # The completion checks the prefix before it reads or touches anything.
    deleted = await request.app[COMPLETION].delete_upload(
        route, identity, key, forward_headers(request, config)
    )
    if not deleted:
        raise NotFound("no such upload: it was never completed, or is already deleted")
    return web.Response(status=204)


def grant(
    route: RouteConfig,
    identity: Identity,
    key: str,
    *,
    now: datetime,
    size: int,
    content_type: str,
    filename: str,
    s3_upload_id: str | None = None,
    sha256: str | None = None,
    part_size: int | None = None,
) -> UploadToken:
    """A token for this user's upload at ``key``, valid for TOKEN_LIFETIME from ``now``."""
    return UploadToken(
        route=route.name,
        user=identity.user,
        key=key,
        s3_upload_id=s3_upload_id,
        size=size,
        content_type=content_type,
        filename=filename,
        sha256=sha256,
        part_size=part_size,
        expires_at=int((now + TOKEN_LIFETIME).timestamp()),
    )


async def open_upload(
    request: web.Request, config: Config, route: RouteConfig
) -> tuple[Identity, UploadToken]:
    """The caller, and the token in ``{upload_id}``: theirs, this route's, unexpired."""
    identity = await caller(request, config)
    token = request.app[TOKENS].open(
        request.match_info["upload_id"],
        route=route.name,
        user=identity.user,
        now=request.app[CLOCK](),
    )
    return identity, token


class Presigner:
    """Presigned PUT URLs into the uploads bucket, with the project's own SigV4 signer."""

    def __init__(self, app: web.Application) -> None:
        config = app[CONFIG]
        bucket = browser_bucket(config.s3, config.s3.uploads_bucket)
        parts = urlsplit(bucket.url)
        self._endpoint = f"{parts.scheme}://{parts.netloc}"
        self._path_prefix = parts.path.rstrip("/")
        self._app = app
        self._config = config

    def url(
        self,
        key: str,
        *,
        now: datetime,
        expires: int,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> str:
        """A PUT of ``key`` (one part of it, given ``query``) signed for ``expires`` seconds."""
        return presign_v4(
            method="PUT",
            endpoint=self._endpoint,
            path=f"{self._path_prefix}/{key}",
            access_key_id=self._config.s3.access_key_id,
            keys=self._app[SIGNING_KEYS],
            region=self._config.s3.region,
            now=now,
            expires=expires,
            query=query,
            headers=headers,
        )

    def part_url(
        self,
        key: str,
        upload_id: str,
        number: int,
        *,
        now: datetime,
        expires: int,
        length: int | None = None,
    ) -> str:
        """A PUT of part ``number`` of the S3 multipart upload ``upload_id``.

        With ``length``, the part's Content-Length is signed, so S3 takes no other size.
        """
        query = {"partNumber": str(number), "uploadId": upload_id}
        headers = None if length is None else {"content-length": str(length)}
        return self.url(key, now=now, expires=expires, query=query, headers=headers)
