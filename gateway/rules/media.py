"""Content types: which a route admits, which are active, which are inert; declared files.

Three classes of declared type, from what a browser does with a stored copy opened as a page:

- **active**: a browser renders it as a document that can run script (HTML, XHTML, SVG, any XML,
  MHTML), runs it as code or style (JavaScript, CSS, Flash, WebAssembly), or sniffs it and may
  find HTML (``unknown/unknown``, ``application/unknown``: Chromium's net/base/mime_sniffer.cc,
  WHATWG MIME Sniffing 7.1). A wildcard never admits one: a route must list it literally.
- **inert**: an explicit allow-list of families browsers only ever show as media or download,
  whatever the bytes: images other than SVG, audio, video, fonts. The stored copy keeps such a
  type and is served inline.
- everything else: admitted by a wildcard, stored as an attachment. That includes PDF (viewers run
  a PDF's JavaScript: pdf.js ran arbitrary script in 2024, CVE-2024-4367, and old Reader plugins
  ran it in the hosting site's origin), and ``text/plain`` and ``application/octet-stream``,
  which Chromium and Firefox never sniff as HTML but the Internet Explorer engine (still in Edge's
  IE mode) does; browsers download octet-stream and archives anyway, so ``attachment`` costs
  them nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

from ..problems import BadRequest, PayloadTooLarge, UnsupportedMediaType
from .context import SigningContext, show

ACTIVE_TYPES = frozenset({
    # Sniffed by browsers for HTML (Chromium's kUnknownMimeTypes, WHATWG 7.1), and Firefox's
    # internal names for "no type" and "guess from the extension".
    "unknown/unknown", "application/unknown", "application/x-unknown-content-type",
    "application/x-vnd.mozilla.guess-from-ext",
    "text/html", "application/xhtml+xml", "image/svg+xml", "text/xml", "application/xml",
    "text/javascript", "application/javascript", "application/x-javascript",
    "application/ecmascript", "text/ecmascript", "text/xsl", "application/xslt+xml",
    "text/css", "application/wasm", "application/x-mimearchive",
    "application/x-shockwave-flash", "application/futuresplash",
    "application/vnd.adobe.flash.movie",
    # Internet Explorer runs these: HTML components (behaviors) and HTML applications.
    "text/x-component", "application/hta",
})  # fmt: skip
# multipart/x-mixed-replace renders each part as its own type; message/rfc822 and
# multipart/related are MHTML. No member of either family is a file a wildcard should reach.
_ACTIVE_FAMILIES = frozenset({"multipart", "message"})
# Any spelling of these in a subtype: x-httpd-html, vbscript, x-scriptlet, svg-xml, x-unknown...
_ACTIVE_WORDS = ("html", "script", "svg", "xsl", "css", "unknown")
_SUBTYPE_TOKEN = re.compile(r"[.+-]")

INERT_FAMILIES = frozenset({"image", "audio", "video", "font"})

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(rf"{_TCHARS}/{_TCHARS}")
_PARAM_RE = re.compile(rf"[ \t]*{_TCHARS}=(?:{_TCHARS}|\"(?:[\t !#-\[\]-~]|\\[\t -~])*\")[ \t]*")
_CHARSET_RE = re.compile(r"[ \t]*charset=\"?([A-Za-z0-9._:-]{1,40})\"?[ \t]*", re.IGNORECASE)
# Distinct declared types whose answers are remembered: every signature request (each chunk of a
# Fine Uploader upload) checks one, and clients send a few. Values longer than _LONGEST_TYPE are
# refused before the cache, so a cached key is small; the oldest answers go first past the bound.
TYPE_CACHE_SIZE = 256
_LONGEST_TYPE = 255


def media_essence(content_type: str) -> str | None:
    """``type/subtype`` in lower case, or None when the value is not a well-formed media type."""
    if len(content_type) > _LONGEST_TYPE:
        return None
    return _media_essence(content_type)


@functools.lru_cache(maxsize=TYPE_CACHE_SIZE)
def _media_essence(content_type: str) -> str | None:
    essence, *params = content_type.split(";")
    # A declared type is concrete: "*" belongs to the route's patterns only, and a browser
    # sniffs "*/*" or a type without a subtype as it sniffs no type at all.
    if not _MEDIA_TYPE_RE.fullmatch(essence) or "*" in essence:
        return None
    if not all(_PARAM_RE.fullmatch(param) for param in params):
        return None
    return essence.lower()


def is_active(essence: str) -> bool:
    """Whether a browser may render, run or sniff this type (lower-case essence) as script."""
    if len(essence) > _LONGEST_TYPE:
        return _is_active(essence)  # answered, never remembered: no large keys in the cache
    return _cached_is_active(essence)


def _is_active(essence: str) -> bool:
    family, _, subtype = essence.partition("/")
    if essence in ACTIVE_TYPES or family in _ACTIVE_FAMILIES or family == "unknown":
        return True
    # Every XML flavour: an XML document may hold XHTML script elements or an XSLT stylesheet.
    if "xml" in _SUBTYPE_TOKEN.split(subtype):
        return True
    # PostScript is a page description language no browser runs, whatever its name ends with.
    return any(word in subtype.replace("postscript", "") for word in _ACTIVE_WORDS)


_cached_is_active = functools.lru_cache(maxsize=TYPE_CACHE_SIZE)(_is_active)


def is_inert(essence: str) -> bool:
    """Whether no browser renders this type (lower-case essence) as anything that runs script,
    whatever the bytes: the types a stored copy may be served inline with."""
    return essence.partition("/")[0] in INERT_FAMILIES and not is_active(essence)


def canonical_type(content_type: str) -> str | None:
    """The type as the stored copy is served with it: the lower-case essence, and for text a
    ``charset`` that is a plain name; other parameters go (no browser needs them, and a quoted
    one is where parsers disagree). None when the value is not a well-formed media type."""
    essence = media_essence(content_type)
    if essence is None:
        return None
    if essence.startswith("text/"):
        for param in content_type.split(";")[1:]:
            charset = _CHARSET_RE.fullmatch(param)
            if charset:
                return f"{essence}; charset={charset.group(1).lower()}"
    return essence


def content_type_allowed(content_type: str, patterns: Sequence[str]) -> bool:
    """Whether a declared media type matches the route's allow-list (parameters are ignored).

    ``type/*`` and ``*/*`` match types that are not active; active types need a literal entry.
    """
    essence = media_essence(content_type)
    if essence is None:
        return False
    wanted = {pattern.strip().lower() for pattern in patterns}
    if essence in wanted:
        return True
    if is_active(essence):
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
