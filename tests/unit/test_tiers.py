"""The test tiers: every test module lives in one, and the unit tier's purity check holds.

tests/unit is pure (no socket, no process: tests/unit/conftest.py refuses both), tests/integration
runs real servers on loopback, tests/system the whole system (``serve`` processes, Chromium,
radosgw, load and faults). ``scripts/test.sh --fast`` runs the unit tier alone.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("unit", "integration", "system")
GUARD = Path(__file__).with_name("conftest.py")


def test_every_test_module_is_in_a_tier() -> None:
    """A test module outside tests/unit, tests/integration and tests/system would be run by no
    tier (pytest's testpaths name the three)."""
    modules = sorted((ROOT / "tests").rglob("test_*.py"))
    outside = [
        str(path.relative_to(ROOT))
        for path in modules
        if path.relative_to(ROOT / "tests").parts[0] not in TIERS
    ]
    assert len(modules) > 50 and outside == []
    pytest_options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    assert pytest_options["ini_options"]["testpaths"] == [f"tests/{tier}" for tier in TIERS]


IMPURE = """
import asyncio, os, socket, subprocess, sys

def test_binds():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))

def test_connects():
    with socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))

def test_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"])

async def test_starts_an_asyncio_process():
    await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")

async def test_serves_with_asyncio():
    await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)

def test_catches_the_refusal():
    with socket.socket() as sock:
        try:
            sock.connect(("127.0.0.1", 9))
        except Exception:
            pass

def test_spawns():
    pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "pass"], os.environ)
    os.waitpid(pid, 0)

def test_is_pure():
    a, b = socket.socketpair()
    a.close(); b.close()
    asyncio.run(asyncio.sleep(0))
"""


def test_a_unit_test_opening_a_socket_or_starting_a_process_fails(
    pytester: pytest.Pytester,
) -> None:
    """Under tests/unit/conftest.py, each way of reaching the network or starting a process
    fails its test (also when the test's code swallows the refusal); a socket pair and an event
    loop do not. Run in process: pytester's inline run starts nothing."""
    pytester.makeconftest(GUARD.read_text())
    pytester.makepyfile(test_sample=IMPURE)
    recorded = pytester.inline_run(
        *("-p", "no:cacheprovider", "--tb=line", "-o", "asyncio_mode=auto"),
        *("-o", "asyncio_default_fixture_loop_scope=function"),
    )
    calls = [r for r in recorded.getreports("pytest_runtest_logreport") if r.when == "call"]
    outcomes = {report.head_line: report.outcome for report in calls}
    assert outcomes == {
        "test_binds": "failed",
        "test_connects": "failed",
        "test_starts_a_process": "failed",
        "test_starts_an_asyncio_process": "failed",
        "test_serves_with_asyncio": "failed",
        "test_catches_the_refusal": "failed",
        "test_spawns": "failed",
        "test_is_pure": "passed",
    }
    for report in calls:
        assert report.passed or "ImpureUnitTest" in report.longreprtext, report.longreprtext
