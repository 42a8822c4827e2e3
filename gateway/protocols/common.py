"""What the adapters share without the app's services: body reading, key choice, upload tokens,
presigned URLs. The steps that use services are ``base.UploadRoute``'s."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from aiohttp import web
from pydantic import ValidationError

from ..completion import extension
from ..config import Config, RouteConfig
from ..endpoints import browser_bucket
from ..headers import upstream_cookie
from ..identity import Identity
from ..problems import BadRequest, PayloadTooLarge
from ..rules import SigningContext
from ..signing import SigningKeys, presign_v4
from ..tokens import UploadToken

# A granted upload may be completed for a day: the uploads bucket's lifecycle rule removes what
# is left after that anyway (`upload-gateway s3 setup`).
TOKEN_LIFETIME = timedelta(days=1)


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


def passed_headers(request: web.Request, config: Config) -> dict[str, str]:
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


def grant(
    route: RouteConfig,
    identity: Identity,
    key: str,
    *,
    now: datetime,
    size: int,
    content_type: str,
    filename: str,
    multipart_id: str | None = None,
    sha256: str | None = None,
    part_size: int | None = None,
) -> UploadToken:
    """A token for this user's upload at ``key``, valid for TOKEN_LIFETIME from ``now``."""
    return UploadToken(
        route=route.name,
        user=identity.user,
        key=key,
        multipart_id=multipart_id,
        size=size,
        content_type=content_type,
        filename=filename,
        sha256=sha256,
        part_size=part_size,
        expires_at=int((now + TOKEN_LIFETIME).timestamp()),
    )


class Presigner:
    """Presigned PUT URLs into the uploads bucket, with the project's own SigV4 signer."""

    def __init__(self, config: Config, keys: SigningKeys) -> None:
        bucket = browser_bucket(config.s3, config.s3.uploads_bucket)
        parts = urlsplit(bucket.url)
        self._endpoint = f"{parts.scheme}://{parts.netloc}"
        self._path_prefix = parts.path.rstrip("/")
        self._keys = keys
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
            keys=self._keys,
            region=self._config.s3.region,
            now=now,
            expires=expires,
            query=query,
            headers=headers,
        )

    def part_url(
        self,
        key: str,
        multipart_id: str,
        number: int,
        *,
        now: datetime,
        expires: int,
        length: int | None = None,
    ) -> str:
        """A PUT of part ``number`` of the S3 multipart upload ``multipart_id``.

        With ``length``, the part's Content-Length is signed, so S3 takes no other size.
        """
        query = {"partNumber": str(number), "uploadId": multipart_id}
        headers = None if length is None else {"content-length": str(length)}
        return self.url(key, now=now, expires=expires, query=query, headers=headers)
