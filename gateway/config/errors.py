"""Config problems with the YAML path of the key at fault, in words that show the value."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, SecretStr, ValidationError


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


def _is_secret(root: type[BaseModel], loc: tuple[int | str, ...]) -> bool:
    """Whether ``loc`` names a SecretStr field (or an item of one), whose value is never shown."""
    model: Any = root
    annotation: Any = None
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", {})
        if part not in fields:
            return False
        annotation = fields[part].annotation
        model = next(
            (t for t in _types_in(annotation) if isinstance(t, type) and issubclass(t, BaseModel)),
            None,
        )
    return SecretStr in _types_in(annotation)


def _types_in(annotation: Any) -> list[Any]:
    return [annotation, *(t for arg in get_args(annotation) for t in _types_in(arg))]


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
        loc = tuple(item["loc"]) + tuple(ctx.get("at", ()))
        path = _loc_to_path(loc)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problems.append(ConfigProblem(path, "unknown key"))
            continue
        if item["type"] == "missing":
            problems.append(ConfigProblem(path, "is required"))
            continue
        found, value = _lookup(tree, loc)
        secret = _is_secret(root, loc)
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
