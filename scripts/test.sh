#!/usr/bin/env bash
# scripts/test.sh [pytest arguments]: installs what the tests need (scripts/setup.sh), then lints,
# type-checks, checks the import layers (pyproject.toml [tool.importlinter]) and runs the whole
# suite.
# scripts/test.sh --fast [pytest arguments]: lints, then runs only the modules that need no
# server, subprocess or browser (pure functions and models), in seconds; no setup, no mypy.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pure modules: nothing here starts moto, radosgw, the upstream, a gateway or Chromium.
FAST=(
    tests/test_config.py
    tests/test_endpoints.py
    tests/test_forms.py
    tests/test_headers.py
    tests/test_jsonbody.py
    tests/test_keys.py
    tests/test_rules.py
    tests/test_signing.py
    tests/test_sniff.py
    tests/test_targets.py
    tests/test_tokens.py
    tests/test_webhook.py
)

if [[ "${1:-}" == "--fast" ]]; then
    shift
    .venv/bin/ruff check gateway tests
    exec .venv/bin/python -m pytest -q "${FAST[@]}" "$@"
fi

scripts/setup.sh test
.venv/bin/ruff check gateway tests
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
