"""Writes the generated parts of docs/ from the code: ``python -m gateway.docgen [ROOT]``.

- docs/configuration.md, between its markers: the reference of every config key (models.py);
- docs/errors.md, between its markers: the catalogue of reasons (reasons.py);
- docs/config.schema.json: the config's JSON Schema, as ``upload-gateway config-schema`` prints.

tests/unit/test_docs.py fails when a committed file differs from what this would write, and names
this command. ``--check`` only reports (exit 1 when something is stale).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .config.reference import markdown as config_reference
from .config.schema import schema_text
from .reasons import markdown_table

COMMAND = "python -m gateway.docgen"
SCHEMA_FILE = "docs/config.schema.json"
# file -> (block name, what goes between its markers)
BLOCKS: dict[str, tuple[str, Callable[[], str]]] = {
    "docs/configuration.md": ("config-reference", config_reference),
    "docs/errors.md": ("reasons", markdown_table),
}


def _markers(name: str) -> tuple[str, str]:
    return (
        f"<!-- generated: {name}; edit the code, then run `{COMMAND}` -->\n",
        f"<!-- end of generated: {name} -->\n",
    )


def splice(text: str, name: str, block: str) -> str:
    """``text`` with what lies between the markers of ``name`` replaced by ``block``."""
    begin, end = _markers(name)
    head, found, rest = text.partition(begin)
    if not found or end not in rest:
        raise ValueError(f"no {begin.strip()} ... {end.strip()} block")
    return head + begin + "\n" + block.rstrip("\n") + "\n\n" + end + rest.partition(end)[2]


def expected(root: Path) -> dict[Path, str]:
    """What each generated file should hold, given the hand-written parts now in ``root``."""
    out = {root / SCHEMA_FILE: schema_text()}
    for rel, (name, make) in BLOCKS.items():
        path = root / rel
        out[path] = splice(path.read_text(encoding="utf-8"), name, make())
    return out


def stale(root: Path) -> list[Path]:
    """The generated files that differ from what the code would write."""
    return [
        path
        for path, text in expected(root).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    root = Path(args[0] if args else ".").resolve()
    if check:
        paths = stale(root)
        for path in paths:
            print(f"stale: {path.relative_to(root)}", file=sys.stderr)
        return 1 if paths else 0
    for path, text in expected(root).items():
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
