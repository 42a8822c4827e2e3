"""Request targets: what is refused outright, and every path a target may name upstream.

Pure functions, shared by every way in: the guard (gateway/guard.py) runs ``refusal`` on each
request, whether the front sends it straight to the proxy or through aiohttp's router, and the
proxy, the only place a client's target goes upstream, tests it against ``Reserved``.

A fragment (``#``) is refused (RFC 9112 3.2: a request target has none), so no parser, the
gateway's or the upstream's, gets to decide where the path ends. ``%23`` is a literal ``#``
inside a path segment, not a fragment, and passes untouched, like any other escape: it matters
only through ``readings``, which also read a path as a stack that decodes and parses again does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from urllib.parse import unquote

# %00, and the overlong UTF-8 forms: C0/C1 lead bytes (2-byte encodings of ASCII, %c0%ae is
# "."), E0 80-9F and F0 80-8F (3- and 4-byte encodings of what fits in fewer). Legacy decoders
# (IIS, Tomcat before CVE-2008-2938's fix) turned these into "." and "/".
_UNSAFE_ESCAPE_RE = re.compile(r"%00|%c[01]|%e0%[89]|%f0%8", re.IGNORECASE)

# What makes a raw path differ from every reading of it but its lower-cased self: escapes,
# backslashes, params, empty and dot segments, a fragment, and non-ASCII (NFKC folds some of it
# into "/" and ".").
_NEEDS_READING = re.compile(r"[%\\;#]|//|/\.|[^\x00-\x7f]")

# Where a stack that parses decoded text again ends the path.
_PATH_END = re.compile(r"[?#]")

# IIS's %uXXXX escapes (%u002f is "/"), which urllib does not decode.
_U_ESCAPE = re.compile(r"%[uU]([0-9a-fA-F]{4})")

# How many times a path is percent-decoded: some stacks decode twice (a proxy rule, then the
# framework), so ``%252f`` may reach a router as ``/``; a third pass costs nothing.
_DECODINGS = 3

REFUSALS = {
    "fragment-in-target": "the request target holds a fragment (#), which HTTP/1.1 does not send",
    "nul-in-path": "the path holds a NUL",
    "overlong-utf8": "the path holds an overlong UTF-8 form",
}


def refusal(raw_target: str) -> str | None:
    """Why a raw request target must be refused (a key of REFUSALS), or None when it may pass."""
    if "#" in raw_target:
        return "fragment-in-target"
    path = raw_target.split("?", 1)[0]
    if "\x00" in path:
        return "nul-in-path"
    if _UNSAFE_ESCAPE_RE.search(path):
        return "nul-in-path" if "%00" in path else "overlong-utf8"
    return None


def origin_form(raw_target: str) -> str | None:
    """The path and query of a request target, byte for byte; None if it has no path.

    A server must accept the absolute form ``GET http://host/path`` (RFC 9112 3.2.2); only its
    path and query go upstream, so the upstream URL is never built from a client's host.
    """
    if raw_target.startswith("/"):
        return raw_target
    scheme, sep, rest = raw_target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    cut = min(
        (i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1), default=len(rest)
    )
    path = rest[cut:]
    return path if path.startswith("/") else "/" + path


def canonical(path: str) -> str:
    """A configured path as readings are compared: lower-case, no trailing ``/``."""
    return path.lower().rstrip("/")


def readings(path: str) -> set[str]:
    """Every path an upstream stack may route ``path`` (a raw path, no query) to, canonical.

    Each stack applies its own subset of: percent-decoding once or more (and IIS's ``%u``),
    parsing the decoded text again (so a decoded ``?`` or ``#`` ends it), NFKC (the fullwidth
    solidus U+FF0F is ``/``), ``\\`` as ``/``, dropping ``;params`` (Servlet containers),
    collapsing ``//``, resolving dot segments, and reading ``//host/path`` as a network-path
    reference (WHATWG URL, urllib). A path is taken for what any combination makes of it; a
    transform is tried only where the text holds what it acts on.
    """
    found: set[str] = set()
    for view in _views(path):
        found |= _readings_of(view)
    return found


def _readings_of(view: str) -> set[str]:
    """``readings`` of one decoded (or raw) form of a path."""
    found: set[str] = set()
    for backslash in (False, True) if "\\" in view else (False,):
        text = view.replace("\\", "/") if backslash else view
        split = text.split("/")[1:]
        # //host/path: what follows the authority, read as its own path.
        network = split[2:] if text.startswith("//") else None
        for params in (False, True) if ";" in text else (False,):
            for segments in (split, network):
                if segments is None:
                    continue
                if params:
                    segments = [s.split(";", 1)[0] for s in segments]
                collapsed = [s for s in segments if s]
                # Unresolved, collapsed is enough: if a stack's unresolved reading lies
                # under a reserved path, so does this one (reserved paths hold no "//").
                found.add(_joined(collapsed))
                found.add(_joined(_resolved(collapsed)))
                if len(collapsed) != len(segments):
                    # WHATWG URL: ".." takes an empty segment away as it would any other; a
                    # router may collapse what empty segments remain after it.
                    found.add(_joined([s for s in _resolved(segments) if s]))
    return found


def _joined(segments: list[str]) -> str:
    return canonical("/" + "/".join(segments))


def _views(path: str) -> Iterator[str]:
    """``path`` as written and decoded up to _DECODINGS times; each decoded form also cut at the
    first ``?`` or ``#`` and NFKC-normalised, as a stack that parses decoded text again reads it."""
    seen: set[str] = set()
    current = path
    for depth in range(_DECODINGS + 1):
        if depth:
            decoded = current
            if "%u" in decoded or "%U" in decoded:
                decoded = _U_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), decoded)
            decoded = unquote(decoded)
            if decoded == current:
                break
            current = decoded
        candidates = [current]
        if "?" in current or "#" in current:
            candidates.append(_PATH_END.split(current, maxsplit=1)[0])
        if not current.isascii():
            candidates += [unicodedata.normalize("NFKC", c) for c in candidates]
        for candidate in candidates:
            if candidate not in seen:
                seen.add(candidate)
                yield candidate


def _resolved(segments: list[str]) -> list[str]:
    """RFC 3986 5.2.4 on a segment list: ``.`` goes, ``..`` takes the segment before it away."""
    out: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    # "/a/." and "/a/.." end in a directory: their readings end in "/", which canonical drops.
    return out


class Reserved:
    """Paths (and everything below them) that only the gateway may call upstream."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._exact = tuple(canonical(p) for p in paths)
        self._below = tuple(p + "/" for p in self._exact)
        self._segments = tuple(tuple(p.split("/")[1:]) for p in self._exact)

    def _names(self, reading: str) -> bool:
        return reading in self._exact or reading.startswith(self._below)

    def _may_name(self, view: str) -> bool:
        """Whether some reading of ``view`` could name a reserved path: every reading is made of
        pieces of the view, so each segment of the path it names must appear in the view."""
        lower = view.lower()
        return any(all(s in lower for s in segments) for segments in self._segments)

    def named_by(self, target: str) -> bool:
        """Whether the origin-form ``target`` (path and query) names a reserved path in any
        reading; the common path (no escape, dot, param...) costs one regex search, and an
        escaped one that holds no reserved path's segments little more than its decoding."""
        if not self._exact:
            return False
        path = target.split("?", 1)[0]
        if _NEEDS_READING.search(path) is None:
            return self._names(canonical(path))
        return any(
            any(map(self._names, _readings_of(view)))
            for view in _views(path)
            if self._may_name(view)
        )
