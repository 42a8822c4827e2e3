#!/usr/bin/env bash
# The benchmark of issue 7 in one command: installs what it needs (idempotently), then runs
# `python -m bench`, which starts every server on loopback, runs each case, stops everything and
# writes bench/results.md, bench/results.json and docs/bench.png.
#   Debian: wrk (load generator), nginx-light (the nginx cases), curl (streaming client);
#   Python: the package with moto's server, plus boto3, matplotlib and py-spy;
#   npm: @uppy/companion into bench/node_modules (bench/package-lock.json).
# Usage: bench/run.sh [--quick] [--profile [--native]] [--only load|streaming|completion|inprocess]
#        bench/run.sh --only completion --merge  (that case alone, into bench/results.*)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        # Without wrk the bundled aiohttp client drives the load; without nginx its cases are
        # skipped; the results say which.
        echo "bench: not installed: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import gateway, moto.server, boto3, matplotlib' >/dev/null 2>&1 \
    || [ ! -x .venv/bin/py-spy ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -U pip
    if grep -q '^bench = ' pyproject.toml; then
        .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[bench]'
    else
        .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[demo]' \
            boto3 'matplotlib>=3.8' 'py-spy>=0.3'
    fi
fi

# Uppy Companion, the signing comparison, comes from npm at run time and is never committed.
if command -v npm >/dev/null 2>&1; then
    if [ ! -x bench/node_modules/.bin/companion ] \
        || [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then
        (cd bench && npm ci --no-audit --no-fund --loglevel=error)
    fi
else
    echo "bench: npm is missing: the Uppy Companion case is skipped" >&2
fi

exec .venv/bin/python -m bench "$@"
