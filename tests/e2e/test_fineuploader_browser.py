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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
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

P = "/uploads/photos"
MiB = 1024 * 1024
MAX_SIZE = 15 * MiB
ROOT = Path(__file__).resolve().parents[2]
PAGES = Path(__file__).resolve().parent / "pages"
FINE_UPLOADER = ROOT / "node_modules" / "fine-uploader" / "s3.fine-uploader"
# Bounded waits: a broken flow fails within these, it never hangs the suite.
UPLOAD_TIMEOUT_MS = 45_000


# --------------------------------------------------------------------------- servers


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
async def stack(
    serve_gateway: ServeGateway,
    upstream: TestServer,
    s3_server: S3Server,
    s3_client: Any,
    buckets: BucketNames,
) -> Stack:
    """The gateway in front of the upstream, on buckets set up as `s3 setup` does."""
    tree = config_dict(
        str(upstream.make_url("")).rstrip("/"),
        s3_endpoint=s3_server.endpoint,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )
    # Browsers get virtual-host URLs on localhost; the gateway's own client keeps 127.0.0.1
    # (auto addressing on a custom endpoint means path style there).
    tree["s3"]["public_endpoint_url"] = s3_server.browser_endpoint
    tree["s3"]["addressing_style"] = "auto"
    tree["routes"][0]["max_size"] = MAX_SIZE
    # The real wall clock: the browser's own dates must fall within the rules' 15 minutes.
    gateway = await serve_gateway(build_config(tree))
    origin = str(gateway.make_url("")).rstrip("/")
    # CORS for the page's own origin, port included, as `s3 setup` makes it from public_origins
    # (radosgw matches origins exactly; moto lets any through).
    await set_up(s3_client, s3_server, buckets, [origin])
    return Stack(origin, buckets.uploads, buckets.storage, upstream.app[RECORDED])


async def keys_in(s3: Any, bucket: str) -> list[str]:
    listing = await s3.list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


async def sha256_of(s3: Any, bucket: str, key: str) -> str:
    answer = await s3.get_object(Bucket=bucket, Key=key)
    async with answer["Body"] as body:
        return hashlib.sha256(await body.read()).hexdigest()


async def metrics_of(stack: Stack) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{stack.gateway}/-/metrics") as answer,
    ):
        return await answer.text()


async def signatures_issued(stack: Stack) -> float:
    """How many signatures the gateway issued on the route (its Prometheus counter)."""
    wanted = 'gateway_signatures_total{outcome="issued",reason="",route="photos"} '
    for line in (await metrics_of(stack)).splitlines():
        if line.startswith(wanted):
            return float(line.removeprefix(wanted))
    return 0.0


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


async def check_stored(
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
    assert await sha256_of(s3, stack.storage, message["object"]["key"]) == sha256
    assert await keys_in(s3, stack.uploads) == []
    return message


# --------------------------------------------------------------------------- tests


async def test_small_file_in_one_request_v4(
    browser: BrowserThread, stack: Stack, s3_client: Any, tmp_path: Path
) -> None:
    """A small file: one v4 POST-policy form to the bucket, then the completion."""
    path, sha256 = jpeg_file(tmp_path, "cat photo.jpg", 300 * 1024)
    result = await upload_in_browser(browser, stack, path)
    message = await check_stored(s3_client, stack, result, sha256, "cat photo.jpg")
    assert message["object"]["size"] == 300 * 1024
    assert await signatures_issued(stack) == 1  # the policy


async def test_twelve_mib_file_in_five_mib_parts(
    browser: BrowserThread, stack: Stack, s3_client: Any, tmp_path: Path
) -> None:
    """A 12 MiB file goes up in three parts (5+5+2 MiB), each v4-signed by the gateway."""
    path, sha256 = jpeg_file(tmp_path, "big.jpg", 12 * MiB)
    result = await upload_in_browser(browser, stack, path)
    message = await check_stored(s3_client, stack, result, sha256, "big.jpg")
    assert message["object"]["size"] == 12 * MiB
    assert await signatures_issued(stack) == 5  # initiate, three parts, complete


async def test_file_over_max_size_is_refused(
    browser: BrowserThread, stack: Stack, s3_client: Any, tmp_path: Path
) -> None:
    """Beyond max_size the gateway refuses to sign the extra part: nothing stored, no completion.

    The page sets no size limit of its own, so only the gateway stands in the way.
    """
    path, _ = jpeg_file(tmp_path, "huge.jpg", MAX_SIZE + 5 * MiB)
    result = await upload_in_browser(browser, stack, path)
    events = result["events"]
    assert [e for e in events if e["type"] == "complete" and e["response"].get("success")] == []
    # Fine Uploader shows its own text for a chunk it could not get signed...
    assert [e["reason"] for e in events if e["type"] == "error"] == ["Problem signing the chunk!"]
    # ...and the gateway counted why: part 4 of a 15 MiB limit in 5 MiB parts.
    refused = 'outcome="refused",reason="part-number-out-of-range",route="photos"} 1.0'
    assert refused in await metrics_of(stack)
    assert stack.recorded.completions == []
    assert await keys_in(s3_client, stack.uploads) == []
    assert await keys_in(s3_client, stack.storage) == []


async def test_small_file_with_signature_v2(
    browser: BrowserThread, stack: Stack, s3_client: Any, tmp_path: Path
) -> None:
    """The same small upload with signature version 2 (HMAC-SHA1 POST policy)."""
    path, sha256 = jpeg_file(tmp_path, "v2.jpg", 200 * 1024)
    result = await upload_in_browser(browser, stack, path, version=2)
    await check_stored(s3_client, stack, result, sha256, "v2.jpg")
    assert await signatures_issued(stack) == 1
