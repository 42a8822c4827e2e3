"""The media type an object's first bytes show, whatever type its uploader declared.

Pure functions over a prefix of the object (a few KiB from a ranged GET). The completion checks
the sniffed type against the route's allow-list as well as the declared one, so a page that
renders as HTML cannot be stored as ``image/png``. Only the formats that matter to an upload
gateway are known; anything else is ``None`` (unknown), and the completion then keeps the
declared type only if it is inert, or a text type over text bytes (``is_text``).

Signatures are the published magic numbers of each format. Markup detection is a superset of
both the WHATWG MIME Sniffing standard (section 7.1, "identifying a resource with an unknown MIME
type") and what Chromium does (net/base/mime_sniffer.cc), so no page a browser sniffs as HTML is
missed:

- leading whitespace is the standard's (tab, LF, FF, CR, space) plus the vertical tab (0x0B),
  which Chromium's TrimWhitespaceASCII also skips;
- a tag matches as a case-insensitive prefix, as in Chromium (``<b`` matches ``<bogus>``,
  ``<p`` matches ``<pre>``), where the standard also wants a space or ``>`` after it;
- a UTF-8 or UTF-16 byte order mark is skipped, and SVG is told apart from HTML, since both
  run script when a browser renders them.

The PyPI sniffers were tried and not used: ``puremagic`` names a bare zip as a Word document and
BMP as ``image/x-ms-bmp``, ``filetype`` names WAV ``audio/x-wav`` and has had no release since
2022, and neither recognises HTML or SVG, which is the check that matters most here.
"""

from __future__ import annotations

import re
import struct

# WHATWG MIME Sniffing 7.1 and Chromium's kSniffableTags: "<" and any of these starts HTML
# ("<!--" too, handled with "<?xml" below). Chromium matches them as prefixes where the standard
# wants a space or ">" after them: prefixes it is.
_HTML_TAGS = (
    b"!doctype html", b"html", b"head", b"script", b"iframe", b"h1", b"div", b"font", b"table",
    b"a", b"style", b"title", b"b", b"body", b"br", b"p",
)  # fmt: skip
# The standard's whitespace and Chromium's (base::TrimWhitespaceASCII adds the vertical tab).
_WHITESPACE = b" \t\n\x0b\x0c\r"
# WHATWG 7.1 "binary data bytes": text has none of them (Chromium's LooksLikeBinary agrees).
_BINARY_BYTES = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f]")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_SVG_TAG = re.compile(rb"<svg[\s>/:]")
_HTML_TAG = re.compile(rb"<html[\s>/]")
_DOCTYPE_SVG = re.compile(rb"<!doctype\s+svg[\s>]")

# ISO base media file format (MP4, QuickTime, HEIF, AVIF, 3GP): the ftyp box's major brand.
_FTYP_BRANDS: dict[bytes, str] = {
    b"avif": "image/avif", b"avis": "image/avif",
    b"heic": "image/heic", b"heix": "image/heic", b"heim": "image/heic", b"heis": "image/heic",
    b"hevc": "image/heic", b"hevx": "image/heic",
    b"mif1": "image/heif", b"msf1": "image/heif",
    b"qt  ": "video/quicktime",
    b"M4A ": "audio/mp4", b"M4B ": "audio/mp4",
    b"3gp4": "video/3gpp", b"3gp5": "video/3gpp", b"3gp6": "video/3gpp", b"3g2a": "video/3gpp2",
    b"isom": "video/mp4", b"iso2": "video/mp4", b"iso4": "video/mp4", b"iso5": "video/mp4",
    b"iso6": "video/mp4", b"mp41": "video/mp4", b"mp42": "video/mp4", b"avc1": "video/mp4",
    b"dash": "video/mp4", b"M4V ": "video/mp4", b"MSNV": "video/mp4", b"f4v ": "video/mp4",
}  # fmt: skip

# Names browsers and tools send for the same format: the sniffed name is checked with them all.
_ALIASES: dict[str, frozenset[str]] = {
    "image/jpeg": frozenset({"image/jpg", "image/pjpeg"}),
    "image/bmp": frozenset({"image/x-bmp", "image/x-ms-bmp"}),
    "image/heic": frozenset({"image/heif"}),
    "audio/wav": frozenset({"audio/x-wav", "audio/wave", "audio/vnd.wave"}),
    "audio/mpeg": frozenset({"audio/mp3"}),
    "application/zip": frozenset({"application/x-zip-compressed", "application/x-zip"}),
    "application/gzip": frozenset({"application/x-gzip"}),
    "video/x-msvideo": frozenset({"video/avi", "video/msvideo"}),
}

# Formats that are containers of others: a declared type of this family is consistent with the
# container's signature (a .docx starts like any zip; the first bytes cannot say more).
_CONTAINERS: dict[str, re.Pattern[str]] = {
    "application/zip": re.compile(
        r"application/(vnd\.openxmlformats-officedocument\.[a-z0-9.+-]+"
        r"|vnd\.ms-[a-z0-9-]+\.[a-z0-9.-]*macroenabled[a-z0-9.-]*"
        r"|vnd\.oasis\.opendocument\.[a-z0-9.+-]+|java-archive|vnd\.android\.package-archive"
        r"|[a-z0-9.-]+\+zip)"
    ),
    "application/gzip": re.compile(
        r"application/(x-gtar|x-compressed-tar|x-tgz|x-tar\+gzip|[a-z0-9.-]+\+gzip)"
    ),
    "application/x-ole-storage": re.compile(
        r"application/(msword|vnd\.ms-[a-z0-9.-]+|vnd\.visio|x-msi|x-ms-installer|x-msword"
        r"|vnd\.ms-outlook|x-ole-storage|cdfv2)"
    ),
}

# BITMAPCOREHEADER .. BITMAPV5HEADER sizes: "BM" alone would match ordinary text.
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def sniff(prefix: bytes) -> str | None:
    """The media type the first bytes of a file show, or None when they show none we know."""
    return _binary(prefix) or _markup(prefix)


def _binary(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data.startswith(b"RIFF") and len(data) >= 12:
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav", b"AVI ": "video/x-msvideo"}.get(
            data[8:12]
        )
    if data.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "image/tiff"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"%!PS-Adobe-"):
        return "application/postscript"
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        # Compound File Binary: .doc, .xls, .ppt, .msi, .msg (MS-CFB 2.2, the header signature).
        return "application/x-ole-storage"
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "application/zip"
    if data.startswith(b"\x1f\x8b\x08"):
        return "application/gzip"
    if data.startswith(b"\x1a\x45\xdf\xa3"):
        # EBML: Matroska and WebM differ only in the DocType element near the start.
        return "video/webm" if b"webm" in data[:64] else "video/x-matroska"
    if data.startswith(b"ID3") or _mpeg_audio_frame(data):
        return "audio/mpeg"
    if data.startswith(b"OggS"):
        return "audio/ogg"
    if data.startswith(b"fLaC"):
        return "audio/flac"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12])
    if data.startswith(b"BM") and len(data) >= 18 and data[6:10] == b"\x00\x00\x00\x00":
        (dib_size,) = struct.unpack_from("<I", data, 14)
        if dib_size in _BMP_DIB_SIZES:
            return "image/bmp"
    return None


def _mpeg_audio_frame(data: bytes) -> bool:
    # An MPEG-1/2 layer III frame sync: 11 set bits, a version other than "reserved", layer III,
    # and a bitrate index other than "bad" (ISO/IEC 11172-3 2.4.1.3).
    if len(data) < 3 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return False
    version, layer, bitrate = (data[1] >> 3) & 3, (data[1] >> 1) & 3, data[2] >> 4
    return version != 1 and layer == 1 and bitrate != 0xF


def _text(data: bytes) -> bytes:
    """The prefix as lower-case ASCII-ish bytes, byte order mark removed, whitespace stripped."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16-le" if data[0] == 0xFF else "utf-16-be"
        usable = data[2 : 2 + (len(data) - 2) // 2 * 2]
        data = usable.decode(codec, errors="replace").encode("utf-8", errors="replace")
    elif data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.lstrip(_WHITESPACE).lower()


def _markup(data: bytes) -> str | None:
    text = _text(data)
    if not text.startswith(b"<"):
        return None
    if _SVG_TAG.match(text) or _DOCTYPE_SVG.match(text):
        return "image/svg+xml"
    if text.startswith((b"<?xml", b"<!--")):
        # An XML declaration or a comment may come before the root element: its name decides.
        svg, html = _SVG_TAG.search(text), _HTML_TAG.search(text)
        if svg and (html is None or svg.start() < html.start()):
            return "image/svg+xml"
        if text.startswith(b"<!--"):
            return "text/html"
        return "application/xhtml+xml" if html else "application/xml"
    if any(text.startswith(tag, 1) for tag in _HTML_TAGS):
        return "text/html"
    return None


def is_text(prefix: bytes) -> bool:
    """Whether the first bytes are text by WHATWG 7.1's "text or binary" rule: a byte order mark,
    or no binary data byte (what Chromium also decides for a ``text/plain`` answer)."""
    return prefix.startswith(_BOMS) or _BINARY_BYTES.search(prefix) is None


def names(media_type: str) -> frozenset[str]:
    """A sniffed type with the other names the same format goes by (``image/jpg`` ...)."""
    return _ALIASES.get(media_type, frozenset()) | {media_type}


def acceptable_names(sniffed: str, declared: str | None) -> frozenset[str]:
    """The names under which a sniffed type may be allowed: its own, or the declared one when
    the declared type is a format inside the sniffed container (a .docx sniffs as zip)."""
    found = names(sniffed)
    if declared is None:
        return found
    essence = declared.split(";", 1)[0].strip().lower()
    container = _CONTAINERS.get(sniffed)
    if container is not None and container.fullmatch(essence):
        return found | {essence}
    return found
