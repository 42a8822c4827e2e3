#!/usr/bin/env bash
# Installs the gateway with its demo extras and runs `upload-gateway demo` (everything on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh runtime
exec .venv/bin/upload-gateway demo "$@"
