"""S3 fixtures: moto's server on loopback, an aiobotocore client, fresh buckets per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from gateway.buckets import BucketNames, setup_buckets
from gateway.storage import Storage

TEST_ORIGINS = ("http://127.0.0.1", "http://localhost")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test may find real AWS credentials or reach the instance metadata service."""
    import os

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    empty: Path = tmp_path_factory.mktemp("aws")
    (empty / "config").write_text("")
    (empty / "credentials").write_text("")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (never 0.0.0.0), for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
async def s3_client(s3_endpoint: str) -> AsyncIterator[Any]:
    """An aiobotocore S3 client to moto, path style, no retries."""
    config = AioConfig(
        retries={"max_attempts": 1, "mode": "standard"},
        s3={"addressing_style": "path"},
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=30,
    )
    async with get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    ) as client:
        yield client


@pytest.fixture
def bucket_names() -> BucketNames:
    suffix = uuid.uuid4().hex[:12]
    return BucketNames(uploads=f"up-{suffix}", storage=f"st-{suffix}")


@pytest.fixture
async def buckets(s3_client: Any, bucket_names: BucketNames) -> BucketNames:
    """Both buckets, created and configured by the code behind `upload-gateway s3 setup`."""
    await setup_buckets(s3_client, bucket_names, origins=list(TEST_ORIGINS), region="us-east-1")
    return bucket_names


@pytest.fixture
async def storage(s3_client: Any, buckets: BucketNames) -> Storage:
    return Storage(s3_client, uploads_bucket=buckets.uploads, storage_bucket=buckets.storage)
