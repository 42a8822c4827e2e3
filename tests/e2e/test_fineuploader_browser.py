"""Fine Uploader 5.16.2 in headless Chromium, through the gateway, into moto, to the upstream.

The page (tests/e2e/pages/fineuploader.html) and Fine Uploader's S3 build are served by the
upstream app and reach the browser through the gateway, as an app behind the gateway would.
The page builds ``qq.s3.FineUploaderBasic`` from ``GET P/config`` and names each object with the
prefix cookie. moto answers the browser at ``http://<bucket>.localhost:<port>`` (Chromium sends
every ``*.localhost`` to loopback), while the gateway's own client uses ``127.0.0.1``.
moto checks no signatures: tests/test_fineuploader.py checks those; here the whole flow runs.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from moto.server import ThreadedMotoServer

from gateway.app import create_app
from tests.support.browser import BrowserThread
from tests.support.gateway import ACCESS_KEY_ID, SECRET_ACCESS_KEY, build_config, config_dict
from tests.support.upstream import RECORDED, Recorded, make_upstream_app

pytestmark = pytest.mark.browser

P = "/uploads/photos"
MiB = 1024 * 1024
MAX_SIZE = 15 * MiB
ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).resolve().parent / "pages"
FINE_UPLOADER = ROOT / "node_modules" / "fine-uploader" / "s3.fine-uploader"
# Bounded waits: a broken flow fails within these, it never hangs the suite.
UPLOAD_TIMEOUT_MS = 45_000


# --------------------------------------------------------------------------- servers


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may find real credentials or call instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture(scope="module")
def moto_port() -> Iterator[int]:
    """moto's S3 server on loopback for the module (buckets are per test)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield int(server.get_host_and_port()[1])
    finally:
        server.stop()


@pytest.fixture
def s3(moto_port: int) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{moto_port}",
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


@web.middleware
async def _pages(request: web.Request, handler: Any) -> web.StreamResponse:
    """Serve the test page and Fine Uploader's files from the upstream app, by plain name."""
    for prefix, folder in (("/e2e/pages/", PAGES), ("/e2e/fine-uploader/", FINE_UPLOADER)):
        if request.path.startswith(prefix):
            name = request.path.removeprefix(prefix)
            path = folder / name
            if "/" in name or name.startswith(".") or not path.is_file():
                raise web.HTTPNotFound()
            return web.FileResponse(path)
    response: web.StreamResponse = await handler(request)
    return response


@pytest.fixture
async def upstream(aiohttp_server: Any) -> TestServer:
    """The reflecting upstream app, also serving the page (the app behind the gateway)."""
    app = make_upstream_app()
    app.middlewares.append(_pages)
    server: TestServer = await aiohttp_server(app)
    return server


@dataclass
class Stack:
    gateway: str
    uploads: str
    storage: str
    recorded: Recorded


@pytest.fixture
async def stack(aiohttp_server: Any, upstream: TestServer, s3: Any, moto_port: int) -> Stack:
    """Fresh buckets (CORS for the gateway's origin), and the gateway in front of the upstream."""
    suffix = uuid.uuid4().hex[:10]
    uploads, storage = f"fu-up-{suffix}", f"fu-st-{suffix}"
    tree = config_dict(
        str(upstream.make_url("")).rstrip("/"),
        s3_endpoint=f"http://127.0.0.1:{moto_port}",
        uploads_bucket=uploads,
        storage_bucket=storage,
    )
    # Browsers get virtual-host URLs on localhost; the gateway's client keeps 127.0.0.1, where
    # auto addressing means path style.
    tree["s3"]["public_endpoint_url"] = f"http://localhost:{moto_port}"
    tree["s3"]["addressing_style"] = "auto"
    tree["routes"][0]["max_size"] = MAX_SIZE
    config = build_config(tree)
    # The real wall clock: the browser's own dates must fall within the rules' 15 minutes.
    gateway: TestServer = await aiohttp_server(create_app(config))
    origin = str(gateway.make_url("")).rstrip("/")
    for bucket in (uploads, storage):
        s3.create_bucket(Bucket=bucket)
    s3.put_bucket_cors(
        Bucket=uploads,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [origin],
                    "AllowedMethods": ["POST", "PUT", "DELETE"],
                    # "*" never covers Authorization (Fetch standard), which chunked calls send.
                    "AllowedHeaders": ["*", "Authorization"],
                    "ExposeHeaders": ["ETag"],
                    "MaxAgeSeconds": 3000,
                }
            ]
        },
    )
    return Stack(origin, uploads, storage, upstream.app[RECORDED])


def keys_in(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def jpeg_file(folder: Path, name: str, size: int) -> tuple[Path, str]:
    """A file of ``size`` bytes that sniffs as JPEG; returns its path and sha256."""
    header = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    block = hashlib.sha256(name.encode()).digest() * 2048  # 64 KiB, differs per file
    data = (header + block * (size // len(block) + 1))[:size]
    path = folder / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


async def upload_in_browser(
    browser: BrowserThread, stack: Stack, path: Path, *, version: int = 4, user: str = "alice"
) -> dict[str, Any]:
    """Log in, open the page, pick the file; return the page's events and its prefix cookie."""

    async def flow(context: Any) -> dict[str, Any]:
        page = await context.new_page()
        login = await page.goto(f"{stack.gateway}/login?user={user}")
        assert login is not None and login.status == 200
        query = f"route={P}&version={version}"
        await page.goto(f"{stack.gateway}/e2e/pages/fineuploader.html?{query}")
        await page.wait_for_function(
            "window.ready || window.events.some(e => e.type === 'setup-error')"
        )
        await page.set_input_files("#files", str(path))
        await page.wait_for_function(
            "window.events.some(e => e.type === 'all-complete')", timeout=UPLOAD_TIMEOUT_MS
        )
        result: dict[str, Any] = await page.evaluate(
            "({events: window.events, prefix: window.prefixCookie})"
        )
        return result

    return await browser.run(flow, timeout=UPLOAD_TIMEOUT_MS / 1000 + 15)


def completed(result: dict[str, Any]) -> dict[str, Any]:
    """The one onComplete event of a single-file upload, which must have succeeded."""
    events = result["events"]
    assert [e for e in events if e["type"] in ("error", "setup-error")] == [], events
    [complete] = [e for e in events if e["type"] == "complete"]
    assert complete["response"]["success"] is True, complete
    return complete


def check_stored(
    s3: Any, stack: Stack, result: dict[str, Any], sha256: str, filename: str
) -> dict[str, Any]:
    """One valid completion reached the upstream; the bytes are stored; the uploads bucket empty."""
    complete = completed(result)
    [entry] = stack.recorded.completions  # recorded only when its signature verified
    message = entry["message"]
    assert message["user"] == "alice" and message["filename"] == filename
    assert message["params"]["nested"] == {"a": "1 2", "list": ["x", "y"]}
    assert message["params"]["top"] == "t"
    # onComplete saw the upstream's answer, merged by Fine Uploader into its response.
    assert complete["response"]["stored"] is True
    assert complete["response"]["key"] == message["object"]["key"]
    # The page named the object with the prefix cookie, as the gateway required.
    assert complete["key"].startswith(result["prefix"]) and result["prefix"].endswith("/")
    body = s3.get_object(Bucket=stack.storage, Key=message["object"]["key"])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha256
    assert keys_in(s3, stack.uploads) == []
    return message


# --------------------------------------------------------------------------- tests


async def test_small_file_in_one_request_v4(
    browser: BrowserThread, stack: Stack, s3: Any, tmp_path: Path
) -> None:
    """A small file: one v4 POST-policy form to the bucket, then the completion."""
    path, sha256 = jpeg_file(tmp_path, "cat photo.jpg", 300 * 1024)
    result = await upload_in_browser(browser, stack, path)
    message = check_stored(s3, stack, result, sha256, "cat photo.jpg")
    assert message["object"]["size"] == 300 * 1024


async def test_twelve_mib_file_in_five_mib_parts(
    browser: BrowserThread, stack: Stack, s3: Any, tmp_path: Path
) -> None:
    """A 12 MiB file goes up in three parts (5+5+2 MiB), each v4-signed by the gateway."""
    path, sha256 = jpeg_file(tmp_path, "big.jpg", 12 * MiB)
    result = await upload_in_browser(browser, stack, path)
    message = check_stored(s3, stack, result, sha256, "big.jpg")
    assert message["object"]["size"] == 12 * MiB


async def test_file_over_max_size_is_refused(
    browser: BrowserThread, stack: Stack, s3: Any, tmp_path: Path
) -> None:
    """Beyond max_size the gateway refuses to sign the extra part: nothing stored, no completion.

    The page sets no size limit of its own, so only the gateway stands in the way.
    """
    path, _ = jpeg_file(tmp_path, "huge.jpg", MAX_SIZE + 5 * MiB)
    result = await upload_in_browser(browser, stack, path)
    events = result["events"]
    assert [e for e in events if e["type"] == "complete" and e["response"].get("success")] == []
    errors = [e for e in events if e["type"] == "error"]
    assert errors, events
    assert any("part-number-out-of-range" in e["reason"] for e in errors), errors
    assert stack.recorded.completions == []
    assert keys_in(s3, stack.uploads) == [] and keys_in(s3, stack.storage) == []


async def test_small_file_with_signature_v2(
    browser: BrowserThread, stack: Stack, s3: Any, tmp_path: Path
) -> None:
    """The same small upload with signature version 2 (HMAC-SHA1 POST policy)."""
    path, sha256 = jpeg_file(tmp_path, "v2.jpg", 200 * 1024)
    result = await upload_in_browser(browser, stack, path, version=2)
    check_stored(s3, stack, result, sha256, "v2.jpg")
