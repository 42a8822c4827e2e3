"""Reading a tagged union of models (a route's model chosen by its ``protocol``) back out of an
annotation: which model each tag picks, and which key holds the tag.

errors.py needs it to turn pydantic's locations (which carry the tag: ``routes.0.api.part_size``)
into YAML paths, reference.py to say which keys belong to which protocol.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, Tag


def _types_in(annotation: Any) -> list[Any]:
    return [annotation, *(t for arg in get_args(annotation) for t in _types_in(arg))]


def variants(annotation: Any) -> dict[str, type[BaseModel]]:
    """``{tag: model}`` of the tagged union inside ``annotation`` (alone or as list items), in
    the union's order; empty when there is none."""
    found: dict[str, type[BaseModel]] = {}
    for node in _types_in(annotation):
        args = get_args(node)
        tags = [a for a in args[1:] if isinstance(a, Tag)]
        if tags and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            found[tags[0].tag] = args[0]
    return found


def tag_key(choices: dict[str, type[BaseModel]]) -> str | None:
    """The key whose value is the tag: the field every variant declares as ``Literal[its tag]``."""
    if not choices:
        return None
    first_tag, first = next(iter(choices.items()))
    for name, field in first.model_fields.items():
        literal = get_origin(field.annotation) is Literal
        if not literal or get_args(field.annotation) != (first_tag,):
            continue
        if all(
            name in model.model_fields and get_args(model.model_fields[name].annotation) == (tag,)
            for tag, model in choices.items()
        ):
            return name
    return None


def common_base(models: list[type[BaseModel]]) -> type[BaseModel] | None:
    """The nearest model every one of ``models`` derives from (itself when there is one)."""
    if not models:
        return None
    for candidate in models[0].__mro__:
        if (
            isinstance(candidate, type)
            and issubclass(candidate, BaseModel)
            and candidate is not BaseModel
            and all(issubclass(m, candidate) for m in models)
        ):
            return candidate
    return None


def choices_text(tags: list[str]) -> str:
    """``'a', 'b' or 'c'``: the words pydantic uses for a choice of literals."""
    quoted = [f"'{t}'" for t in tags]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"
