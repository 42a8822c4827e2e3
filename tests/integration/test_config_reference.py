"""The JSON Schema as programs read it: `upload-gateway config-schema` run as a real process, and
yaml-language-server checking config/example.yaml as editors run it (Node).

The reference and the schema against the models, in this process:
tests/unit/test_config_reference.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from gateway.config.schema import DIALECT, config_schema, schema_text
from tests.unit.test_config_reference import EXAMPLE, SCHEMA_FILE, _accepted_by_check_config

ROOT = Path(__file__).resolve().parents[2]


YAML_LANGUAGE_SERVER = ROOT / "tests" / "support" / "yaml_language_server.cjs"


def _editor(path: Path, at: str | None = None) -> dict[str, Any]:
    """What yaml-language-server (npm, as editors run it) says of ``path``: its diagnostics, and
    the hover at ``at`` (line:character)."""
    run = subprocess.run(
        ["node", str(YAML_LANGUAGE_SERVER), str(path), *([at] if at else [])],
        capture_output=True,
        check=True,
        timeout=60,
    )
    answer: dict[str, Any] = json.loads(run.stdout)
    return answer


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_config_schema_command_prints_the_schema() -> None:
    """`upload-gateway config-schema`, run as a process, prints the draft-07 schema, the same
    as docs/config.schema.json."""
    run = subprocess.run(
        [sys.executable, "-m", "gateway", "config-schema"],
        capture_output=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    printed = json.loads(run.stdout)
    assert printed == config_schema() == json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert run.stdout.decode() == schema_text()
    assert printed["$schema"] == DIALECT == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(printed)


def test_an_editor_checks_a_config_against_the_schema_as_it_is_typed(tmp_path: Path) -> None:
    """yaml-language-server, given the modeline of config/example.yaml, finds nothing to flag in
    it, shows a key's meaning on hover, and flags a wrong type, a value outside a choice, a bad
    size and a misspelt key, each on its line, in a copy that has them."""
    text = EXAMPLE.read_text(encoding="utf-8")
    port = _line_of(text, "port: ${GATEWAY_PORT")
    example = _editor(EXAMPLE, f"{port}:4")
    assert example["diagnostics"] == []
    assert "TCP port; 0 lets the system choose a free one." in example["hover"]

    broken = (
        text.replace("$schema=../docs/config.schema.json", f"$schema={SCHEMA_FILE}")
        .replace("port: ${GATEWAY_PORT:-8080}", "port: eighty")
        .replace("samesite: Lax", "samesite: Sideways")
        .replace("max_size: 20MiB", "max_size: 20 potatoes")
        .replace("  max_headers: 128", "  max_headers: 128\n  max_hedaers: 12")
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(broken, encoding="utf-8")
    flagged = {d["line"]: d["message"] for d in _editor(path)["diagnostics"]}
    assert flagged.keys() == {
        _line_of(broken, "port: eighty"),
        _line_of(broken, "samesite: Sideways"),
        _line_of(broken, "max_size: 20 potatoes"),
        _line_of(broken, "max_hedaers"),
    }, flagged
    assert "max_hedaers" in flagged[_line_of(broken, "max_hedaers")]
    assert not _accepted_by_check_config(yaml.safe_load(broken))


def test_an_editor_flags_a_key_of_another_protocol_on_its_line(tmp_path: Path) -> None:
    """yaml-language-server flags part_size on a fineuploader route and endpoints on an api
    route, each on its line, and not the api route's own part_size; a route without protocol
    is flagged too."""
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "$schema=../docs/config.schema.json", f"$schema={SCHEMA_FILE}"
    )
    broken = (
        text.replace(
            "    forward: /internal/uploads/photos\n",
            "    forward: /internal/uploads/photos\n    part_size: 8MiB  # api only\n",
        )
        .replace(
            "    forward: /internal/uploads/api\n",
            "    forward: /internal/uploads/api\n    endpoints: {signature: /x/sign}\n",
        )
        .replace("    protocol: uppy\n", "")
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(broken, encoding="utf-8")
    flagged = {d["line"]: d["message"] for d in _editor(path)["diagnostics"]}
    assert flagged == {
        _line_of(broken, "part_size: 8MiB  # api only"): "Property part_size is not allowed.",
        _line_of(broken, "endpoints: {signature: /x/sign}"): "Property endpoints is not allowed.",
        _line_of(broken, "- name: documents"): 'Missing property "protocol".',
    }
    assert not _accepted_by_check_config(yaml.safe_load(broken))
