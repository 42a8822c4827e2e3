"""Fine Uploader's S3 protocol (5.x, signature versions 2 and 4) at one route's path P.

Routes: ``POST P/signature`` (policies and chunked REST strings), ``POST P/success``,
``DELETE P/files/{uuid}`` (and the POST form of it), ``GET P/blank``, ``GET P/config``; anything
else under P is the gateway's and answers 404. A route's ``endpoints`` may put the first four at
paths of their own, for pages written for another server (docs/migrating.md); the proxy refuses
such a path (and all below it) in every other method and spelling. docs/protocols/fineuploader.md
describes the requests Fine Uploader sends and the answers.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..completion import CompletionRequest
from ..config import FineUploaderRouteConfig
from ..endpoints import browser_bucket
from ..forms import FormValue, parse_form
from ..identity import Identity
from ..jsonbody import parse_json
from ..origins import page_origin
from ..problems import (
    BadRequest,
    GatewayError,
    NotFound,
    PolicyRefused,
    is_final,
)
from ..requestkeys import SCOPE
from ..rules import SigningContext, check_rest_v2, check_rest_v4, tighten_policy
from ..services import Services
from ..signing import encode_policy, sign_v2, sign_v4
from .base import Rendering, RouteEntry, UploadRoute
from .common import passed_headers, read_limited

# Signature bodies are a policy of a few conditions or one canonical request; success bodies a
# handful of fields. Anything larger is not Fine Uploader.
MAX_BODY = 64 * 1024
# Fine Uploader's S3 default and S3's smallest part; handed to the page in GET P/config.
PART_SIZE = 5 * 1024 * 1024
# What the success request carries besides the page's own params (uploader.basic.api.js).
_PROTOCOL_FIELDS = ("key", "uuid", "name", "bucket", "etag")
# The endpoints a route may place elsewhere (its `endpoints`), and their default under P.
_DEFAULTS = {"signature": "signature", "success": "success", "delete": "files", "blank": "blank"}


def _signature_fields(exc: GatewayError) -> dict[str, Any]:
    # request-signer.js reads ``error`` before ``invalid`` and the tile shows it: the sentence.
    # The code stays in the problem's ``reason``. Fine Uploader 5.16 passes only ``error`` of a
    # signature answer on, so ``preventRetry`` here is for pages that read the answer themselves.
    return {"invalid": True, "error": exc.detail, "preventRetry": is_final(exc)}


def _success_fields(exc: GatewayError) -> dict[str, Any]:
    # uploadsuccess.ajax.requester.js fails the upload on success: false and shows ``error``;
    # the response property ``preventRetry`` (retry.preventRetryResponseProperty) hides Retry.
    return {"success": False, "error": exc.detail, "preventRetry": is_final(exc)}


def endpoint_paths(route: FineUploaderRouteConfig) -> dict[str, str]:
    """Where each endpoint of ``route`` is: its explicit path, else its default under P."""
    explicit = route.explicit_endpoints
    return {name: explicit.get(name, f"{route.path}/{tail}") for name, tail in _DEFAULTS.items()}


def _json_object(body: bytes) -> dict[str, Any]:
    # Bounded: a success body's fields become the message's params, which must stay encodable.
    value = parse_json(body)
    if not isinstance(value, dict):
        raise BadRequest("the body is not a JSON object", reason="not-json")
    return value


class FineUploaderRoute(UploadRoute[FineUploaderRouteConfig]):
    """The handlers of one ``protocol: fineuploader`` route: under its path, or where its
    ``endpoints`` name them."""

    # Every endpoint but the signature's answers as the success endpoint does.
    rendering = Rendering(_success_fields)
    protocol_name = "Fine Uploader"

    def __init__(self, services: Services, route: FineUploaderRouteConfig) -> None:
        super().__init__(services, route)
        config = self.config
        self.bucket = browser_bucket(config.s3, config.s3.uploads_bucket)
        self.paths = endpoint_paths(route)
        # Fixed for the process: made once here, not for every signature (every chunk signs).
        self._public_origins = [str(o) for o in config.public_origins]
        self._content_types = tuple(route.content_types)

    def table(self) -> list[RouteEntry]:
        path, paths = self.route.path, self.paths
        # Fine Uploader appends "/" and the uuid to the endpoint as written, trailing / or not.
        delete = paths["delete"]
        # An endpoint placed elsewhere, in another method or spelling, and all below it, reach
        # the proxy, which refuses them as reserved paths (gateway/app.py): never the app.
        return [
            RouteEntry("POST", paths["signature"], self.signature, _signature_fields),
            RouteEntry("POST", paths["success"], self.success),
            RouteEntry("DELETE", f"{delete}/{{uuid}}", self.delete),
            RouteEntry("POST", delete, self.delete_post),
            RouteEntry("GET", paths["blank"], self.blank),
            RouteEntry("GET", f"{path}/config", self.options),
            RouteEntry("*", f"{path}/{{tail:.*}}", self.not_found),
        ]

    def _context(self, request: web.Request, identity: Identity) -> SigningContext:
        # The iframe path's success_action_redirect is the blank page made absolute against the
        # page's origin: one of public_origins, or (none configured) the gateway's own, whose
        # Host must be host[:port], so no request can have a redirect elsewhere signed.
        origin = page_origin(
            self._public_origins,
            origin=request.headers.get("Origin"),
            referer=request.headers.get("Referer"),
            scheme=request.scheme,
            host=request.headers.get("Host"),
        )
        s3 = self.config.s3
        return SigningContext(
            uploads_bucket=s3.uploads_bucket,
            bucket_host=self.bucket.host,
            key_prefix=identity.key_prefix,
            acl=self.route.acl,
            content_types=self._content_types,
            max_size=self.route.max_size,
            signature_ttl=self.route.signature_ttl,
            blank_page_url=f"{origin}{self.paths['blank']}",
            access_key_id=s3.access_key_id,
            region=s3.region,
            part_size=PART_SIZE,
        )

    # ------------------------------------------------------------------ POST P/signature

    async def signature(self, request: web.Request) -> web.Response:
        """Sign a tightened copy of a POST policy, or a checked chunked REST request."""
        with self.signing:
            identity = await self.caller(request)
            # Parsed whatever the Content-Type: IE8/9's XDomainRequest sends text/plain or none.
            document = _json_object(await read_limited(request, MAX_BODY))
            answer = self._sign(request, identity, document)
            await self.note_owner(identity)
        return web.json_response(answer)

    def _sign(
        self, request: web.Request, identity: Identity, document: dict[str, Any]
    ) -> dict[str, str]:
        v4 = request.query.get("v4") == "true"
        now = self.clock()
        context = self._context(request, identity)
        secret = self.config.s3.secret_access_key.get_secret_value()
        if "headers" in document:
            raw = document["headers"]
            if len(document) != 1 or not isinstance(raw, str):
                raise PolicyRefused(
                    'a REST signing request is exactly {"headers": "<string>"}',
                    reason="malformed-request",
                )
            if not v4:
                return {"signature": sign_v2(secret, check_rest_v2(raw, context, now=now))}
            string_to_sign = check_rest_v4(raw, context, now=now)
            # Line 3 is the scope <YYYYMMDD>/<region>/s3/aws4_request, checked by the rules.
            date = string_to_sign.split("\n")[2].split("/", 1)[0]
            key = self.services.signing_keys.get(date, self.config.s3.region)
            return {"signature": sign_v4(key, string_to_sign)}
        if "conditions" in document or "expiration" in document:
            policy = tighten_policy(document, context, version=4 if v4 else 2, now=now)
            encoded = encode_policy(policy)
            if not v4:
                return {"policy": encoded, "signature": sign_v2(secret, encoded)}
            key = self.services.signing_keys.get(_credential_date(policy), self.config.s3.region)
            return {"policy": encoded, "signature": sign_v4(key, encoded)}
        raise PolicyRefused(
            "the body is neither a POST policy nor a REST signing request",
            reason="malformed-request",
        )

    # ------------------------------------------------------------------ POST P/success

    async def success(self, request: web.Request) -> web.Response:
        """Complete an upload Fine Uploader reports done, and relay the upstream's answer."""
        identity = await self.caller(request)
        body = await read_limited(request, MAX_BODY)
        if request.content_type == "application/json":
            fields: dict[str, Any] = _json_object(body)
        else:
            fields = parse_form(body)
        key, name, bucket = (_required(fields, f) for f in ("key", "name", "bucket"))
        etag = fields.get("etag")
        if etag is not None and not isinstance(etag, str):
            raise BadRequest("etag must be a string", reason="form-invalid")
        self._check_bucket(bucket)
        params = {k: v for k, v in fields.items() if k not in _PROTOCOL_FIELDS}
        result = await self.services.completion.complete(
            CompletionRequest(
                route=self.route,
                identity=identity,
                key=key,
                filename=name,
                params=params,
                declared_size=None,
                declared_content_type=None,
                etag=etag,
                passed_headers=self._passed_headers(request),
            )
        )
        upstream = result.body if isinstance(result.body, dict) else {}
        if 200 <= result.status < 300:
            return web.json_response({"success": True, **upstream}, status=result.status)
        error = upstream.get("error")
        message = error if isinstance(error, str) and error else "the application refused it"
        # A refusal (a failing upstream raised above): the stored copy is gone, so a retry
        # could only find nothing.
        answer = {**upstream, "success": False, "error": message, "preventRetry": True}
        return web.json_response(answer, status=result.status)

    def _check_bucket(self, bucket: str) -> None:
        """The client names the bucket, so it must be the uploads bucket.

        The key is the completion's to check: under the user's prefix, before anything is touched.
        """
        if bucket != self.config.s3.uploads_bucket:
            raise BadRequest("bucket is not this route's uploads bucket", reason="bucket-mismatch")

    def _passed_headers(self, request: web.Request) -> dict[str, str]:
        """The client's Cookie (without the gateway's session) and Authorization, and the id."""
        return {"X-Request-ID": request[SCOPE].request_id, **passed_headers(request, self.config)}

    # ------------------------------------------------------------------ DELETE P/files/{uuid}

    async def delete(self, request: web.Request) -> web.Response:
        """deleteFile in DELETE mode: ``?key=&bucket=`` name the user's own object."""
        identity = await self.caller(request)
        return await self._delete(request, identity, dict(request.query))

    async def delete_post(self, request: web.Request) -> web.Response:
        """deleteFile in POST mode (old browsers): a form with ``_method=DELETE``."""
        identity = await self.caller(request)
        fields: dict[str, FormValue] = parse_form(await read_limited(request, MAX_BODY))
        if fields.get("_method") != "DELETE":
            raise BadRequest("POST P/files only deletes (_method=DELETE)", reason="form-invalid")
        return await self._delete(request, identity, fields)

    async def _delete(
        self, request: web.Request, identity: Identity, fields: dict[str, Any]
    ) -> web.Response:
        key, bucket = _required(fields, "key"), _required(fields, "bucket")
        self._check_bucket(bucket)
        deleted = await self.services.completion.delete_upload(
            self.route, identity, key, self._passed_headers(request)
        )
        if not deleted:
            raise NotFound("no such upload", reason="not-found")
        return web.Response(status=204)

    # ------------------------------------------------------------------ GET P/blank, P/config

    async def blank(self, request: web.Request) -> web.Response:
        """The iframe path's success_action_redirect target: any page whose body is not "false"."""
        return web.Response(
            text="<!DOCTYPE html><html><head><title></title></head><body></body></html>",
            content_type="text/html",
            headers={"Cache-Control": "no-store"},
        )

    async def options(self, request: web.Request) -> web.Response:
        """This user's Fine Uploader options (qq.s3.FineUploader), for the page to build from."""
        identity = await self.services.identity.require(request)
        s3 = self.config.s3
        paths = self.paths
        validation: dict[str, Any] = {"sizeLimit": self.route.max_size}
        if "*/*" not in self.route.content_types:
            validation["acceptFiles"] = ",".join(self.route.content_types)
        body = {
            "request": {"endpoint": self.bucket.url, "accessKey": s3.access_key_id},
            "objectProperties": {
                # Needed whenever the bucket URL is not an AWS host name: Fine Uploader parses
                # bucket and host out of AWS's host names only.
                "bucket": s3.uploads_bucket,
                "host": self.bucket.host,
                "region": s3.region,
                "acl": self.route.acl,
                "keyPrefix": identity.key_prefix,
            },
            "signature": {"endpoint": paths["signature"], "version": 4},
            "uploadSuccess": {"endpoint": paths["success"]},
            "deleteFile": {"enabled": True, "endpoint": paths["delete"]},
            "iframeSupport": {"localBlankPagePath": paths["blank"]},
            "chunking": {"enabled": True, "partSize": PART_SIZE},
            "validation": validation,
            "keyPrefix": identity.key_prefix,
            "maxSize": self.route.max_size,
            # For request.clockDrift (serverTime - Date.now()): S3 refuses skewed clocks.
            "serverTime": int(self.clock().timestamp() * 1000),
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})


def _required(fields: dict[str, Any], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"the field {name!r} is missing", reason="missing-field")
    return value


def _credential_date(policy: dict[str, Any]) -> str:
    """The YYYYMMDD of the policy's x-amz-credential, which the rules have already checked."""
    for condition in policy.get("conditions", ()):
        if isinstance(condition, dict) and isinstance(condition.get("x-amz-credential"), str):
            parts = condition["x-amz-credential"].split("/")
            if len(parts) == 5:
                return str(parts[1])
    raise PolicyRefused("a v4 policy needs an x-amz-credential", reason="credential-missing")
