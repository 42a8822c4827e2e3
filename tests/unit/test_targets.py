"""Request targets, function by function (gateway/targets.py): refusals and reserved paths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import targets

FORWARD = "/internal/uploads/photos"
RESERVED = targets.Reserved([FORWARD, "/internal/uploads/api"])


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/a#b", "fragment-in-target"),
        ("/a?x=1#b", "fragment-in-target"),
        ("http://h/a#", "fragment-in-target"),
        ("/a%00b", "nul-in-path"),
        ("/a\x00b", "nul-in-path"),
        ("/a/%c0%ae%c0%ae/b", "overlong-utf8"),
        ("/a%23b", None),
        ("/a?q=%00", None),
        ("/plain/path?x=1", None),
    ],
)
def test_refusal_names_what_no_target_may_hold(target: str, reason: str | None) -> None:
    """A fragment anywhere (RFC 9112 3.2 allows none), NUL or overlong UTF-8 in the path are
    refused; ``%23`` is a literal ``#`` in a segment and passes, as does anything in a query."""
    assert targets.refusal(target) == reason


def test_origin_form_takes_path_and_query_of_the_absolute_form() -> None:
    """Only the path and query of ``http://host/...`` go on; the authority never does."""
    assert targets.origin_form("/a?b") == "/a?b"
    assert targets.origin_form("HTTP://u:p@h:1/a/b?c=1") == "/a/b?c=1"
    assert targets.origin_form("http://h?x") == "/?x"
    assert targets.origin_form("http://h#f") == "/#f"
    assert targets.origin_form("ftp://h/a") is None
    assert targets.origin_form("*") is None


def _percent(text: str) -> str:
    """Every byte of ``text`` as a %XX escape (quote would leave letters as they are)."""
    return "".join(f"%{byte:02X}" for byte in text.encode())


@st.composite
def spellings(draw: st.DrawFn) -> str:
    """The forward path (or a path below it) written as some upstream stack still resolves it
    to that path: escapes (once or twice, any case), IIS %u, case, dot and empty segments,
    ;params, backslashes, fullwidth solidi, a ``//host`` in front, a decoded ``?`` or ``#``
    after."""
    segments = ["internal", "uploads", "photos", *draw(st.sampled_from([[], ["x"], ["a", "b"]]))]
    separator = draw(st.sampled_from(["/", "\\", "%2f", "%5C", "//", "%EF%BC%8F"]))
    between = [[], ["."], ["%2e"], ["zz", ".."], ["zz", "%2e%2e"]]
    if separator != "//":
        # WHATWG URL's "..", which takes the empty segment before it away: no stack that
        # collapses "//" first would read this so.
        between.append(["", ".."])
    out: list[str] = []
    for index, segment in enumerate(segments):
        text = "".join(
            draw(
                st.sampled_from(
                    [c, c.upper(), _percent(c), _percent(_percent(c)), f"%u{ord(c):04x}"]
                )
            )
            for c in segment
        )
        if draw(st.booleans()):
            text += ";" + draw(st.sampled_from(["p", "jsessionid=1", ""]))
        out.append(text)
        if index < len(segments) - 1:
            out.extend(draw(st.sampled_from(between)))
    path = "/" + separator.join(out)
    path = draw(st.sampled_from(["", "//evil.example", "/%2Fevil.example"])) + path
    return path + draw(st.sampled_from(["", "/", "%3Fx=1", "%23frag", "/."]))


@settings(max_examples=400, deadline=None)
@given(spellings())
def test_every_spelling_of_a_forward_path_is_reserved(target: str) -> None:
    """Whatever mix of spellings a client uses, a path some upstream stack would resolve to the
    forward path (or below it) is named reserved."""
    assert RESERVED.named_by(target), target


@pytest.mark.parametrize(
    "target",
    [
        "/internal/uploads/photosx",
        "/internal/uploads/photo",
        "/internal/uploads",
        "/echo/internal/uploads/photos",
        "/files/My%20Holiday%20Photo.jpg",
        "/internal/uploads/photos-2/x",
        "/a%23/internal/uploads/photos",
    ],
)
def test_lookalikes_are_not_reserved(target: str) -> None:
    """A sibling, a parent, a path holding the forward path further down, and a path that a
    decoded ``#`` ends before it are the app's."""
    assert not RESERVED.named_by(target)
