"""Content types a route admits (active types only when listed literally), and declared files."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..problems import BadRequest, PayloadTooLarge, UnsupportedMediaType
from .context import SigningContext, show

ACTIVE_TYPES = frozenset({
    "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
    "text/javascript", "application/javascript", "application/x-javascript",
    "application/ecmascript", "text/ecmascript", "text/xsl", "application/xslt+xml",
    "application/x-shockwave-flash", "multipart/x-mixed-replace", "message/rfc822",
    "multipart/related", "application/x-mimearchive",
})  # fmt: skip
_ACTIVE_WORDS = ("html", "javascript", "ecmascript", "jscript")

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(rf"{_TCHARS}/{_TCHARS}")
_PARAM_RE = re.compile(rf"[ \t]*{_TCHARS}=(?:{_TCHARS}|\"(?:[\t !#-\[\]-~]|\\[\t -~])*\")[ \t]*")


def _media_essence(content_type: str) -> str | None:
    """``type/subtype`` in lower case, or None when the value is not a well-formed media type."""
    if len(content_type) > 255:
        return None
    essence, *params = content_type.split(";")
    # A declared type is concrete: "*" belongs to the route's patterns only.
    if not _MEDIA_TYPE_RE.fullmatch(essence) or "*" in essence:
        return None
    if not all(_PARAM_RE.fullmatch(param) for param in params):
        return None
    return essence.lower()


def _is_active(essence: str) -> bool:
    # Anything a browser may render as a document or run as script: HTML and MHTML, every XML
    # flavour (XHTML, SVG, XSLT), every JavaScript spelling, Flash.
    subtype = essence.partition("/")[2]
    if essence in ACTIVE_TYPES or subtype == "xml" or subtype.endswith("+xml"):
        return True
    return any(word in subtype for word in _ACTIVE_WORDS)


def content_type_allowed(content_type: str, patterns: Sequence[str]) -> bool:
    """Whether a declared media type matches the route's allow-list (parameters are ignored).

    ``type/*`` and ``*/*`` match inert types only; active types need a literal entry.
    """
    essence = _media_essence(content_type)
    if essence is None:
        return False
    wanted = {pattern.strip().lower() for pattern in patterns}
    if essence in wanted:
        return True
    if _is_active(essence):
        return False
    return "*/*" in wanted or essence.partition("/")[0] + "/*" in wanted


def check_declared_file(*, size: int, content_type: str, ctx: SigningContext) -> None:
    """Refuse a declared file that is too large, of a disallowed type, or of a nonsense size."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadRequest("The size must be a non-negative integer.", reason="size-invalid")
    if size > ctx.max_size:
        raise PayloadTooLarge(f"The file is larger than {ctx.max_size} bytes.", reason="too-large")
    if not content_type_allowed(content_type, ctx.content_types):
        raise UnsupportedMediaType(
            f"{show(content_type)} is not allowed here.", reason="content-type-not-allowed"
        )
