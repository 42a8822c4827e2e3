"""gateway.sniff: the media type an object's first bytes show, whatever its declared type."""

from __future__ import annotations

import gzip
import io
import struct
import wave
import zipfile
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.rules import content_type_allowed
from gateway.sniff import acceptable_names, is_text, names, sniff


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("hello.txt", "hello")
    return out.getvalue()


def _wav() -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as sound:
        sound.setnchannels(1)
        sound.setsampwidth(2)
        sound.setframerate(8000)
        sound.writeframes(b"\x00\x00" * 16)
    return out.getvalue()


def _bmp() -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, 1, 1, 1, 24, 0, 4, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 4, 0, 0, 54) + dib + b"\x00\x00\xff\x00"


def _ftyp(brand: bytes) -> bytes:
    return struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"isom"


BINARY = [
    pytest.param(_png(), "image/png", id="png"),
    pytest.param(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01", "image/jpeg", id="jpeg-jfif"),
    pytest.param(b"\xff\xd8\xff\xe1\x00\x18Exif\x00\x00", "image/jpeg", id="jpeg-exif"),
    pytest.param(b"GIF89a\x01\x00\x01\x00\x80\x00\x00", "image/gif", id="gif89a"),
    pytest.param(b"GIF87a\x01\x00\x01\x00\x80\x00\x00", "image/gif", id="gif87a"),
    pytest.param(b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00", "image/webp", id="webp"),
    pytest.param(_bmp(), "image/bmp", id="bmp"),
    pytest.param(b"II*\x00\x08\x00\x00\x00", "image/tiff", id="tiff-little-endian"),
    pytest.param(b"MM\x00*\x00\x00\x00\x08", "image/tiff", id="tiff-big-endian"),
    pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "application/pdf", id="pdf"),
    pytest.param(_zip(), "application/zip", id="zip"),
    pytest.param(gzip.compress(b"hello"), "application/gzip", id="gzip"),
    pytest.param(_ftyp(b"isom"), "video/mp4", id="mp4-isom"),
    pytest.param(_ftyp(b"mp42"), "video/mp4", id="mp4-mp42"),
    pytest.param(_ftyp(b"qt  "), "video/quicktime", id="quicktime"),
    pytest.param(_ftyp(b"heic"), "image/heic", id="heic"),
    pytest.param(_ftyp(b"avif"), "image/avif", id="avif"),
    pytest.param(
        b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08"
        b"\x42\x82\x84webm\x42\x87\x81\x04",
        "video/webm",
        id="webm",
    ),
    pytest.param(b"ID3\x04\x00\x00\x00\x00\x00\x23TSSE", "audio/mpeg", id="mp3-id3"),
    pytest.param(b"\xff\xfb\x90\x64\x00\x00\x00\x00", "audio/mpeg", id="mp3-frame"),
    pytest.param(_wav(), "audio/wav", id="wav"),
    pytest.param(b"OggS\x00\x02\x00\x00\x00\x00", "audio/ogg", id="ogg"),
    pytest.param(b"%!PS-Adobe-3.0\n%%Title: x", "application/postscript", id="postscript"),
    pytest.param(
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16), "application/x-ole-storage", id="cfb-doc"
    ),
]


@pytest.mark.parametrize(("data", "expected"), BINARY)
def test_binary_formats_are_named_by_their_signature(data: bytes, expected: str) -> None:
    """Each format the routes allow is recognised from its magic number, whatever it claims."""
    assert sniff(data) == expected


HTML = [
    pytest.param(b"<!DOCTYPE html><html><body>hi", id="doctype"),
    pytest.param(b"<html>", id="html-tag"),
    pytest.param(b"  \r\n\t<HtMl lang=en>", id="whitespace-and-case"),
    pytest.param(b"<script>alert(document.cookie)</script>", id="script"),
    pytest.param(b"<iframe src=//evil>", id="iframe"),
    pytest.param(b"<a href=x>", id="anchor"),
    pytest.param(b"<p>", id="paragraph"),
    pytest.param(b"<body onload=alert(1)>", id="body"),
    pytest.param(b"<!-- just a comment -->", id="comment"),
    pytest.param(b"\xef\xbb\xbf<html>", id="utf8-bom"),
    pytest.param("\ufeff<html><script>".encode("utf-16-le"), id="utf16-le-bom"),
    pytest.param("\ufeff<html><script>".encode("utf-16-be"), id="utf16-be-bom"),
    # Chromium skips the vertical tab too (base::TrimWhitespaceASCII): issue 13's stored script.
    pytest.param(b"\x0b<html><script>alert(1)</script>", id="vertical-tab"),
    pytest.param(b"\x0b\x0c \t\r\n\x0b<script>", id="every-whitespace"),
    pytest.param(b"\xef\xbb\xbf\x0b<body>", id="bom-then-vertical-tab"),
    # Chromium matches its tags as prefixes: each of these runs script as application/unknown.
    pytest.param(b"<bogus-tag><script>alert(1)</script>", id="b-prefix"),
    pytest.param(b"<bx>", id="b-prefix-short"),
    pytest.param(b"<pre><script>alert(1)</script>", id="p-prefix"),
    pytest.param(b"<abbr>", id="a-prefix"),
    pytest.param(b"<H1X>", id="h1-prefix-upper-case"),
    pytest.param(b"<!DOCTYPE HTMLX>", id="doctype-prefix"),
    pytest.param(b"<!--[if IE]>", id="conditional-comment"),
]


@pytest.mark.parametrize("data", HTML)
def test_html_is_recognised_however_it_starts(data: bytes) -> None:
    """A page a browser would render as HTML is named text/html: no route stores it as an image."""
    assert sniff(data) == "text/html"


SVG = [
    pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script>', id="svg"),
    pytest.param(b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg">', id="xml-decl"),
    pytest.param(
        b'<?xml version="1.0"?>\n<!-- Generator: an editor -->\n<!DOCTYPE svg PUBLIC "-//W3C//DTD'
        b' SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n<svg version="1.1">',
        id="illustrator-style",
    ),
    pytest.param(b"<!-- made by hand -->\n<svg>", id="comment-first"),
    pytest.param(b"<svg:svg xmlns:svg='http://www.w3.org/2000/svg'>", id="prefixed"),
    pytest.param(b"  <SVG>", id="upper-case"),
]


@pytest.mark.parametrize("data", SVG)
def test_svg_is_told_apart_from_html(data: bytes) -> None:
    """SVG runs script too: it gets its own name, which a route must list to accept it."""
    assert sniff(data) == "image/svg+xml"


def test_xml_and_xhtml_are_named_as_such() -> None:
    """XHTML (script-capable) and other XML are named, and never pass as an inert type."""
    assert sniff(b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml">') == (
        "application/xhtml+xml"
    )
    assert sniff(b'<?xml version="1.0"?><feed>') == "application/xml"
    assert sniff(b"<!DOCTYPE html><body><svg></svg>") == "text/html"


UNKNOWN = [
    pytest.param(b"", id="empty"),
    pytest.param(b"hello, world", id="plain-text"),
    pytest.param(b"BMW 3 series, 1998, 140000 km", id="text-starting-with-BM"),
    pytest.param(b"<custom-element>", id="unknown-tag"),
    pytest.param(b"<xmp>", id="tag-no-browser-sniffs"),
    pytest.param(b"a < b and <html> later", id="html-not-first"),
    # Not whitespace to Chromium nor the standard: Chromium downloads these as binary.
    pytest.param(b"\x00<html><script>alert(1)</script>", id="nul-first"),
    pytest.param(b"\x1c<html><script>alert(1)</script>", id="file-separator-first"),
    pytest.param(b"\xa0<html>", id="latin1-nbsp-first"),
    pytest.param(b"\x00\x00\x00\x18ftypzzzz\x00\x00\x00\x00", id="unknown-ftyp-brand"),
    pytest.param(b"RIFF\x00\x00\x00\x00ABCD", id="unknown-riff"),
    pytest.param(b"\xff\xd8", id="truncated-jpeg"),
    pytest.param(b"\xff\xff\xff\xff", id="not-an-mpeg-frame"),
]


@pytest.mark.parametrize("data", UNKNOWN)
def test_unknown_content_is_not_guessed(data: bytes) -> None:
    """Without a known signature the answer is None, and the declared type alone decides."""
    assert sniff(data) is None


_TAGS = ["!doctype html", "html", "head", "script", "iframe", "h1", "div", "font", "table", "a",
         "style", "title", "b", "body", "br", "p", "!--"]  # fmt: skip


_ANY_CASE_TAG = st.sampled_from(_TAGS).flatmap(
    lambda tag: st.tuples(*(st.sampled_from((c.lower(), c.upper())) for c in tag)).map("".join)
)


@given(st.text(alphabet=" \t\n\x0b\x0c\r", max_size=40), _ANY_CASE_TAG, st.binary(max_size=40))
def test_every_page_chromium_or_the_standard_sniffs_as_html_is_markup(
    space: str, tag: str, tail: bytes
) -> None:
    """Generated: any run of WHATWG or Chromium whitespace, then "<" and one of their tags in any
    case, then anything, is markup that runs script: never None, so no declared type decides."""
    assert sniff(f"{space}<{tag}".encode() + tail) in {"text/html", "image/svg+xml"}


TEXT = [
    pytest.param(b"", True, id="empty"),
    pytest.param(b"plain words\r\n\ttabbed\x0c\x1b[0m", True, id="ascii-controls-of-text"),
    pytest.param("caf\u00e9 \u2603".encode(), True, id="utf-8"),
    pytest.param("\ufefftext".encode("utf-16-le"), True, id="utf-16-bom"),
    pytest.param(b"\x00\x01binary", False, id="nul"),
    pytest.param(b"text\x0bwith a vertical tab", False, id="vertical-tab-is-binary"),
    pytest.param(_png(), False, id="png"),
]


@pytest.mark.parametrize(("data", "expected"), TEXT)
def test_text_or_binary_follows_the_standard(data: bytes, expected: bool) -> None:
    """WHATWG 7.1's binary data bytes decide whether a declared text type is kept over bytes
    that sniff as nothing known; a byte order mark makes text."""
    assert is_text(data) is expected


@given(st.binary(max_size=512))
def test_any_bytes_give_a_media_type_or_none(data: bytes) -> None:
    """Arbitrary client bytes never make the sniffer raise (it runs on untrusted objects)."""
    result = sniff(data)
    assert result is None or result.count("/") == 1


@pytest.mark.parametrize("data", [*HTML, *SVG])
@pytest.mark.parametrize("patterns", [["*/*"], ["image/*"], ["text/*"], ["application/*"]])
def test_active_markup_passes_no_wildcard(data: bytes, patterns: list[str]) -> None:
    """HTML and SVG sniffed from an upload are refused by any wildcard allow-list (stored XSS)."""
    sniffed = sniff(data)
    assert sniffed is not None
    assert not any(content_type_allowed(name, patterns) for name in names(sniffed))


def test_aliases_name_the_same_format() -> None:
    """A route that lists the name a browser sends (audio/x-wav) still accepts the sniffed WAV."""
    assert "audio/x-wav" in names("audio/wav")
    assert "application/x-zip-compressed" in names("application/zip")
    assert names("image/png") == {"image/png"}


def test_a_container_accepts_the_declared_format_it_holds() -> None:
    """A .docx sniffs as zip; its declared type counts, but an image type never hides a zip."""
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    assert docx in acceptable_names("application/zip", docx)
    assert "application/epub+zip" in acceptable_names("application/zip", "application/epub+zip")
    assert "image/png" not in acceptable_names("application/zip", "image/png")
    assert "text/html" not in acceptable_names("application/zip", "text/html")
    assert acceptable_names("image/png", docx) == {"image/png"}
