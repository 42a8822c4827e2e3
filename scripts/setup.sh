#!/usr/bin/env bash
# Installs everything the gateway, its demo and its tests need, idempotently:
#   Debian's chromium (browser tests) and radosgw (a verifying S3 for the tests), a venv with the
#   package and its test extras, npm packages.
# Usage: scripts/setup.sh [runtime|test]
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-test}"

if [ "$mode" = test ] && ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "setup: chromium is missing; install Debian's chromium package (sudo apt-get install chromium)" >&2
        exit 1
    fi
fi

# Ceph's radosgw with a monitor and an OSD: the S3 server that verifies signatures and POST
# policies in the tests (tests/support/radosgw.py). About 70 MB; test mode only, when missing.
ceph_packages="radosgw ceph-mon ceph-osd ceph-common"
if [ "$mode" = test ] && ! { command -v radosgw && command -v ceph-mon && command -v ceph-osd \
        && command -v ceph; } >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        # shellcheck disable=SC2086 # a list of package names
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            $ceph_packages >/dev/null
    else
        echo "setup: radosgw is missing; install Debian's packages (sudo apt-get install --no-install-recommends $ceph_packages)" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -U pip
extras=demo
if [ "$mode" = test ]; then
    extras=test,demo
fi
# setuptools says "Editable installation. Please be careful with folders in your working
# directory..." on every editable install of a flat layout (a warning class of its own, which
# pip relays past -q). This filter drops that one message: every other warning of the build,
# and every error, still shows.
PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"

# Fine Uploader and Uppy come from npm at setup time; they are never committed.
if [ ! -d node_modules/fine-uploader ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
