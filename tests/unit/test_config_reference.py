"""The config reference (docs/configuration.md) and the JSON Schema against the models.

The reference is generated from the models (gateway/config/reference.py); these tests check
that it names every key the models define and no other, that every key has a meaning, and that
the schema `upload-gateway config-schema` prints agrees with `check-config`: the example
validates, what check-config refuses for its shape the schema refuses too, and every value
check-config accepts at any key the schema accepts (an editor must never flag a valid config),
and yaml-language-server itself, run as editors run it, checks configs with it. That the
committed files are what the code generates is tests/unit/test_docs.py's.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.fernet import Fernet
from pydantic import ValidationError

from gateway.config import Config, ConfigError, interpolate, parse
from gateway.config.reference import keys
from gateway.config.schema import config_schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "example.yaml"
REFERENCE = ROOT / "docs" / "configuration.md"
SCHEMA_FILE = ROOT / "docs" / "config.schema.json"
ENV = {
    "GATEWAY_SESSION_KEY": Fernet.generate_key().decode(),
    "GATEWAY_WEBHOOK_SECRET": "webhook-secret-0123456789",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key-example",
    # for the values below
    "NUM": "30",
    "FLAG": "false",
    "SIZE": "20MiB",
    "TEXT": "hello",
    "URL": "http://127.0.0.1:9000",
    "CHOICE": "Strict",
}


def _example() -> dict[str, Any]:
    tree: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    return tree


def _validator() -> jsonschema.protocols.Validator:
    schema = config_schema()
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _accepted_by_check_config(tree: dict[str, Any]) -> bool:
    try:
        parse(yaml.safe_dump(tree), ENV)
    except ConfigError:
        return False
    return True


def _accepted_after_yaml(tree: dict[str, Any]) -> bool:
    """What ``parse`` decides once the YAML is read: ${VAR}s replaced, then the models (the
    YAML round trip of ``_accepted_by_check_config``, thousands of times, would only cost)."""
    replaced, problems = interpolate(tree, ENV)
    if problems:
        return False
    try:
        Config.model_validate(replaced)
    except ValidationError:
        return False
    return True


# --------------------------------------------------------------------------- the reference


def test_every_key_has_a_meaning() -> None:
    """Each field of every config model carries a description: the reference and the schema
    print it, so a key added without one fails here."""
    missing = [key.path for key in keys() if not (key.field.description or "").strip()]
    assert not missing, f"add Field(description=...) in gateway/config/models.py: {missing}"


def test_the_reference_lists_every_key_and_no_other() -> None:
    """docs/configuration.md has a row for each key below a section, a heading for each section
    (walking the models recursively), and names no key the models lack."""
    text = REFERENCE.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE))
    headings = set(re.findall(r"^### `([^`]+)`$", text, flags=re.MULTILINE))
    every = list(keys())
    assert len(every) >= 55
    scalars = {key.path for key in every if key.section is None}
    sections = {key.path for key in every if key.section is not None}
    top_sections = {path for path in sections if "." not in path}
    assert rows == scalars | top_sections
    assert headings == sections
    assert "routes[].max_size" in rows and "identity.auth_request.path" in rows


def test_the_reference_says_which_protocol_each_route_key_is_for() -> None:
    """The routes section names the keys each protocol adds, and the rows of those keys say
    which protocol takes them; the keys of every route carry no such note."""
    text = REFERENCE.read_text(encoding="utf-8")
    assert (
        "Its `protocol` decides which other keys it takes: `endpoints` with `protocol: "
        "fineuploader` only, `multipart_threshold` and `part_size` with `protocol: api` only "
        "(`protocol: uppy` adds none). A route refuses the keys of another protocol."
    ) in text
    rows = dict(re.findall(r"^\| `(routes\[\][^`]*)` \|(.*)$", text, flags=re.MULTILINE))
    notes = {path: re.findall(r"`protocol: (\w+)` only\.", row) for path, row in rows.items()}
    assert notes["routes[].part_size"] == notes["routes[].multipart_threshold"] == ["api"]
    assert notes["routes[].endpoints.signature"] == []  # its section says it
    assert notes["routes[].max_size"] == notes["routes[].protocol"] == []
    assert "`protocol: fineuploader` only. Paths a page" in text  # the endpoints section


def test_the_reference_shows_types_and_defaults() -> None:
    """A few rows, spelled out: the type, the default and the meaning come from the models."""
    text = REFERENCE.read_text(encoding="utf-8")
    assert "| `listen.port` | integer, 0 to 65535 | `8080` | TCP port;" in text
    assert "| `routes[].part_size` | size | `8MiB` |" in text
    assert "| `s3.secret_access_key` | string, secret | required |" in text
    assert "| `session.samesite` | `Lax` \\| `Strict` \\| `None` | `Lax` |" in text


# --------------------------------------------------------------------------- the schema


def test_example_config_names_the_schema_and_validates_against_it() -> None:
    """config/example.yaml's first line points yaml-language-server at docs/config.schema.json,
    and the file, as written (with its ${VAR}s), is valid under the schema."""
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match is not None
    assert (EXAMPLE.parent / match.group(1)).resolve() == SCHEMA_FILE
    errors = [e.message for e in _validator().iter_errors(_example())]
    assert errors == []


def test_the_kubernetes_config_validates_against_the_schema() -> None:
    """The config in deploy/kubernetes/configmap.yaml, as written, is valid under the schema
    (its api route's part_size included)."""
    manifest = ROOT / "deploy" / "kubernetes" / "configmap.yaml"
    configmap = next(
        doc
        for doc in yaml.safe_load_all(manifest.read_text(encoding="utf-8"))
        if doc and doc.get("kind") == "ConfigMap"
    )
    tree = yaml.safe_load(configmap["data"]["config.yaml"])
    assert any("part_size" in route for route in tree["routes"])
    assert [e.message for e in _validator().iter_errors(tree)] == []


def _set(tree: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``tree`` with ``value`` at ``path`` (copying only the nodes on the path)."""
    out = copy.copy(tree)
    if len(path) > 1:
        out[path[0]] = _set(tree[path[0]], path[1:], value)
    elif value is _DELETE:
        del out[path[0]]
    else:
        out[path[0]] = value
    return out


_DELETE = object()

REFUSED_SHAPES = [
    pytest.param(("listen", "prot"), 8080, id="unknown-key"),
    pytest.param(("routes", 0, "max_sise"), "20MiB", id="unknown-route-key"),
    pytest.param(("listen", "port"), "eighty", id="port-not-a-number"),
    pytest.param(("listen", "port"), 65536, id="port-out-of-range"),
    pytest.param(("listen", "port"), True, id="port-boolean"),
    pytest.param(("session", "secure"), "maybe", id="secure-not-a-boolean"),
    pytest.param(("session", "secure"), 1, id="secure-a-number"),
    pytest.param(("session", "samesite"), "Sideways", id="samesite-not-a-choice"),
    pytest.param(("session", "keys"), [], id="no-session-keys"),
    pytest.param(("session", "keys"), "${GATEWAY_SESSION_KEY}", id="keys-not-a-list"),
    pytest.param(("upstream", "connect_timeout"), 0, id="timeout-zero"),
    pytest.param(("upstream", "connect_timeout"), "soon", id="timeout-not-a-number"),
    pytest.param(("routes", 0, "protocol"), "ftp", id="protocol-not-a-choice"),
    pytest.param(("routes", 0, "protocol"), _DELETE, id="protocol-missing"),
    pytest.param(("routes", 0, "protocol"), ["fineuploader"], id="protocol-a-list"),
    pytest.param(("routes", 0, "protocol"), 5, id="protocol-a-number"),
    pytest.param(("routes", 0, "protocol"), None, id="protocol-null"),
    pytest.param(("routes", 0, "part_size"), "16MiB", id="api-key-on-a-fineuploader-route"),
    pytest.param(("routes", 2, "multipart_threshold"), "64MiB", id="api-key-on-an-uppy-route"),
    pytest.param(("routes", 3, "endpoints"), None, id="fineuploader-key-on-an-api-route"),
    pytest.param(("routes", 1, "protocol"), "api", id="fineuploader-route-made-api"),
    pytest.param(("routes", 0), None, id="route-null"),
    pytest.param(("routes", 0, "max_size"), "20 potatoes", id="size-not-a-size"),
    pytest.param(("routes", 0, "max_size"), 0, id="size-zero"),
    pytest.param(("routes", 0, "signature_ttl"), 604801, id="ttl-above-sigv4"),
    pytest.param(("routes",), {"name": "photos"}, id="routes-not-a-list"),
    pytest.param(("upstream",), _DELETE, id="upstream-missing"),
    pytest.param(("routes", 0, "forward"), _DELETE, id="forward-missing"),
    pytest.param(("identity", "auth_request"), {"user_field": "u"}, id="auth-request-no-path"),
]


@pytest.mark.parametrize(("path", "value"), REFUSED_SHAPES)
def test_a_wrong_key_or_type_is_refused_by_the_schema_as_by_check_config(
    path: tuple[Any, ...], value: Any
) -> None:
    """Unknown keys, wrong types, choices, ranges and missing keys: both refuse."""
    tree = _set(_example(), path, value)
    assert not _accepted_by_check_config(tree)
    assert not _validator().is_valid(tree)


# Values tried at every key of the example: numbers, booleans, text of each kind, ${VAR}s.
VALUES: list[Any] = [
    None, True, False, 0, 1, 5, 300, 8080, 65535, 65536, -1, 10**12, 0.5, 5.0, -0.5,
    float("inf"), "", " ", "0", "1", "5", "8080", " 8080 ", "8_080", "+5", "5.0", "5.5", "1e3",
    ".5", "inf", "nan", "true", "yes", "Off", "n", "20MiB", "5 GB", "1.5KiB", "20 potatoes",
    "eighty", "${NUM}", "${FLAG}", "${SIZE}", "${TEXT}", "${URL}", "${CHOICE}", "${UNSET:-42}",
    "$${NUM}", "http://127.0.0.1:9000", "https://app.example.com", "Lax", "None", "path",
    "api", "private", "image/*", "10.0.0.0/8", "/x", "{user_hash}/", [], ["image/*"],
    ["${TEXT}"], {},
]  # fmt: skip


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and list item below ``node``."""
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        yield (*prefix, key)
        if isinstance(value, dict | list):
            yield from _paths(value, (*prefix, key))


def test_the_schema_accepts_every_value_check_config_accepts() -> None:
    """At every key and list item of the example, each of ~60 values that check-config accepts
    (after ${VAR} replacement and pydantic's conversions) the schema accepts too, as written."""
    example = _example()
    validator = _validator()
    tried = accepted = 0
    flagged = []
    for path in _paths(example):
        for value in VALUES:
            tree = _set(example, path, value)
            tried += 1
            verdict = _accepted_after_yaml(tree)
            if tried % 50 == 0:  # the shortcut decides as check-config does
                assert _accepted_by_check_config(tree) == verdict, (path, value)
            if verdict:
                accepted += 1
                if not validator.is_valid(tree):
                    flagged.append(f"{path}: {value!r}")
    assert not flagged
    assert tried > 3000 and accepted > 500, (tried, accepted)


def test_the_schema_takes_a_protocol_from_the_environment() -> None:
    """A route's protocol written as ${VAR} is valid for the schema, as for check-config: the
    route's keys decide which protocol's keys it may have (the api route keeps part_size)."""
    tree = _set(_example(), ("routes", 3, "protocol"), "${PROTOCOL}")
    assert list(_validator().iter_errors(tree)) == []
    assert _validator().is_valid(_set(tree, ("routes", 0, "protocol"), "${PROTOCOL}"))
