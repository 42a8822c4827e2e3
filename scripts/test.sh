#!/usr/bin/env bash
# scripts/test.sh [pytest arguments]: installs what the tests need (scripts/setup.sh), then lints,
# type-checks, checks the import layers (pyproject.toml [tool.importlinter]) and runs every tier,
# fastest first: tests/unit, tests/integration, tests/system (pyproject.toml's testpaths), so a
# broken pure function shows in seconds, not after the browsers.
# scripts/test.sh --fast [pytest arguments]: lints, then runs the unit tier alone (tests/unit: no
# socket, no subprocess, no server; tests/unit/conftest.py refuses them), in seconds; no setup,
# no mypy.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--fast" ]]; then
    shift
    .venv/bin/ruff check gateway tests
    exec .venv/bin/python -m pytest -q tests/unit "$@"
fi

scripts/setup.sh test
.venv/bin/ruff check gateway tests
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
