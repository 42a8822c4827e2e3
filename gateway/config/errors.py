"""Config problems with the YAML path of the key at fault, in words that show the value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from .variants import choices_text, tag_key, variants


@dataclass(frozen=True)
class ConfigProblem:
    """One problem: the YAML path of the key (``routes[1].max_size``) and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Every problem found in a config, each with its YAML path."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def join(path: str, key: Any) -> str:
    """``path.key``, or ``key`` at the top of the document."""
    return f"{path}.{key}" if path else str(key)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else join(path, part)
    return path


def _lookup(tree: Any, loc: tuple[int | str, ...]) -> tuple[bool, Any]:
    node = tree
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        else:
            return False, None
    return True, node


@dataclass(frozen=True)
class _Place:
    """Where a pydantic location points in the models."""

    loc: tuple[int | str, ...]  # the YAML path: pydantic's location without the union tags
    annotation: Any  # of the last key, None when no model declares it
    choices: dict[str, type[BaseModel]]  # the tagged union the location ends at ({} if none)
    chosen: dict[str, type[BaseModel]]  # the union whose tag the location passed last
    tag: str | None  # that tag, when it is the location's last but one part


def _place(root: type[BaseModel], loc: tuple[int | str, ...]) -> _Place:
    """Walk ``loc`` through the models from ``root``: a tagged union (a route's protocol) adds
    its tag to pydantic's location (``routes.0.api.part_size``), which no YAML path has."""
    models: list[type[BaseModel]] = [root]
    annotation: Any = None
    clean: list[int | str] = []
    choices: dict[str, type[BaseModel]] = {}
    chosen: dict[str, type[BaseModel]] = {}
    tag: str | None = None
    for at, part in enumerate(loc):
        if isinstance(part, int):
            clean.append(part)
            continue
        if part in choices:
            models, chosen, choices = [choices[part]], choices, {}
            tag = part if at == len(loc) - 2 else None
            continue
        clean.append(part)
        field = next((m.model_fields[part] for m in models if part in m.model_fields), None)
        annotation = None if field is None else field.annotation
        choices = variants(annotation)
        models = [
            t for t in _types_in(annotation) if isinstance(t, type) and issubclass(t, BaseModel)
        ]
    return _Place(tuple(clean), annotation, choices, chosen, tag)


def _is_secret(place: _Place) -> bool:
    """Whether the place is a SecretStr field (or an item of one), whose value is never shown."""
    return SecretStr in _types_in(place.annotation)


def _types_in(annotation: Any) -> list[Any]:
    return [annotation, *(t for arg in get_args(annotation) for t in _types_in(arg))]


def _other_variant_key(place: _Place, key: int | str) -> str | None:
    """For a key the chosen variant refuses, which variants take it: "for api routes only"."""
    if place.tag is None or not isinstance(key, str):
        return None
    owners = [t for t, model in place.chosen.items() if key in model.model_fields]
    if not owners:
        return None
    what = tag_key(place.chosen) or "tag"
    # The list the item is in names what it is: "routes".
    items = place.loc[-3] if len(place.loc) >= 3 and isinstance(place.loc[-2], int) else ""
    kind = f" {items}" if isinstance(items, str) and items else ""
    return f"is for {' and '.join(owners)}{kind} only; this one's {what} is {place.tag}"


def _tag_problem(place: _Place, tree: Any) -> ConfigProblem:
    """A tagged item whose tag picks no model: say what the tag key must be."""
    key = tag_key(place.choices)
    allowed = choices_text(list(place.choices))
    found, item = _lookup(tree, place.loc)
    if key is None or (found and not isinstance(item, dict)):
        subject = _subject(found, item, secret=False)
        return ConfigProblem(_loc_to_path(place.loc), f"{subject} should be a mapping")
    path = _loc_to_path((*place.loc, key))
    if not found or key not in item:
        return ConfigProblem(path, f"is required, one of {allowed}")
    subject = _subject(True, item[key], secret=False)
    return ConfigProblem(path, f"{subject} should be {allowed}")


# pydantic's own messages start with the kind of thing that failed: replace it by the value.
_SUBJECT_RE = re.compile(r"^(Input|String|List|Value|Dictionary|URL input) should ")
_PYDANTIC_WORDS = (
    (re.compile(r"a valid dictionary( or instance of \w+)?"), "a mapping"),
    (re.compile(r"a valid list"), "a list"),
)


def _subject(found: bool, value: Any, secret: bool) -> str:
    if not found:
        return "the default"  # errors pinned to a key the YAML leaves out
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if secret and isinstance(value, str):
        return f"the secret ({len(value)} character{'' if len(value) == 1 else 's'})"
    return "the secret" if secret else show(value)


def problems_from(error: ValidationError, tree: Any, root: type[BaseModel]) -> list[ConfigProblem]:
    """pydantic's errors on ``tree`` (as ``root``) at their YAML paths, secrets hidden."""
    problems = []
    for item in error.errors(include_url=False):
        ctx = item.get("ctx") or {}
        place = _place(root, tuple(item["loc"]) + tuple(ctx.get("at", ())))
        loc = place.loc
        path = _loc_to_path(loc)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] in ("union_tag_not_found", "union_tag_invalid") and place.choices:
            problems.append(_tag_problem(place, tree))
            continue
        if item["type"] == "extra_forbidden":
            elsewhere = _other_variant_key(place, loc[-1]) if loc else None
            problems.append(ConfigProblem(path, elsewhere or "unknown key"))
            continue
        if item["type"] == "missing":
            problems.append(ConfigProblem(path, "is required"))
            continue
        found, value = _lookup(tree, loc)
        secret = _is_secret(place)
        subject = _subject(found, value, secret)
        for pattern, words in _PYDANTIC_WORDS:
            message = pattern.sub(words, message)
        if _SUBJECT_RE.match(message):
            message = _SUBJECT_RE.sub(f"{subject} should ", message)
        elif not secret and found and message.startswith(show(value)):
            pass  # parse_size and friends already name the value
        elif message[:1].islower():
            message = f"{subject} {message}"
        else:
            message = f"{message} (got {subject})"
        problems.append(ConfigProblem(path, message))
    return problems


def show(value: Any) -> str:
    """A YAML value as the config would spell it: quoted strings, null, true and false."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)
