#!/usr/bin/env bash
# Installs what the tests need (scripts/setup.sh), then lints, type-checks, checks the import
# layers (pyproject.toml [tool.importlinter]) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
.venv/bin/ruff check gateway tests
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
