"""The skeleton of an upload adapter: its routes table, registered in one place, and the steps
the protocols share (the caller, reading a JSON body, counting signatures, opening an upload
token, finishing a multipart upload).

A protocol is one subclass of ``UploadRoute`` that fills in ``table()`` (method, path, handler)
and, when its clients read errors their own way, its ``rendering``; then one entry in
``protocols.ADAPTERS`` and one name in the config's ``protocol`` choices.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Generic, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ..config import RouteConfig
from ..identity import Identity
from ..jsonbody import parse_json
from ..metrics import Metrics
from ..origins import check_origin
from ..problems import BadRequest, Forbidden, GatewayError, NotFound, PayloadTooLarge
from ..render import Handler, ProblemFields, StatusText, route_handler
from ..services import Services
from ..tokens import UploadToken
from .common import invalid_field, passed_headers, read_limited

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class RouteEntry:
    """One row of an adapter's routes table."""

    method: str  # "GET" answers HEAD too, as aiohttp's add_get does; "*" any method
    path: str
    handler: Handler
    # This endpoint's error fields, when not the adapter's (``Rendering.fields``).
    fields: ProblemFields | None = None


@dataclass(frozen=True)
class PartRules:
    """How a protocol's clients list the parts of a multipart upload, and what the parts must
    add up to. Each protocol keeps the answers its clients have always had."""

    # The client's order does not matter (sorted here), or the list must already be in order.
    sort: bool
    # The sentence of a badly numbered list (400 ``parts-invalid``).
    numbering: str
    # The problem's ``field`` on a refused part list, if the protocol names one.
    field: str | None
    # True: the parts hold exactly the declared size, every part but the last the token's
    # part size (400 ``size-mismatch``, ``part-size-mismatch``). False: at most the token's
    # size bound, else the upload is aborted (413 ``too-large``): it could never complete.
    exact_size: bool


@dataclass(frozen=True)
class Rendering:
    """How a protocol's clients read a refusal, besides problem+json's own fields."""

    # The client's own fields (Fine Uploader's ``invalid``, Companion's ``error``).
    fields: ProblemFields | None = None
    # The status line's text, for clients that show it and never read the body (Uppy).
    status_text: StatusText | None = None


class SignatureCounter:
    """Counts a signing request as issued, or as refused with its reason (and logs that), in
    ``gateway_signatures_total``: ``with counter:`` around everything the request does.

    One object per route, reused by every request (it keeps no state between them): a signing
    request (every chunk of an upload signs) costs no generator or allocation here.
    """

    __slots__ = ("_log", "_metrics", "_route")

    def __init__(self, route: str, metrics: Metrics, logger: str) -> None:
        self._route = route
        self._metrics = metrics
        # The protocol's own logger (gateway.protocols.fineuploader...), as its lines always had.
        self._log = logging.getLogger(logger)

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            # The request's access line (route, user hash, status) already records the issue.
            self._metrics.signature_issued(self._route)
        elif isinstance(exc, GatewayError):
            self._log.info(
                "signature_refused",
                extra={"route": self._route, "reason": exc.reason, "status": exc.status},
            )
            self._metrics.signature_refused(self._route, exc.reason)
        # Anything else (a bug, a cancellation) is neither; it propagates either way.


# Each protocol's own route model (config.AnyRouteConfig), picked by the route's protocol.
RouteT = TypeVar("RouteT", bound=RouteConfig)


class UploadRoute(Generic[RouteT]):
    """The handlers of one upload route, given the app's services and the route's config."""

    rendering: ClassVar[Rendering] = Rendering()
    # How a 404 under the route's path names the protocol ("no such api endpoint").
    protocol_name: ClassVar[str] = "upload"

    def __init__(self, services: Services, route: RouteT) -> None:
        self.services = services
        self.config = services.config
        self.route = route
        self.clock = services.clock
        self.metrics = services.metrics
        # ``with self.signing:`` around a signing request counts it; one for the route.
        self.signing = SignatureCounter(route.name, services.metrics, type(self).__module__)

    def table(self) -> Sequence[RouteEntry]:
        """The routes, in the order the router tries them."""
        raise NotImplementedError

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the table, each handler named for this route and rendering its problems
        with the protocol's fields."""
        rendering = self.rendering
        for entry in self.table():
            fields = entry.fields or rendering.fields
            named = route_handler(self.route.name, fields, status_text=rendering.status_text)
            handler = named(entry.handler)
            if entry.method == "GET":
                router.add_get(entry.path, handler)
            else:
                router.add_route(entry.method, entry.path, handler)

    # ------------------------------------------------------------------ shared steps

    async def caller(self, request: web.Request) -> Identity:
        """The identity of a caller whose Origin (if any) is one of ours; 401/403 otherwise."""
        check_origin(request, self.config.origins)
        return await self.services.identity.require(request)

    async def note_owner(self, identity: Identity) -> None:
        """Record whose uploads this user's hash names on this route, for the sweep: one S3
        request the first time a process signs or grants for this user and route, none after
        (gateway/completion/owners.py)."""
        await self.services.owners.note(self.services.storage, identity, self.route.name)

    async def read_json(self, request: web.Request, model: type[Model], limit: int) -> Model:
        """The body as ``model``: 413 ``body-too-large`` past ``limit`` bytes, 400 ``not-json``,
        400 ``invalid-field`` naming the first field pydantic refuses. No body reads as {}."""
        data = parse_json(await read_limited(request, limit) or b"{}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise invalid_field(exc) from None

    async def open_upload(
        self, request: web.Request, *, key_param: str | None = None, multipart: bool = False
    ) -> tuple[Identity, UploadToken]:
        """The caller, and their upload: the token in ``{upload_id}`` opens for this user and
        route (403 otherwise), unexpired (410); with ``key_param``, the query names the token's key
        (400 ``key-missing`` without it); with ``multipart``, the token is a multipart
        upload's. Otherwise 403 ``key-mismatch``.

        ``key-mismatch`` is not ``key-not-yours`` (``completion.check_own_key``): the key may
        well be under the user's prefix, it is just not the one this token was granted for;
        clients see both reasons (docs/errors.md).
        """
        identity = await self.caller(request)
        token = self.services.tokens.open(
            request.match_info["upload_id"],
            route=self.route.name,
            user=identity.user,
            now=self.clock(),
        )
        if key_param is not None:
            key = request.query.get(key_param)
            if key is None:
                raise BadRequest(
                    f"the object key must be passed as ?{key_param}=", reason="key-missing"
                )
            if key != token.key:
                raise Forbidden("the key is not this upload's", reason="key-mismatch")
        if multipart and token.multipart_id is None:
            raise Forbidden("the key is not this upload's", reason="key-mismatch")
        return identity, token

    async def finish_multipart(
        self,
        identity: Identity,
        token: UploadToken,
        parts: Sequence[tuple[int, str]],
        rules: PartRules,
    ) -> None:
        """Complete the token's S3 multipart upload from the client's ``(number, ETag)`` list,
        checked against what S3 holds (ListParts) and by the protocol's ``rules``.

        An earlier attempt may have completed it already (its object is in the uploads bucket,
        or already stored) and then failed upstream or lost its answer: S3 no longer knows the
        upload id, nothing is done here, and the completion checks the object all the same.
        """
        storage = self.services.storage
        multipart_id = token.multipart_id
        assert multipart_id is not None  # noqa: S101 - callers open multipart tokens only
        if (
            await storage.head(storage.uploads_bucket, token.key) is not None
            or await self.services.completion.find_stored(self.route, identity, token.key)
            is not None
        ):
            return
        field = {} if rules.field is None else {"field": rules.field}
        claimed = sorted(parts, key=lambda part: part[0]) if rules.sort else list(parts)
        numbers = [number for number, _ in claimed]
        if not claimed or numbers != list(range(1, len(claimed) + 1)):
            raise BadRequest(rules.numbering, reason="parts-invalid", **field)
        listed = {part.number: part for part in await storage.list_parts(token.key, multipart_id)}
        for number, etag in claimed:
            held = listed.get(number)
            if held is None or held.etag.strip('"') != etag.strip('"'):
                raise BadRequest(
                    f"part {number} was not uploaded with that ETag",
                    reason="part-mismatch",
                    **field,
                )
        total = sum(listed[n].size for n in numbers)
        if rules.exact_size:
            if total != token.size:
                raise BadRequest(
                    f"the parts hold {total} bytes, the upload declared {token.size}",
                    reason="size-mismatch",
                )
            if token.part_size is not None and any(
                listed[n].size != token.part_size for n in numbers[:-1]
            ):
                # S3 would refuse a short middle part only at CompleteMultipartUpload, less
                # readably.
                raise BadRequest(
                    f"every part but the last must hold {token.part_size} bytes",
                    reason="part-size-mismatch",
                    **field,
                )
        elif total > token.size:
            # It can never be completed here: free the parts now rather than in a day.
            await storage.abort_multipart(token.key, multipart_id)
            raise PayloadTooLarge(
                f"the parts hold more than {token.size} bytes", reason="too-large"
            )
        # S3's own spelling of each ETag, which the client's matched above.
        await storage.complete_multipart(
            token.key, multipart_id, [(n, listed[n].etag) for n in numbers]
        )

    async def delete_by_key(self, request: web.Request) -> web.Response:
        """``DELETE P/files?key=<upload key>``: remove the caller's completed upload (or what is
        left of it in the uploads bucket); the upstream is told with ``upload.deleted``. 204,
        or 404."""
        identity = await self.caller(request)
        key = request.query.get("key")
        if not key:
            raise BadRequest("the upload's key must be passed as ?key=", reason="key-missing")
        # The completion checks the prefix before it reads or touches anything.
        deleted = await self.services.completion.delete_upload(
            self.route, identity, key, passed_headers(request, self.config)
        )
        if not deleted:
            raise NotFound("no such upload: it was never completed, or is already deleted")
        return web.Response(status=204)

    async def not_found(self, request: web.Request) -> web.Response:
        """Everything else under the route's path is the gateway's namespace: never proxied."""
        raise NotFound(f"no such {self.protocol_name} endpoint", reason="not-found")
