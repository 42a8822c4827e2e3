"""Fixtures that build a gateway config and app pointing at the test's real servers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp.web_app
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.fernet import Fernet

from gateway.app import create_app
from gateway.buckets import BucketNames
from gateway.config import Config
from gateway.values import Clock
from tests.support.s3 import open_gateway_s3_client
from tests.support.upstream import RECORDED, WEBHOOK_SECRET, Recorded, make_upstream_app

SESSION_KEY = Fernet.generate_key().decode()
OTHER_SESSION_KEY = Fernet.generate_key().decode()
ACCESS_KEY_ID = "AKIDGATEWAYTEST"
SECRET_ACCESS_KEY = "gateway-test-secret-access-key"
START = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


class SettableClock:
    """A clock a test can move; the gateway reads it once per request."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_dict(
    upstream_url: str,
    *,
    s3_endpoint: str = "http://127.0.0.1:1",
    uploads_bucket: str = "test-uploads",
    storage_bucket: str = "test-storage",
) -> dict[str, Any]:
    """A valid config tree for the given servers, with a Fine Uploader route."""
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "upstream": {"url": upstream_url, "connect_timeout": 2, "read_timeout": 5},
        "session": {"keys": [SESSION_KEY], "secure": False},
        "identity": {},
        "s3": {
            "region": "us-east-1",
            "endpoint_url": s3_endpoint,
            "addressing_style": "path",
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "uploads_bucket": uploads_bucket,
            "storage_bucket": storage_bucket,
        },
        "webhook": {"secret": WEBHOOK_SECRET, "timeout": 5},
        "routes": [
            {
                "name": "photos",
                "protocol": "fineuploader",
                "path": "/uploads/photos",
                "max_size": "20MiB",
                "content_types": ["image/*", "application/pdf", "application/octet-stream"],
                "forward": "/internal/uploads/photos",
            },
        ],
    }


def build_config(tree: dict[str, Any], **overrides: Any) -> Config:
    return Config.model_validate(_merge(tree, overrides))


def gateway_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    """``create_app`` as production calls it, but every test gateway's S3 client is built over
    the run's one parsed botocore model (tests/support/s3.py ``open_gateway_s3_client``)."""
    return create_app(config, clock=clock, s3_client=open_gateway_s3_client)


def release_apps() -> None:
    """Let go of the apps aiohttp remembers: it caches each handler's middleware chain, keyed by
    its apps, in one module-level LRU cache of 1024 entries, a cache made for one app per
    process. A run making an app per test would keep the last 1024 of them alive, each with its
    S3 client, connection pools and botocore model (the 600 MB of tests/integration/test_api.py)."""
    aiohttp.web_app._cached_build_middleware.cache_clear()


@pytest.fixture(autouse=True)
def _release_apps() -> Iterator[None]:
    """After each test, aiohttp's cache lets go of its apps (``release_apps``)."""
    yield
    release_apps()


@pytest.fixture
async def upstream_server(aiohttp_server: Any) -> TestServer:
    """The reflecting upstream app on a real loopback port."""
    server: TestServer = await aiohttp_server(make_upstream_app())
    return server


@pytest.fixture
def recorded(upstream_server: TestServer) -> Recorded:
    """What the upstream received: completions and echoed requests."""
    return upstream_server.app[RECORDED]


@pytest.fixture
def upstream_url(upstream_server: TestServer) -> str:
    return str(upstream_server.make_url("")).rstrip("/")


@pytest.fixture
def clock(request: pytest.FixtureRequest) -> SettableClock:
    """START, a fixed instant; the real time when the test's S3 server checks the dates of
    signatures (radosgw refuses a request signed nine days ago as expired)."""
    if "s3_server" in request.fixturenames and request.getfixturevalue("s3_server").verifies:
        return SettableClock(datetime.now(UTC).replace(microsecond=0))
    return SettableClock()


@pytest.fixture
def forwarder_kind() -> str:
    """``upstream.forwarder`` for ``make_config``: fast, unless a module overrides this fixture
    with ``FORWARDERS`` to run its tests under both."""
    return "fast"


# Both forwarders, for ``@pytest.fixture(params=FORWARDERS)`` overrides of ``forwarder_kind``.
FORWARDERS = ("fast", "standard")


@pytest.fixture
def s3_tree(upstream_url: str, s3_endpoint: str, buckets: BucketNames) -> dict[str, Any]:
    """``config_dict`` at the test's upstream, its S3 server (moto, or each of ``s3_server``'s)
    and its fresh buckets, with the Fine Uploader route: the test's own copy, to change."""
    return config_dict(
        upstream_url,
        s3_endpoint=s3_endpoint,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )


@pytest.fixture
def make_config(upstream_url: str, forwarder_kind: str) -> Callable[..., Config]:
    """``make_config(**overrides)``: a valid Config at the test's upstream; S3 unreachable."""
    tree = _merge(config_dict(upstream_url), {"upstream": {"forwarder": forwarder_kind}})

    def make(**overrides: Any) -> Config:
        return build_config(tree, **overrides)

    return make
