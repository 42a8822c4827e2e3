"""deploy/kubernetes/ against the gateway itself, served on loopback: the probes hit the ops
endpoints.

The manifests against the Kubernetes API schemas and the CLI: tests/unit/test_kubernetes.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.gateway import gateway_app
from tests.support.processes import free_port, served
from tests.unit.test_kubernetes import container, manifest_config


@pytest.fixture
async def manifest_gateway() -> AsyncIterator[str]:
    """The gateway built from the ConfigMap's config, its app and S3 moved to closed loopback
    ports (nothing leaves the machine), served as serve does."""
    config = manifest_config()
    closed = f"http://127.0.0.1:{free_port()}"
    config = config.model_copy(
        update={
            "upstream": config.upstream.model_copy(update={"url": closed}),
            "s3": config.s3.model_copy(update={"endpoint_url": closed}),
        }
    )
    async with served(gateway_app(config)) as url:
        yield url


async def test_probe_paths_are_answered_by_the_gateway(manifest_gateway: str) -> None:
    """With that config, the liveness path answers 200 and the readiness path the gateway's
    own readiness answer (503 here, the app and S3 being down): neither is proxied or 404."""
    spec = container()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(manifest_gateway + spec["livenessProbe"]["httpGet"]["path"]) as r:
            assert (r.status, await r.json()) == (200, {"status": "ok"})
        async with session.get(manifest_gateway + spec["readinessProbe"]["httpGet"]["path"]) as r:
            body = await r.json()
            assert (r.status, body["status"], sorted(body["down"])) == (
                503,
                "not-ready",
                ["s3", "upstream"],
            )
