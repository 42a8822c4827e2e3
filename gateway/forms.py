"""PHP/Rails-style bracketed form bodies (``nested[a]=1&nested[list][0]=x``) as nested values.

Fine Uploader encodes ``uploadSuccess.params`` this way (``qq.obj2url``). Our own parser: the
Python ones (querystring-parser, which drf-to-s3 used) are unmaintained, and this one enforces
limits so a body cannot make the gateway build deep or wide structures.
"""

from __future__ import annotations

import re
from typing import TypeAlias
from urllib.parse import parse_qsl

from .problems import BadRequest

FormValue: TypeAlias = "str | list[FormValue] | dict[str, FormValue]"

MAX_FIELDS = 200
MAX_DEPTH = 5
MAX_INDEX = 1000

_NAME_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")

# Branches are built as dicts keyed by segment; a ``_ListNode`` (first segment numeric or ``[]``)
# becomes a list, in index order, once every field is in.
_Tree: TypeAlias = "dict[str, str | _Tree]"


class _ListNode(dict[str, "str | _Tree"]):
    """A branch whose keys are list indices."""


def _invalid(detail: str) -> BadRequest:
    return BadRequest(detail, reason="form-invalid")


def _segments(name: str) -> list[str]:
    match = _NAME_RE.fullmatch(name)
    if match is None:
        raise _invalid(f"field name {name[:40]!r} is not name or name[a][b]")
    parts = [match.group(1), *_SEGMENT_RE.findall(match.group(2))]
    if len(parts) - 1 > MAX_DEPTH:
        raise _invalid(f"field {match.group(1)[:40]!r} nests deeper than {MAX_DEPTH} levels")
    return parts


def _is_index(segment: str) -> bool:
    return segment.isascii() and segment.isdigit()


def _index(segment: str, items: _ListNode) -> str:
    """The list index a segment names; ``[]`` appends after the highest index so far."""
    if segment == "":
        number = max((int(k) for k in items), default=-1) + 1
    elif _is_index(segment):
        # Length first: int() of thousands of digits is slow, and refused past 4300.
        number = int(segment) if len(segment) <= 6 else MAX_INDEX + 1
    else:
        raise _invalid(f"group {segment[:40]!r} mixes list indices and names")
    if number > MAX_INDEX:
        raise _invalid(f"list index {number} is above {MAX_INDEX}")
    return str(number)


def _insert(root: _Tree, parts: list[str], value: str) -> None:
    node, name = root, parts[0]
    for segment in parts[1:]:
        child = node.get(name)
        if child is None:
            child = _ListNode() if segment == "" or _is_index(segment) else {}
            node[name] = child
        if isinstance(child, str):
            raise _invalid(f"field {parts[0][:40]!r} is both a value and a group")
        if isinstance(child, _ListNode):
            name = _index(segment, child)
        elif segment == "" or _is_index(segment):
            raise _invalid(f"field {parts[0][:40]!r} mixes list indices and names")
        else:
            name = segment
        node = child
    if name in node:
        raise _invalid(f"field {parts[0][:40]!r} is sent twice, or is both a value and a group")
    node[name] = value


def _freeze(tree: _Tree) -> dict[str, FormValue]:
    return {name: _thaw(value) for name, value in tree.items()}


def _thaw(value: str | _Tree) -> FormValue:
    if isinstance(value, str):
        return value
    if isinstance(value, _ListNode):
        # Sparse indices keep their order and close their gaps, as PHP's foreach would see them.
        return [_thaw(value[k]) for k in sorted(value, key=int)]
    return _freeze(value)


def parse_form(body: bytes | str) -> dict[str, FormValue]:
    """The nested fields of a form-urlencoded body; BadRequest ``form-invalid`` on any excess.

    Limits: at most MAX_FIELDS fields, MAX_DEPTH bracket levels, list indices up to MAX_INDEX;
    a field sent twice, or used both as a value and as a group, is refused rather than guessed.
    """
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise _invalid(f"the form body cannot be parsed: {exc}") from None
    root: _Tree = {}
    for name, value in pairs:
        _insert(root, _segments(name), value)
    return _freeze(root)
