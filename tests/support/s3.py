"""S3 fixtures: the S3 server a test runs against, an aiobotocore client, fresh buckets per test.

A test runs against moto's server unless it takes ``s3_server``: then it runs twice, once on
moto and once on radosgw (tests/support/radosgw.py, an S3 that verifies signatures, policies and
signed lengths), with ids ``[moto]`` and ``[radosgw]``. ``s3_endpoint``, ``s3_client``,
``buckets`` and the fixtures built on them follow that choice, so moving a test to both servers
is adding ``s3_server`` to its arguments (or to a fixture it uses).

A pytest plugin (tests/conftest.py lists it in ``pytest_plugins``). ``isolated_env`` is autouse:
no test can find real AWS credentials or reach the instance metadata service.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError
from botocore.loaders import Loader, create_loader
from yarl import URL

from gateway.buckets import BucketNames, SetupIncomplete, setup_buckets
from gateway.config import S3Config
from gateway.storage import Storage, open_s3_client

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["TEST_ORIGINS", "BucketNames", "S3Call", "S3Server"]

TEST_ORIGINS = ("http://127.0.0.1", "http://localhost")
REGION = "us-east-1"
S3_SERVERS = ("moto", "radosgw")
# Block Public Access as the tests leave it on radosgw: all but BlockPublicAcls (see set_up).
RADOSGW_PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": False,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


@dataclass(frozen=True)
class S3Server:
    """An S3 server on loopback: what tests and the gateway's test configs point at."""

    name: str  # "moto" or "radosgw": in test ids, so a failure names the server
    endpoint: str  # http://127.0.0.1:PORT, path style
    access_key_id: str
    secret_access_key: str
    # radosgw checks signatures, POST-policy conditions and signed lengths; moto checks none.
    verifies: bool

    @property
    def port(self) -> int:
        port = URL(self.endpoint).port
        assert port is not None  # both servers listen on an explicit port
        return port

    @property
    def browser_endpoint(self) -> str:
        """The endpoint for browsers: ``<bucket>.localhost:PORT`` is virtual-host style on both
        servers, and Chromium resolves every ``*.localhost`` name to loopback by itself."""
        return f"http://localhost:{self.port}"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Drop every AWS_* variable, point the AWS config files at empty ones, disable IMDS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty = tmp_path / "aws-empty"
    empty.mkdir()
    (empty / "config").write_text("")
    (empty / "credentials").write_text("")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))


MOTO_START_TIMEOUT = 30.0
MOTO_STOP_TIMEOUT = 10.0
# moto's threaded server in a process of its own: it binds a free port on loopback, prints it,
# and serves until its stdin closes (the fixture closes it; so does the test process's death).
_MOTO_MAIN = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (never 0.0.0.0), in a process of its own for the whole
    session: every test's objects, moto's per-request threads and its thousands of model
    objects stay out of the test process, whose heap pytest walks once more at the end."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _MOTO_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
    try:
        port = _read_port(proc, log_path)
        yield S3Server("moto", f"http://127.0.0.1:{port}", "testing", "testing", verifies=False)
    finally:
        _stop(proc)


def _read_port(proc: subprocess.Popen[bytes], log_path: Path) -> int:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], MOTO_START_TIMEOUT)
    line = proc.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        raise RuntimeError(
            f"moto did not start in {MOTO_START_TIMEOUT}s:\n{log_path.read_text(errors='replace')}"
        )
    return int(line)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Close its stdin (moto stops), then SIGKILL by pid if it lingers."""
    assert proc.stdin is not None and proc.stdout is not None
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    deadline = time.monotonic() + MOTO_STOP_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=MOTO_STOP_TIMEOUT)
    proc.stdout.close()


@pytest.fixture(params=S3_SERVERS, ids=str)
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Runs the test once per server: moto, then radosgw (started on first use, shared)."""
    server: S3Server = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
def s3_target(request: pytest.FixtureRequest, moto_server: S3Server) -> S3Server:
    """The test's S3 server: its ``s3_server`` when it takes one, else moto."""
    if "s3_server" in request.fixturenames:
        server: S3Server = request.getfixturevalue("s3_server")
        return server
    return moto_server


@pytest.fixture
def s3_endpoint(s3_target: S3Server) -> str:
    """The test's S3 server's endpoint (path style on 127.0.0.1)."""
    return s3_target.endpoint


@functools.cache
def shared_loader() -> Loader:
    """botocore's parsed service models, one for the whole run: each new session would parse
    them again (about 100 ms and several MiB per client)."""
    return create_loader()


def s3_session() -> AioSession:
    """A new aiobotocore session over the run's one ``shared_loader``."""
    session = get_session()
    session.register_component("data_loader", shared_loader())
    return session


def open_gateway_s3_client(s3: S3Config) -> contextlib.AbstractAsyncContextManager[S3Client]:
    """``create_app``'s S3 client in tests (``s3_client=``): production's ``open_s3_client``,
    from a session over the shared botocore model."""
    return open_s3_client(s3, session=s3_session())


@pytest.fixture
async def s3_client(s3_target: S3Server) -> AsyncIterator[Any]:
    """An aiobotocore S3 client to the test's server: its credentials, path style, no retries."""
    session = s3_session()
    config = AioConfig(
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=30,
    )
    async with session.create_client(
        "s3",
        region_name=REGION,
        endpoint_url=s3_target.endpoint,
        aws_access_key_id=s3_target.access_key_id,
        aws_secret_access_key=s3_target.secret_access_key,
        config=config,
    ) as client:
        yield client


@pytest.fixture
def bucket_names() -> BucketNames:
    """A fresh (uploads, storage) pair of bucket names, unique to the test."""
    suffix = uuid.uuid4().hex[:12]
    return BucketNames(uploads=f"up-{suffix}", storage=f"st-{suffix}")


async def set_up(
    client: Any, server: S3Server, names: BucketNames, origins: list[str]
) -> list[str]:
    """`upload-gateway s3 setup` on the test's server, made usable there; its changes.

    On radosgw 16 two things differ from AWS, both checked here so that a change in either
    shows: it has no default-encryption API (PutBucketEncryption came in Ceph 17), so setup
    makes every other change and reports exactly that refusal per bucket; and it denies every
    PutObject and UploadPart, even the owner's, in a bucket with BlockPublicAcls on (POST forms
    and copies pass), so that one setting is turned off again there, the other three kept.
    """
    try:
        return await setup_buckets(client, names, origins=origins, region=REGION)
    except SetupIncomplete as exc:
        if server.name != "radosgw":
            raise
        expected = [
            f"{role} bucket {bucket}: default encryption is off; "
            "S3 failed to correct it (InvalidArgument)"
            for role, bucket in (("uploads", names.uploads), ("storage", names.storage))
        ]
        assert exc.failures == expected, exc.failures
        for bucket in (names.uploads, names.storage):
            await client.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={**RADOSGW_PUBLIC_ACCESS_BLOCK},
            )
        return exc.changes


@pytest.fixture
async def buckets(
    s3_client: Any, s3_target: S3Server, bucket_names: BucketNames
) -> AsyncIterator[BucketNames]:
    """Both buckets, created and configured by the code behind `upload-gateway s3 setup`."""
    await set_up(s3_client, s3_target, bucket_names, list(TEST_ORIGINS))
    yield bucket_names
    # moto keeps every object in this process's memory: empty the test's buckets afterwards so
    # a long suite does not hold gigabytes of finished tests' uploads.
    for bucket in (bucket_names.uploads, bucket_names.storage):
        await _empty(s3_client, bucket)


async def _empty(client: Any, bucket: str) -> None:
    try:
        uploads = await client.list_multipart_uploads(Bucket=bucket)
        for upload in uploads.get("Uploads", []):
            await client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        while True:
            listing = await client.list_objects_v2(Bucket=bucket)
            keys = [{"Key": item["Key"]} for item in listing.get("Contents", [])]
            if not keys:
                break
            await client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        await client.delete_bucket(Bucket=bucket)
    except ClientError:
        pass  # a test may have deleted or broken the bucket on purpose


@pytest.fixture
async def storage(s3_client: Any, buckets: BucketNames) -> Storage:
    """The gateway's Storage over the test's buckets."""
    return Storage(s3_client, uploads_bucket=buckets.uploads, storage_bucket=buckets.storage)


@dataclass(frozen=True)
class S3Call:
    """One S3 API call as the client was asked to make it."""

    operation: str
    bucket: str
    source_bucket: str | None
    params: Mapping[str, Any]


def _source_bucket(copy_source: Any) -> str | None:
    # botocore turns a CopySource dict into "bucket/key" before some handlers see it.
    if isinstance(copy_source, Mapping):
        return str(copy_source["Bucket"])
    if isinstance(copy_source, str):
        return copy_source.lstrip("/").split("/", 1)[0]
    return None


@pytest.fixture
def s3_operations(s3_client: Any, buckets: BucketNames) -> Iterator[list[S3Call]]:
    """Every S3 call made through ``s3_client`` after the buckets exist, in order."""
    calls: list[S3Call] = []

    def record(params: Mapping[str, Any], model: Any, **_: Any) -> None:
        calls.append(
            S3Call(
                operation=str(model.name),
                bucket=str(params.get("Bucket", "")),
                source_bucket=_source_bucket(params.get("CopySource")),
                params=dict(params),
            )
        )

    events = s3_client.meta.events
    events.register("before-parameter-build.s3", record, unique_id="tests-s3-operations")
    try:
        yield calls
    finally:
        events.unregister("before-parameter-build.s3", unique_id="tests-s3-operations")
