"""JSON bodies and message params within bounds: nesting depth, number of values, text length.

Python's json module parses a value nested up to its recursion limit (about a thousand
levels), and the encoder then fails on that same value once it sits inside a message a few
levels deeper: whatever the gateway accepts it must be able to pass on. So every protocol reads
its JSON bodies with ``parse_json``, which refuses more than ``MAX_DEPTH`` levels, and the
completion checks the params of its message with ``check_params`` before any S3 work, the bounds
form bodies already have (``gateway.forms``), whichever adapter built them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NoReturn

from . import forms
from .problems import BadRequest

# Levels of objects and arrays, the outermost counting one. A form field nests up to
# forms.MAX_DEPTH levels below the body's own, so a body of params may nest one more.
MAX_DEPTH = forms.MAX_DEPTH + 1
# Values of any kind (objects, arrays, strings, ...) in params: as many as the largest form
# body the form parser accepts can build (each field a value and its enclosing groups).
MAX_PARAM_VALUES = forms.MAX_FIELDS * MAX_DEPTH
# Characters of names and strings in params: what a Fine Uploader success body may carry.
MAX_PARAM_TEXT = 64 * 1024


def _too_deep(max_depth: int) -> BadRequest:
    return BadRequest(
        f"the JSON body nests deeper than {max_depth} levels",
        reason="json-too-deep",
        limit=max_depth,
    )


def _not_json(detail: str) -> BadRequest:
    return BadRequest(detail, reason="not-json")


def _no_constants(name: str) -> NoReturn:
    # NaN and Infinity are not JSON (RFC 8259 section 6): passed on, a strict parser upstream
    # would refuse the whole message.
    raise _not_json(f"the body is not JSON ({name} is not a JSON number)")


# Built once: ``json.loads`` with ``parse_constant`` builds a decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def parse_json(body: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of a body; 400 ``not-json``, or ``json-too-deep`` past ``max_depth``."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        value = _DECODER.decode(text)
    except RecursionError:
        # Nested past the interpreter's own limit: deeper than any bound here.
        raise _too_deep(max_depth) from None
    except (UnicodeDecodeError, ValueError):
        raise _not_json("the body is not JSON") from None
    # Fewer brackets than levels allowed cannot nest too deep: most bodies skip the check.
    if text.count("[") + text.count("{") > max_depth and _deeper_than(value, max_depth):
        raise _too_deep(max_depth)
    return value


def check_params(params: Mapping[str, Any]) -> None:
    """Refuse params a completion message should not carry: 400 ``params-too-deep`` or
    ``params-too-large``, naming the limit. The params object itself is the first level."""
    depth, values, text = _measure(
        params, max_depth=MAX_DEPTH, max_values=MAX_PARAM_VALUES, max_text=MAX_PARAM_TEXT
    )
    if depth > MAX_DEPTH:
        raise BadRequest(
            f"the params nest deeper than {MAX_DEPTH} levels",
            reason="params-too-deep",
            limit=MAX_DEPTH,
        )
    if values > MAX_PARAM_VALUES:
        raise BadRequest(
            f"the params hold more than {MAX_PARAM_VALUES} values",
            reason="params-too-large",
            limit=MAX_PARAM_VALUES,
        )
    if text > MAX_PARAM_TEXT:
        raise BadRequest(
            f"the params hold more than {MAX_PARAM_TEXT} characters of text",
            reason="params-too-large",
            limit=MAX_PARAM_TEXT,
        )


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether the objects and arrays of a decoded value nest past ``limit`` levels.

    Level by level rather than node by node: every signing request's body comes here (a POST
    policy has a dozen brackets, more than the levels allowed), and one pass per level over
    plain lists costs a quarter of a stack of (node, level) pairs. A loop: the decoder allowed
    about a thousand levels."""
    if type(value) is not dict and type(value) is not list:
        return False
    level: list[Any] = [value]
    for _ in range(limit):
        below: list[Any] = []
        for node in level:
            for item in node.values() if type(node) is dict else node:
                if type(item) is dict or type(item) is list:
                    below.append(item)
        if not below:
            return False
        level = below
    return True


def _measure(
    value: Any, *, max_depth: int, max_values: int | None, max_text: int | None
) -> tuple[int, int, int]:
    """(deepest level, values, characters of names and strings), stopping once one passes its
    bound. A loop, not recursion: the value may be nested as deep as the parser allowed."""
    depth = values = text = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        values += 1
        if isinstance(node, Mapping):
            depth = max(depth, level)
            for name, item in node.items():
                text += len(name) if isinstance(name, str) else 0
                stack.append((item, level + 1))
        elif isinstance(node, list | tuple):
            depth = max(depth, level)
            stack.extend((item, level + 1) for item in node)
        elif isinstance(node, str):
            text += len(node)
        if (
            depth > max_depth
            or (max_values is not None and values > max_values)
            or (max_text is not None and text > max_text)
        ):
            break
    return depth, values, text
