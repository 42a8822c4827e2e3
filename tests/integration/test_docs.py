"""The operator documents' commands run against a real gateway: the Dockerfile's HEALTHCHECK.

The rest of the documents' checks need no server: tests/unit/test_docs.py."""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp.test_utils import TestServer

from tests.unit.test_docs import _instructions

HEALTHCHECK_TIMEOUT = 30.0


def _healthcheck_code() -> str:
    line = _instructions()["HEALTHCHECK"][-1]
    exec_form = json.loads(line[line.index("CMD ") + 4 :])
    assert exec_form[:2] == ["python", "-c"]
    code: str = exec_form[2]
    return code


async def _run_healthcheck(url: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _healthcheck_code(),
        env={"HEALTHCHECK_URL": url, "HTTP_PROXY": "http://127.0.0.1:9", "PATH": ""},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        return await asyncio.wait_for(proc.wait(), HEALTHCHECK_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_healthcheck_command_passes_on_healthz_and_fails_otherwise(
    gateway_server: TestServer,
) -> None:
    """The HEALTHCHECK's Python one-liner exits 0 against a running gateway's /-/healthz (an
    HTTP_PROXY in the environment notwithstanding) and non-zero for an error answer."""
    healthz = str(gateway_server.make_url("/-/healthz"))
    assert await _run_healthcheck(healthz) == 0
    assert await _run_healthcheck(str(gateway_server.make_url("/-/no-such-endpoint"))) != 0
