"""Whether an uploaded object may complete on its route (size, declared and sniffed types, ETag),
and how its stored copy is served (Content-Type, Content-Disposition)."""

from __future__ import annotations

import re

from .. import sniff
from ..problems import BadRequest, PayloadTooLarge, UnsupportedMediaType
from ..rules import content_type_allowed
from ..rules.media import canonical_type, is_inert, media_essence
from ..storage import StoredObject
from .interfaces import CompletionRequest
from .naming import etag_value

_GENERIC_TYPES = frozenset({"binary/octet-stream", "application/octet-stream"})
OCTET_STREAM = "application/octet-stream"
# Formats that are text through and through: text/*, JSON, XML and JavaScript in any spelling.
_TEXT_FORMAT = re.compile(r"text/.+|application/(.+\+)?(json|xml)|application/[a-z.-]*script")


def same_etag(a: str, b: str) -> bool:
    """Whether two ETags name the same bytes, however they are quoted or marked weak."""
    return etag_value(a) == etag_value(b)


def check_upload(
    req: CompletionRequest, upload: StoredObject, sniffed: str | None, *, text: bool = False
) -> str:
    """The content type to store the upload with, once it passes the route's rules (else raise).

    ``sniffed`` is what its first bytes show, ``text`` whether they are text (``sniff.is_text``).
    When the browser declared no type (S3 then says ``binary/octet-stream``), a sniffed type
    stands in for it, so the copy is served as what it is; see ``served_type`` for the rest.
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
    return served_type(stored_type, sniffed, text=text)


def served_type(declared: str, sniffed: str | None, *, text: bool) -> str:
    """The Content-Type of the stored copy, for a declared type the route admits.

    The declared type stays when no browser renders it as script whatever the bytes (inert), when
    the bytes show that very format (or a container of it: a .docx is a zip), or when it is a text
    format and the bytes are text. Otherwise the bytes decide: their sniffed type, or, when they
    show nothing known, ``application/octet-stream``, which no browser renders. So a type a
    browser would sniff (``application/unknown``) or an unverifiable one never reaches a reader.
    """
    essence = media_essence(declared)
    canonical = canonical_type(declared)
    if essence is None or canonical is None:
        return OCTET_STREAM
    if is_inert(essence):
        return canonical
    if sniffed is not None:
        return canonical if essence in sniff.acceptable_names(sniffed, essence) else sniffed
    if text and _TEXT_FORMAT.fullmatch(essence) and "unknown" not in essence:
        return canonical
    return OCTET_STREAM


def content_disposition(content_type: str) -> str:
    """``attachment`` for a stored copy whose type is not inert: a browser opening it (presigned
    GET, CDN) saves it instead of rendering it in the storage origin; ``inline`` otherwise."""
    essence = media_essence(content_type)
    return "inline" if essence is not None and is_inert(essence) else "attachment"


def _essence(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
