"""gateway/jsonbody.py: the one JSON reader of every protocol, and its depth bound."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.jsonbody import MAX_DEPTH, parse_json
from gateway.problems import BadRequest

# Scalars, strings holding brackets and quotes among them: the bound is on structure only.
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(alphabet='[]{}"\\ab', max_size=6),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(alphabet="[{k", max_size=3), inner, max_size=3),
    ),
    max_leaves=40,
)


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(value=_VALUES, encoding=st.sampled_from(["utf-8", "utf-16", "utf-32"]))
def test_a_body_is_refused_exactly_when_it_nests_past_the_bound(value: Any, encoding: str) -> None:
    """Whatever the shape (objects, arrays, brackets inside strings, any JSON encoding), a body
    is read when it nests at most MAX_DEPTH levels and refused json-too-deep otherwise: the
    level-by-level check agrees with a plain recursive count."""
    body = json.dumps(value).encode(encoding)
    if _depth(value) > MAX_DEPTH:
        with pytest.raises(BadRequest) as refused:
            parse_json(body)
        assert (refused.value.reason, refused.value.extra["limit"]) == ("json-too-deep", MAX_DEPTH)
    else:
        assert parse_json(body) == value


@pytest.mark.parametrize("levels", [MAX_DEPTH, MAX_DEPTH + 1, 975, 100_000])
def test_the_bound_holds_at_and_past_it(levels: int) -> None:
    """At the bound a body is read; one level more, the review's 975 or far past the decoder's
    own recursion limit, it is a 400 naming the limit, never a RecursionError."""
    body = b"[" * levels + b"]" * levels
    if levels <= MAX_DEPTH:
        assert _depth(parse_json(body)) == levels
        return
    with pytest.raises(BadRequest) as refused:
        parse_json(body)
    assert refused.value.reason == "json-too-deep"


@pytest.mark.parametrize("extra", [0, 1])
def test_many_brackets_at_the_bound_are_read_and_one_level_more_is_not(extra: int) -> None:
    """A policy-like body with more brackets than levels allowed (so the check runs), nesting
    exactly MAX_DEPTH levels, is read; the same with one level more is refused."""
    inner = "[" * (MAX_DEPTH - 1 + extra) + "]" * (MAX_DEPTH - 1 + extra)
    body = ('{"conditions": [{"a": "["}, {"b": "]"}, ["x", 1]], "deep": ' + inner + "}").encode()
    if extra:
        with pytest.raises(BadRequest) as refused:
            parse_json(body)
        assert refused.value.reason == "json-too-deep"
    else:
        assert parse_json(body)["conditions"][2] == ["x", 1]


@pytest.mark.parametrize("body", [b"[NaN]", b'{"a": Infinity}', b"\xff\xfe\x00", b"{", b""])
def test_what_is_not_json_is_not_json(body: bytes) -> None:
    """NaN, Infinity, bad encodings and broken text are 400 not-json."""
    with pytest.raises(BadRequest) as refused:
        parse_json(body)
    assert refused.value.reason == "not-json"
