"""A stock Uppy page (``@uppy/core`` + ``@uppy/aws-s3`` from npm) uploads through the gateway.

The page and its esbuild bundle are served by the upstream app behind the gateway (one origin);
headless Chromium picks a small file (form POST, then ``POST P/complete``) and a 12 MiB file
(multipart through Companion's endpoints); the storage bucket, the uploads bucket and the
upstream's signed completions are checked.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.buckets import BucketNames
from tests.support.browser import BrowserThread
from tests.support.gateway import build_config, config_dict
from tests.support.processes import ServeGateway
from tests.support.s3 import S3Server, set_up
from tests.support.upstream import RECORDED, Recorded, make_upstream_app

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]
PAGE_DIR = Path(__file__).resolve().parent / "uppy"
ESBUILD = ROOT / "node_modules" / ".bin" / "esbuild"
P = "/uploads/uppy"
MiB = 1024 * 1024
ROUTE = {
    "name": "uppy",
    "protocol": "uppy",
    "path": P,
    "max_size": "20MiB",
    "content_types": ["image/*", "application/octet-stream"],
    "forward": "/internal/uploads/uppy",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's script: the npm packages bundled by esbuild into a tmp dir, never committed."""
    out = tmp_path_factory.mktemp("uppy-bundle") / "uppy.js"
    subprocess.run(
        [str(ESBUILD), str(PAGE_DIR / "entry.js"), "--bundle", "--format=iife",
         f"--outfile={out}", "--log-level=warning"],
        check=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    return out


@pytest.fixture
async def page_upstream(aiohttp_server: Any, bundle: Path) -> TestServer:
    """The test upstream app, also serving the Uppy page and its bundle."""
    app = make_upstream_app()

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(PAGE_DIR / "index.html")

    async def script(request: web.Request) -> web.FileResponse:
        return web.FileResponse(bundle, headers={"Content-Type": "text/javascript"})

    # More specific than the upstream's catch-all echo, so aiohttp resolves these first.
    app.router.add_get("/e2e/uppy/index.html", page)
    app.router.add_get("/e2e/uppy/uppy.js", script)
    server: TestServer = await aiohttp_server(app)
    return server


async def test_stock_uppy_uploads_small_and_multipart_files(
    serve_gateway: ServeGateway,
    page_upstream: TestServer,
    s3_server: S3Server,
    s3_endpoint: str,
    s3_client: Any,
    bucket_names: BucketNames,
    browser: BrowserThread,
) -> None:
    """Small (form POST + P/complete) and 12 MiB multipart uploads store once, upstream told."""
    uploads, storage = bucket_names.uploads, bucket_names.storage
    upstream_url = str(page_upstream.make_url("")).rstrip("/")
    config = build_config(
        config_dict(upstream_url, s3_endpoint=s3_endpoint, uploads_bucket=uploads,
                    storage_bucket=storage),
        routes=[ROUTE],
    )  # fmt: skip
    gateway = await serve_gateway(config)
    origin = str(gateway.make_url("")).rstrip("/")
    # The buckets as `s3 setup` makes them: CORS lets the page's origin POST, PUT and read ETag.
    await set_up(s3_client, s3_server, bucket_names, [origin])
    small = b"\x89PNG\r\n\x1a\n" + os.urandom(40_000)
    large = os.urandom(12 * MiB)

    async def drive(context: Any) -> list[dict[str, Any]]:
        page = await context.new_page()
        await page.goto(f"{origin}/login?user=alice")
        await page.goto(f"{origin}/e2e/uppy/index.html?route={P}")
        await page.wait_for_function("window.ready === true || window.events.length > 0")
        await page.set_input_files(
            "#files",
            files=[
                {"name": "small photo.png", "mimeType": "image/png", "buffer": small},
                {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": large},
            ],
        )
        await page.wait_for_function(
            "window.events.filter(e => e.type === 'success' || e.type === 'error'"
            " || e.type === 'restricted').length >= 2",
            timeout=60_000,
        )
        events: list[dict[str, Any]] = await page.evaluate("window.events")
        return events

    events = await browser.run(drive, timeout=90)
    successes = {e["name"]: e for e in events if e["type"] == "success"}
    assert set(successes) == {"small photo.png", "big.bin"}, events

    recorded: Recorded = page_upstream.app[RECORDED]
    messages = {c["message"]["filename"]: c for c in recorded.completions}
    assert set(messages) == {"small photo.png", "big.bin"}
    for name, data in (("small photo.png", small), ("big.bin", large)):
        entry = messages[name]
        message = entry["message"]
        # Fine Uploader's completions carry exactly these fields (docs/webhooks.md, "The message"),
        # and the key it was uploaded under, which the gateway's delete path names.
        assert set(message) == {
            "event", "id", "route", "user", "filename", "params", "object", "upload_key",
            "trigger",
        }  # fmt: skip
        assert message["trigger"] == "client"
        assert message["upload_key"].endswith(".png" if name.endswith(".png") else ".bin")
        assert set(message["object"]) == {"bucket", "key", "size", "etag", "content_type"}
        assert message["event"] == "upload.completed"
        assert message["route"] == "uppy" and message["user"] == "alice"
        assert entry["user"] == "alice" and entry["idempotency_key"] == message["id"]
        assert message["params"] == {}
        assert message["object"]["bucket"] == storage
        assert message["object"]["size"] == len(data)
        answer = await s3_client.get_object(Bucket=storage, Key=message["object"]["key"])
        async with answer["Body"] as stream:
            body = await stream.read()
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(data).hexdigest()
    # What the page saw: the upstream's answer to P/complete, and Companion's multipart answer.
    assert successes["small photo.png"]["completeStatus"] == 200
    assert successes["small photo.png"]["complete"]["stored"] is True
    # The small file went as a form POST to the uploads bucket, the large one as a multipart
    # upload whose completion answered the stored copy's location (Companion's answer).
    assert successes["small photo.png"]["body"]["location"].startswith(f"{s3_endpoint}/{uploads}/")
    big = successes["big.bin"]["body"]
    assert big["key"] == messages["big.bin"]["message"]["object"]["key"]
    assert big["location"] == f"{s3_endpoint}/{storage}/{big['key']}"
    assert (await s3_client.list_objects_v2(Bucket=uploads)).get("KeyCount", 0) == 0
    assert (await s3_client.list_multipart_uploads(Bucket=uploads)).get("Uploads", []) == []
