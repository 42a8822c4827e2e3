"""The configuration reference, generated from the models: every key, its type, default, meaning.

docs/configuration.md prints ``markdown()`` (``python -m gateway.docgen`` writes it), so the
reference cannot drift from the code: each key's meaning is the ``description`` of its field in
``models.py``, which the JSON Schema carries too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, BeforeValidator
from pydantic.fields import FieldInfo

from .models import Config
from .sizes import GiB, MiB, parse_size
from .variants import common_base, tag_key, variants


@dataclass(frozen=True)
class Key:
    """One key of the config: its dotted path (``routes[].max_size``) and field."""

    path: str
    field: FieldInfo
    model: type[BaseModel]  # the model the field belongs to
    section: type[BaseModel] | None  # the model it holds, when it is a section
    # The variants that take the key (("protocol: api",)), when not every one does.
    only: tuple[str, ...] = ()


def _section_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (alone, optional, or as list items; for a tagged union, what
    every variant has in common), and whether it is a list."""
    choices = variants(annotation)
    if choices:
        return common_base(list(choices.values())), get_origin(annotation) is list
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = get_origin(annotation)
    for arg in get_args(annotation):
        model, _ = _section_model(arg)
        if model is not None:
            return model, origin is list
    return None, False


def _own_keys(annotation: Any, common: type[BaseModel]) -> dict[str, list[str]]:
    """The keys of a tagged union's variants that not every variant has: name -> tags."""
    own: dict[str, list[str]] = {}
    for tag, variant in variants(annotation).items():
        for name in variant.model_fields:
            if name not in common.model_fields:
                own.setdefault(name, []).append(tag)
    return own


def keys(
    model: type[BaseModel] = Config,
    prefix: str = "",
    only: tuple[str, ...] = (),
    names: frozenset[str] | None = None,
) -> Iterator[Key]:
    """Every key below ``model``, depth first, in the order the model declares them; after a
    tagged union's common keys, each variant's own, marked with the variants that take them."""
    for name, field in model.model_fields.items():
        if names is not None and name not in names:
            continue
        section, is_list = _section_model(field.annotation)
        path = f"{prefix}{name}"
        yield Key(path, field, model, section, only)
        if section is None:
            continue
        inner = f"{path}[]." if is_list else f"{path}."
        yield from keys(section, inner, only)
        choices = variants(field.annotation)
        tag = tag_key(choices)
        for own, tags in _own_keys(field.annotation, section).items():
            marks = tuple(f"{tag}: {t}" for t in tags)
            yield from keys(choices[tags[0]], inner, marks, frozenset({own}))


def _is_size(field: FieldInfo) -> bool:
    return any(
        isinstance(item, BeforeValidator) and item.func is parse_size for item in field.metadata
    )


def _bounds(prop: dict[str, Any], show: Any = str) -> str:
    low = prop.get("minimum")
    high = prop.get("maximum")
    above = prop.get("exclusiveMinimum")
    if low is not None and high is not None:
        return f"{show(low)} to {show(high)}"
    parts = []
    if low is not None:
        parts.append(f">= {show(low)}")
    if above is not None:
        parts.append(f"> {show(above)}")
    if high is not None:
        parts.append(f"<= {show(high)}")
    return ", ".join(parts)


def _with_bounds(what: str, prop: dict[str, Any], show: Any = str) -> str:
    bounds = _bounds(prop, show)
    return f"{what}, {bounds}" if bounds else what


def _type_text(prop: dict[str, Any], field: FieldInfo | None = None) -> str:
    """A short human name of a property's type, from pydantic's own schema of it."""
    if field is not None and _is_size(field):
        return _with_bounds("size", prop, _size)
    if "$ref" in prop:
        return "mapping"
    alternatives = prop.get("anyOf") or prop.get("oneOf")
    if alternatives:
        options = [o for o in alternatives if o.get("type") != "null"]
        text = " or ".join(dict.fromkeys(_type_text(o) for o in options))
        return f"{text} or null" if len(options) < len(alternatives) else text
    if "enum" in prop:
        return " | ".join(f"`{v}`" for v in prop["enum"])
    kind = prop.get("type")
    if kind == "array":
        items = _type_text(prop.get("items", {}))
        plural = {"URL": "URLs", "string": "strings", "mapping": "mappings"}
        text = f"list of {plural.get(items, items)}"
        return f"{text}, at least {prop['minItems']}" if prop.get("minItems") else text
    if kind == "string":
        if prop.get("format") == "uri":
            return "URL"
        if prop.get("format") == "password":
            return "string, secret"
        return "string"
    if kind == "integer":
        return _with_bounds("integer", prop)
    if kind == "number":
        return _with_bounds("number", prop)
    if kind == "boolean":
        return "boolean"
    if kind == "object":
        return "mapping"
    return str(kind or "value")


def _size(value: int) -> str:
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (1024, "KiB")):
        if value and value % unit == 0:
            return f"{value // unit}{name}"
    return str(value)


def _default(key: Key) -> str:
    if key.field.is_required():
        return "required"
    value = key.field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "its keys' defaults"
    if _is_size(key.field) and isinstance(value, int):
        return f"`{_size(value)}`"
    if isinstance(value, str):
        return f"`{json.dumps(value)}`" if not value or value != value.strip() else f"`{value}`"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _property(model: type[BaseModel], name: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    prop: dict[str, Any] = schema["properties"][name]
    return prop


def _only(key: Key) -> str:
    return " or ".join(f"`{mark}`" for mark in key.only) + " only." if key.only else ""


def _row(key: Key, said: tuple[str, ...] = ()) -> str:
    """A key's row; its note of the variants that take it, unless its section ``said`` it."""
    name = key.path.rsplit(".", 1)[-1]
    prop = _property(key.model, name)
    only = _only(key) if key.only != said else ""
    meaning = " ".join(filter(None, [only, key.field.description]))
    return (
        f"| `{key.path}` | {_cell(_type_text(prop, key.field))} | {_default(key)} "
        f"| {_cell(meaning)} |"
    )


def _table(rows: list[str]) -> str:
    return "\n".join(["| key | type | default | meaning |", "| --- | --- | --- | --- |", *rows])


def _heading(key: Key) -> str:
    """A section's title and what it is; the section model's docstring says what it holds."""
    section = key.section
    assert section is not None  # noqa: S101 - callers pass sections only
    kind = _cell(_type_text(_property(key.model, key.path.rsplit(".", 1)[-1]), key.field))
    default = _default(key)
    if default == "its keys' defaults":
        default = "optional: leave it out and each key has its default"
    elif default != "required":
        default = f"default {default}"
    intro = _cell(" ".join(filter(None, [_only(key), section.__doc__ or key.field.description])))
    return f"### `{key.path}`\n\n{kind}, {default}. {intro}{_by_variant(key)}"


def _by_variant(key: Key) -> str:
    """For a tagged union (routes): which keys each variant adds to the common ones."""
    section = key.section
    choices = variants(key.field.annotation)
    if section is None or not choices:
        return ""
    tag = tag_key(choices)
    own = _own_keys(key.field.annotation, section)
    adds, none = [], []
    for value in choices:
        names = [f"`{name}`" for name, tags in own.items() if value in tags]
        if not names:
            none.append(f"`{tag}: {value}`")
            continue
        listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        adds.append(f"{listed} with `{tag}: {value}` only")
    rest = f" ({' and '.join(none)} adds none)" if none else ""
    return (
        f" Its `{tag}` decides which other keys it takes: {', '.join(adds)}{rest}. A route "
        f"refuses the keys of another {tag}."
    )


def markdown() -> str:
    """The reference: the top-level keys, then one table per section, in the models' order."""
    all_keys = list(keys())
    top = [k for k in all_keys if "." not in k.path]
    parts = ["### Top level", "", _cell(Config.__doc__ or ""), "", _table([_row(k) for k in top])]
    for key in all_keys:
        if key.section is None:
            continue
        inside = [
            k
            for k in all_keys
            if issubclass(k.model, key.section)
            and k.path.startswith(key.path)
            and k.section is None
        ]
        parts += ["", _heading(key), "", _table([_row(k, key.only) for k in inside])]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(markdown(), end="")
