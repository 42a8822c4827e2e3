"""The command line's parser, read in this process: every command says what it does.

The commands run as real processes: tests/integration/test_cli.py."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from gateway.cli import build_parser


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _commands(sub, f"{prefix}{name} ")


def test_every_command_has_a_description() -> None:
    """``upload-gateway COMMAND --help`` says what each command does, s3's actions included."""
    commands = dict(_commands(build_parser()))
    assert {"serve", "demo", "check-config", "s3", "s3 setup", "s3 doctor", "upload"} <= set(
        commands
    )
    assert "s3 iam-policy" in commands
    for name, parser in commands.items():
        assert parser.description and len(parser.description) > 20, name
        assert parser.description[0].isupper() and parser.description.endswith("."), name
