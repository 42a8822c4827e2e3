"""The bracketed form parser: Fine Uploader's success bodies, and the limits that bound it."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.forms import MAX_DEPTH, MAX_FIELDS, MAX_INDEX, parse_form
from gateway.problems import BadRequest

# The success body Fine Uploader 5.16.2 sent (captured from its npm build).
CAPTURED = (
    "nested%5Ba%5D=1+2&nested%5Blist%5D%5B0%5D=x&nested%5Blist%5D%5B1%5D=y&top=t"
    "&key=a08348b8-9a24-4b81-94c0-7789d58340b2.jpg&uuid=a08348b8-9a24-4b81-94c0-7789d58340b2"
    "&name=my+photo+(1).jpg&bucket=mybucket&etag=%22d41d8cd98f00b204e9800998ecf8427e%22"
    "&dataset=ds-1&Cache-Control=max-age%3D60"
)


def _refused(body: str | bytes) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_form(body)
    assert info.value.reason == "form-invalid"
    return info.value


def test_captured_fine_uploader_body_nests() -> None:
    """The captured success body rebuilds uploadSuccess.params as objects and lists."""
    assert parse_form(CAPTURED.encode()) == {
        "nested": {"a": "1 2", "list": ["x", "y"]},
        "top": "t",
        "key": "a08348b8-9a24-4b81-94c0-7789d58340b2.jpg",
        "uuid": "a08348b8-9a24-4b81-94c0-7789d58340b2",
        "name": "my photo (1).jpg",
        "bucket": "mybucket",
        "etag": '"d41d8cd98f00b204e9800998ecf8427e"',
        "dataset": "ds-1",
        "Cache-Control": "max-age=60",
    }


def test_append_and_sparse_indices_become_ordered_lists() -> None:
    """``[]`` appends, and sparse indices keep their order: lists never have holes."""
    assert parse_form("a[]=1&a[]=2&b[5]=z&b[2]=y&c[0][n]=p&c[1][n]=q") == {
        "a": ["1", "2"],
        "b": ["y", "z"],
        "c": [{"n": "p"}, {"n": "q"}],
    }


def test_blank_values_and_unicode_survive() -> None:
    """Empty values stay (a param may be ''), and UTF-8 names and values decode."""
    body = urlencode({"empty": "", "name": "café ☕.jpg", "m[ü]": "ö"})
    assert parse_form(body) == {"empty": "", "name": "café ☕.jpg", "m": {"ü": "ö"}}


def test_plain_fields_without_brackets() -> None:
    """A flat body is a flat dict (the POST-mode delete of Fine Uploader is one)."""
    assert parse_form(b"key=u%2Fa.jpg&bucket=b&qquuid=u&_method=DELETE") == {
        "key": "u/a.jpg",
        "bucket": "b",
        "qquuid": "u",
        "_method": "DELETE",
    }


def test_too_many_fields_refused() -> None:
    """More than MAX_FIELDS fields is refused, so a body cannot build a huge dict."""
    body = "&".join(f"f{i}=x" for i in range(MAX_FIELDS + 1))
    _refused(body)
    assert len(parse_form("&".join(f"f{i}=x" for i in range(MAX_FIELDS)))) == MAX_FIELDS


def test_too_deep_refused() -> None:
    """Nesting past MAX_DEPTH bracket levels is refused."""
    ok = "a" + "[x]" * MAX_DEPTH + "=1"
    assert parse_form(ok)
    _refused("a" + "[x]" * (MAX_DEPTH + 1) + "=1")


def test_large_list_index_refused() -> None:
    """An index above MAX_INDEX is refused (no list of a million holes), even with many digits."""
    assert parse_form(f"a[{MAX_INDEX}]=1") == {"a": ["1"]}
    _refused(f"a[{MAX_INDEX + 1}]=1")
    _refused("a[" + "9" * 5000 + "]=1")


@pytest.mark.parametrize(
    "body",
    [
        "a=1&a=2",  # sent twice
        "a=1&a[b]=2",  # value, then group
        "a[b]=2&a=1",  # group, then value
        "a[0]=1&a[x]=2",  # list, then name
        "a[x]=1&a[0]=2",  # dict, then index
        "a[b=1",  # unbalanced
        "a]b=1",
        "=1",  # no name
        "a[b]c=1",  # text after a bracket
    ],
)
def test_ambiguous_or_malformed_refused(body: str) -> None:
    """Ambiguous or malformed names are refused rather than guessed at."""
    _refused(body)


def test_invalid_utf8_refused() -> None:
    """Bytes that are not UTF-8 are refused, not replaced by U+FFFD."""
    _refused(b"name=%FF%FE")


@given(
    st.dictionaries(
        st.text(
            alphabet=st.characters(
                blacklist_categories=("Cs",), blacklist_characters="[]", min_codepoint=33
            ),
            min_size=1,
        ),
        st.text(alphabet=st.characters(blacklist_categories=("Cs",))),
        max_size=20,
    )
)
def test_flat_fields_round_trip(fields: dict[str, str]) -> None:
    """Any flat dict urlencoded parses back to itself."""
    assert parse_form(urlencode(fields)) == fields
