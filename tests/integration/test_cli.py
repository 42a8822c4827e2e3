"""The command line as a whole, run as real processes: each command's expected failures are one
line on stderr, no traceback, and the exit code README's table gives.

``upload`` has its own file (tests/integration/test_upload_cli.py); check-config's config
problems and the s3 commands' normal work are in tests/integration/test_cli_config.py and
tests/integration/test_cli_s3.py, demo's busy port in tests/system/test_demo.py. Here: the
parser's use (its descriptions: tests/unit/test_cli.py), ``serve`` (ports, config files,
signals), and the failures of S3 itself under ``s3 setup``/``doctor`` (error answers from a
fault proxy, Ctrl-C).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from gateway.buckets import BucketNames
from tests.support.faults import Fault, FaultProxy, Match, fault_proxy
from tests.support.gateway import config_dict
from tests.support.processes import SECRET_ENV, free_port, subprocess_config

RUN_TIMEOUT = 60.0
BUSY = "Address already in use (another process listens there: stop it or choose another --port)"


@dataclass
class Run:
    code: int
    out: str
    err: str


def environment() -> dict[str, str]:
    """The test's environment with the config's secrets and without AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", "PYTHONUNBUFFERED": "1", **SECRET_ENV})
    return env


async def start(*args: str, cwd: Path | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment(),
        cwd=cwd,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = RUN_TIMEOUT) -> Run:
    """Wait for the process (bounded: killed and failed if it runs on)."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"still running after {timeout} s") from None
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def cli(*args: str, cwd: Path | None = None) -> Run:
    return await finish(await start(*args, cwd=cwd))


def assert_one_line(run: Run, code: int, line: str, *, exact: bool = True) -> None:
    """Exit ``code`` and exactly one line on stderr: ``line`` (or starting with it)."""
    assert run.code == code, run.err
    assert "Traceback" not in run.out + run.err, run.err
    assert run.err.count("\n") == 1, run.err
    if exact:
        assert run.err == line + "\n"
    else:
        assert run.err.startswith(line), run.err


def write_config(folder: Path, upstream: str = "http://127.0.0.1:1", **s3: str) -> Path:
    """A valid config (secrets as ${VAR}, from SECRET_ENV) in ``folder``."""
    tree = subprocess_config({**config_dict(upstream, **s3), "routes": []})
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def listening() -> Iterator[int]:
    """A port something else listens on (a plain socket, no SO_REUSEPORT)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


# --------------------------------------------------------------------------- the parser


def test_version_is_the_installed_package_version() -> None:
    """``--version`` prints the version the package metadata holds, and exits 0."""
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--version"],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"upload-gateway {metadata.version('upload-gateway')}\n"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        ([], "upload-gateway: error: the following arguments are required: COMMAND"),
        (["deploy"], "upload-gateway: error: argument COMMAND: invalid choice: 'deploy'"),
        (["serve", "--workers", "0"], "upload-gateway serve: error: argument --workers: 0 is"),
        (["serve", "--port", "70000"], "upload-gateway serve: error: argument --port: 70000 is"),
        (["s3"], "upload-gateway s3: error: the following arguments are required: ACTION"),
        (["check-config"], "upload-gateway check-config: error: the following arguments are"),
    ],
    ids=["nothing", "unknown", "workers-0", "port", "s3-action", "check-config-path"],
)
async def test_usage_mistakes_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    """A usage mistake is one line (argparse's usage block left out) naming the --help to read,
    and exit 2."""
    run = await cli(*args)
    assert_one_line(run, 2, line, exact=False)
    assert run.err.rstrip().endswith("--help)")


# --------------------------------------------------------------------------- serve and demo


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_busy_port_is_one_line_and_exit_1(tmp_path: Path, workers: str) -> None:
    """A port another process listens on: one line naming the address, exit 1, and nothing
    logged as listening (with --workers, said once by the parent, no worker started). demo's
    own busy port: tests/system/test_demo.py."""
    config = write_config(tmp_path)
    with listening() as port:
        run = await cli(
            "serve",
            "-c",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            workers,
        )
    assert_one_line(run, 1, f"error: cannot listen on 127.0.0.1:{port}: {BUSY}")
    assert "gateway_listening" not in run.out + run.err


async def test_address_not_on_this_machine_is_one_line(tmp_path: Path) -> None:
    """--host naming an address this machine does not have: one line, exit 1."""
    config = write_config(tmp_path)
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a local address.
    run = await cli("serve", "-c", str(config), "--host", "192.0.2.1", "--port", "8080")
    assert_one_line(
        run,
        1,
        "error: cannot listen on 192.0.2.1:8080: Cannot assign requested address "
        "(this machine has no such address: check --host or listen.host)",
    )


@dataclass
class Served:
    proc: asyncio.subprocess.Process
    port: int
    lines: list[str]

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.lines:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    found.append(event)
        return found


async def _read_lines(stream: asyncio.StreamReader, lines: list[str]) -> None:
    async for raw in stream:
        lines.append(raw.decode(errors="replace").rstrip("\n"))


@contextlib.asynccontextmanager
async def serving(config: Path, *args: str) -> AsyncIterator[Served]:
    """``serve`` running until it logs ``gateway_listening`` once per process; stopped (SIGKILL)
    on the way out if the test left it running."""
    proc = await start("serve", "-c", str(config), "--host", "127.0.0.1", *args)
    assert proc.stderr is not None
    lines: list[str] = []
    reader = asyncio.ensure_future(_read_lines(proc.stderr, lines))
    workers = int(args[args.index("--workers") + 1]) if "--workers" in args else 1
    served = Served(proc, 0, lines)
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            while len(served.events("gateway_listening")) < workers:
                assert proc.returncode is None, "\n".join(lines)
                await asyncio.sleep(0.02)
        ports = {int(e["path"].rsplit(":", 1)[1]) for e in served.events("gateway_listening")}
        [served.port] = ports
        yield served
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await reader


async def _healthz(port: int) -> int:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.get(f"http://127.0.0.1:{port}/-/healthz") as resp,
    ):
        return resp.status


@pytest.mark.parametrize("workers", ["1", "2"])
async def test_ctrl_c_stops_serve_cleanly(tmp_path: Path, workers: str) -> None:
    """SIGINT (Ctrl-C) to serve stops it with exit 0 and nothing on stderr but its log lines;
    with --port 0 every worker listens on the one port the kernel picked."""
    config = write_config(tmp_path)
    async with serving(config, "--port", "0", "--workers", workers) as served:
        assert served.port != 0
        assert await _healthz(served.port) == 200
        served.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(served.proc.wait(), RUN_TIMEOUT) == 0
    assert not [line for line in served.lines if not line.startswith("{")], served.lines


async def test_a_second_gateway_cannot_join_the_port_of_one_with_workers(tmp_path: Path) -> None:
    """Workers share their port through SO_REUSEPORT, which any process of the same user could
    join: a second ``serve --workers 2`` on that port must fail as busy, not answer half the
    connections."""
    config = write_config(tmp_path)
    async with serving(config, "--port", str(free_port()), "--workers", "2") as first:
        second = await cli(
            "serve",
            "-c",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(first.port),
            "--workers",
            "2",
        )
        assert_one_line(second, 1, f"error: cannot listen on 127.0.0.1:{first.port}: {BUSY}")
        assert await _healthz(first.port) == 200


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d / "missing.yaml", "no such file"),
        (lambda d: d, "is a directory, not a file"),
        (lambda d: _write(d / "latin1.yaml", "upstream: caf\xe9".encode("latin-1")), "cannot read"),
    ],
    ids=["missing", "directory", "not-utf8"],
)
@pytest.mark.parametrize(
    "command",
    [["serve", "-c"], ["s3", "doctor", "-c"], ["s3", "iam-policy", "-c"], ["check-config"]],
    ids=["serve", "s3-doctor", "s3-iam-policy", "check-config"],
)
async def test_unreadable_config_is_one_line_and_exit_2(
    tmp_path: Path, make: Any, problem: str, command: list[str]
) -> None:
    """A config file that is missing, a directory or not UTF-8 is one line naming it, exit 2,
    for every command that reads one."""
    path = make(tmp_path)
    run = await cli(*command, str(path))
    prefix = "" if command[0] == "check-config" else "error: "
    assert_one_line(run, 2, f"{prefix}{path}: {problem}", exact=False)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------- s3 against a failing S3


@pytest.fixture
async def s3_in_front(s3_endpoint: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of moto: what S3 answers the s3 commands is the test's choice."""
    async with fault_proxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
def s3_config(tmp_path: Path, s3_in_front: FaultProxy, bucket_names: BucketNames) -> Path:
    return write_config(
        tmp_path,
        s3_endpoint=s3_in_front.url,
        uploads_bucket=bucket_names.uploads,
        storage_bucket=bucket_names.storage,
    )


@pytest.mark.parametrize(
    ("status", "line"),
    [
        (500, "error: S3 failed to reach a bucket (500): try again later"),
        (
            403,
            "error: S3 refused to reach a bucket (403): these keys may not do that: setup and "
            'doctor need an administrator\'s keys (README, "S3: setup, doctor and the IAM policy")',
        ),
    ],
)
@pytest.mark.parametrize("action", ["setup", "doctor"])
async def test_s3_error_answers_are_one_line_and_exit_1(
    s3_in_front: FaultProxy, s3_config: Path, action: str, status: int, line: str
) -> None:
    """S3 answering every request with an error: one line saying what failed and what to do,
    exit 1."""
    s3_in_front.inject(Match(), Fault("status", status=status))
    assert_one_line(await cli("s3", action, "-c", str(s3_config)), 1, line)


async def test_ctrl_c_during_s3_doctor_is_one_line_and_exit_130(
    s3_in_front: FaultProxy, s3_config: Path
) -> None:
    """Ctrl-C while S3 has not answered yet: one line, exit 130, no traceback."""
    held = s3_in_front.inject(Match(), Fault("hold"))
    proc = await start("s3", "doctor", "-c", str(s3_config))
    try:
        await asyncio.wait_for(held.arrived.wait(), RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGINT)
    assert_one_line(await finish(proc), 130, "interrupted: upload-gateway s3 stopped")
