"""Reading the config: YAML text (no duplicate keys), interpolation, validation, file errors."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import ConfigError, ConfigProblem, problems_from, show
from .interpolation import interpolate
from .models import Config


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error.

    PyYAML keeps the last of two equal keys silently, so a second ``session:`` further down
    would quietly replace the first.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {show(key)} (first at line {seen[key]})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_yaml(text: str, source: str) -> Any:
    loader = _UniqueKeyLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        what = f"{source}: invalid YAML{_at(exc.problem_mark)}: {exc.problem or exc.context}"
        if exc.problem and exc.context and _at(exc.context_mark) != _at(exc.problem_mark):
            what += f" ({exc.context}{_at(exc.context_mark)})"
        raise ConfigError([ConfigProblem("", what)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem("", f"{source}: invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()


def _at(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _under_any(path: str, prefixes: set[str]) -> bool:
    return any(path == p or path.startswith((p + ".", p + "[")) for p in prefixes)


def parse(text: str, environ: Mapping[str, str], source: str = "<config>") -> Config:
    """Parse YAML text into a Config; raises ConfigError listing every problem."""
    tree = _read_yaml(text, source)
    if tree is None:
        raise ConfigError([ConfigProblem("", f"{source}: the config is empty")])
    if not isinstance(tree, dict):
        raise ConfigError([ConfigProblem("", f"{source}: the config must be a YAML mapping")])
    tree, problems = interpolate(tree, environ)
    try:
        config = Config.model_validate(tree)
    except ValidationError as exc:
        # A key whose ${VAR} is unset was already reported; its emptiness would only add noise.
        unset = {p.path for p in problems}
        problems += [p for p in problems_from(exc, tree, Config) if not _under_any(p.path, unset)]
    if problems:
        raise ConfigError(problems)
    return config


def load(path: str | Path, environ: Mapping[str, str]) -> Config:
    """Read and validate the config file at ``path``; raises ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem("", f"{path}: no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem("", f"{path}: is a directory, not a file")]) from None
    except PermissionError:
        raise ConfigError([ConfigProblem("", f"{path}: permission denied")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem("", f"{path}: cannot read: {exc}")]) from None
    return parse(text, environ, str(path))
