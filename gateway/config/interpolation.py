"""``${VAR}`` and ``${VAR:-default}`` inside the string scalars of a parsed YAML tree."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import ConfigProblem, join

# ${NAME}, ${NAME:-default}, $${ (a literal ${), or a ${ that is none of these (a mistake).
_VAR_RE = re.compile(r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_]\w*)(?::-(?P<default>[^}]*))?\})?", re.ASCII)


def interpolate(
    tree: Any, environ: Mapping[str, str], path: str = ""
) -> tuple[Any, list[ConfigProblem]]:
    """Replace ``${VAR}`` and ``${VAR:-default}`` inside string scalars of a parsed YAML tree.

    ``${VAR:-default}`` uses the default when VAR is unset or empty, as POSIX shells do.
    """
    problems: list[ConfigProblem] = []
    if isinstance(tree, str):

        def _sub(match: re.Match[str]) -> str:
            name, default = match.group("name"), match.group("default")
            if match.group(0) == "$${":
                return "${"
            if name is None:
                problems.append(
                    ConfigProblem(
                        path, "has a ${ that is not ${NAME} or ${NAME:-default} (write $${ for ${)"
                    )
                )
                return match.group(0)
            value = environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is not None:
                    return default
                problems.append(ConfigProblem(path, f"${{{name}}} is not set in the environment"))
                return ""
            return value

        return _VAR_RE.sub(_sub, tree), problems
    if isinstance(tree, dict):
        out: dict[Any, Any] = {}
        for key, value in tree.items():
            out[key], sub = interpolate(value, environ, join(path, key))
            problems += sub
        return out, problems
    if isinstance(tree, list):
        items = []
        for index, value in enumerate(tree):
            item, sub = interpolate(value, environ, f"{path}[{index}]")
            items.append(item)
            problems += sub
        return items, problems
    return tree, problems
