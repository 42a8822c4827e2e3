"""Whether an uploaded object may complete on its route: size, declared and sniffed types, ETag."""

from __future__ import annotations

from .. import sniff
from ..problems import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ..rules import content_type_allowed
from ..storage import StoredObject
from .interfaces import CompletionRequest
from .naming import etag_value

_GENERIC_TYPES = frozenset({"binary/octet-stream", "application/octet-stream"})


def same_etag(a: str, b: str) -> bool:
    """Whether two ETags name the same bytes, however they are quoted or marked weak."""
    return etag_value(a) == etag_value(b)


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


def _essence(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
