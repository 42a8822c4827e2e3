"""The demo's pure parts: its API tokens, the CLI command its banner prints, and the npm packages
it reports missing.

``upload-gateway demo`` run as a real process: tests/system/test_demo.py."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.demo.assets import build_uppy_bundle, find_node_modules
from gateway.demo.runner import (
    cli_program,
)
from gateway.demo.tokens import api_token, token_user


def test_api_tokens_round_trip_and_refuse_forgeries() -> None:
    """A token names its user under its key only: another key, name or MAC is nobody."""
    token = api_token(b"k" * 32, "alice smith")
    assert token_user(b"k" * 32, token) == "alice smith"
    assert " " not in token and "'" not in token  # pasted into a shell as it is printed
    name, _, mac = token.partition(".")
    assert token_user(b"x" * 32, token) is None
    flipped = mac[:-1] + ("1" if mac.endswith("0") else "0")
    assert token_user(b"k" * 32, f"{name}.{flipped}") is None
    for bad in ("", ".", "alice", f".{mac}", "%%%.abc", f"{name}.", "bm9ib2R5." + mac):
        assert token_user(b"k" * 32, bad) is None, bad


def test_the_printed_command_runs_this_installations_cli(tmp_path: Path) -> None:
    """The script the demo was started with when it is on PATH, else its absolute path, else
    ``python -m gateway``: the command works from any folder."""
    script = tmp_path / "bin" / "upload-gateway"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert cli_program(str(script), "/usr/bin/python3") == str(script)
    assert cli_program("/x/gateway/__main__.py", "/v env/python") == "'/v env/python' -m gateway"
    old = os.environ["PATH"]
    os.environ["PATH"] = f"{script.parent}{os.pathsep}{old}"
    try:
        assert cli_program(str(script), "/usr/bin/python3") == "upload-gateway"
    finally:
        os.environ["PATH"] = old


def test_missing_npm_packages_are_reported(tmp_path: Path) -> None:
    """No node_modules, or Uppy without esbuild: no bundle, and a reason naming the fix."""
    assert find_node_modules([tmp_path]) is None
    modules = tmp_path / "node_modules"
    for package in ("@uppy/core", "@uppy/aws-s3"):
        (modules / package).mkdir(parents=True)
    assert find_node_modules([tmp_path]) == modules
    bundle, problem = build_uppy_bundle(modules, tmp_path)
    assert bundle is None and problem is not None
    assert problem.startswith("esbuild not installed") and "scripts/setup.sh" in problem
