"""Fine Uploader 5.16.2 in headless Chromium, through the gateway, into moto, to the upstream.

The page (tests/system/e2e/pages/fineuploader.html) and Fine Uploader's S3 build are served by the
upstream app and reach the browser through the gateway, as an app behind the gateway would.
The page builds ``qq.s3.FineUploaderBasic`` from ``GET P/config`` and names each object with the
prefix cookie. moto answers the browser at ``http://<bucket>.localhost:<port>`` (Chromium sends
every ``*.localhost`` to loopback), while the gateway's own client uses ``127.0.0.1``.
moto checks no signatures: tests/integration/test_fineuploader.py checks those; here the whole
flow runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway import keys
from gateway.buckets import BucketNames
from gateway.completion import ID_PURPOSE, idempotency_key
from gateway.endpoints import browser_bucket
from tests.support.browser import BrowserThread
from tests.support.gateway import ACCESS_KEY_ID, SESSION_KEY, build_config, config_dict
from tests.support.processes import GatewayProcess, ServeGateway, start_gateway_process
from tests.support.s3 import S3Server, set_up
from tests.support.upstream import RECORDED, Recorded, make_upstream_app

pytestmark = pytest.mark.browser

P = "/uploads/photos"
MiB = 1024 * 1024
MAX_SIZE = 15 * MiB
ROOT = Path(__file__).resolve().parents[3]
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


async def make_stack(
    serve_gateway: ServeGateway,
    upstream: TestServer,
    s3_server: S3Server,
    s3_client: Any,
    buckets: BucketNames,
    endpoints: dict[str, str] | None = None,
) -> Stack:
    """The gateway in front of the upstream, on buckets set up as `s3 setup` does; the route's
    ``endpoints`` if given."""
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
    if endpoints is not None:
        tree["routes"][0]["endpoints"] = endpoints
    # The real wall clock: the browser's own dates must fall within the rules' 15 minutes.
    gateway = await serve_gateway(build_config(tree))
    origin = str(gateway.make_url("")).rstrip("/")
    # CORS for the page's own origin, port included, as `s3 setup` makes it from public_origins
    # (radosgw matches origins exactly; moto lets any through).
    await set_up(s3_client, s3_server, buckets, [origin])
    return Stack(origin, buckets.uploads, buckets.storage, upstream.app[RECORDED])


@pytest.fixture
async def stack(
    serve_gateway: ServeGateway,
    upstream: TestServer,
    s3_server: S3Server,
    s3_client: Any,
    buckets: BucketNames,
) -> Stack:
    """The gateway in front of the upstream, on buckets set up as `s3 setup` does."""
    return await make_stack(serve_gateway, upstream, s3_server, s3_client, buckets)


async def keys_in(s3: Any, bucket: str) -> list[str]:
    listing = await s3.list_objects_v2(Bucket=bucket)
    # Not the gateway's own records (owner records, sweep leases: gateway/completion/sweep.py).
    keys = [o["Key"] for o in listing.get("Contents", [])]
    return [key for key in keys if not key.startswith(".gateway/")]


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


# --------------------------------------------------------------------------- the page closed


@pytest.fixture
async def sweeping_gateway(
    upstream: TestServer,
    s3_server: S3Server,
    s3_client: Any,
    buckets: BucketNames,
    tmp_path: Path,
) -> Any:
    """A real ``python -m gateway serve`` process in front of the page's upstream, sweeping
    every 0.2 s what no client completed within 1 s; stopped (by pid) after the test."""
    tree = config_dict(
        str(upstream.make_url("")).rstrip("/"),
        s3_endpoint=s3_server.endpoint,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )
    tree["s3"]["public_endpoint_url"] = s3_server.browser_endpoint
    tree["s3"]["addressing_style"] = "auto"
    tree["routes"][0]["max_size"] = MAX_SIZE
    tree["webhook"]["timeout"] = 2
    tree["completion"] = {"sweep_after": 1, "interval": 0.2, "retry_base": 0.2, "lease": 3}
    gateway: GatewayProcess = await start_gateway_process(tree, tmp_path)
    try:
        await set_up(s3_client, s3_server, buckets, [gateway.url])
        yield Stack(gateway.url, buckets.uploads, buckets.storage, upstream.app[RECORDED])
    finally:
        gateway.stop()


async def upload_then_close_before_success(
    browser: BrowserThread, stack: Stack, path: Path
) -> dict[str, Any]:
    """Log in, pick the file, and close the page the moment Fine Uploader asks for P/success
    (S3 has the file by then): that request is aborted in the browser, so the gateway never
    hears of it. Returns the success call's form and the page's events then."""

    async def flow(context: Any) -> dict[str, Any]:
        page = await context.new_page()
        login = await page.goto(f"{stack.gateway}/login?user=alice")
        assert login is not None and login.status == 200
        asked = asyncio.Event()
        sent: dict[str, Any] = {}

        async def close_instead(route: Any) -> None:
            sent["form"] = route.request.post_data
            sent["events"] = await page.evaluate("window.events")
            # Aborted, not left pending: Playwright may let a pending request go on as the page
            # closes. So the call never leaves the browser, and the page closes at once.
            await route.abort("aborted")
            asked.set()

        await page.route(f"**{P}/success*", close_instead)
        await page.goto(f"{stack.gateway}/e2e/pages/fineuploader.html?route={P}&version=4")
        await page.wait_for_function(
            "window.ready || window.events.some(e => e.type === 'setup-error')"
        )
        await page.set_input_files("#files", str(path))
        await asyncio.wait_for(asked.wait(), UPLOAD_TIMEOUT_MS / 1000)
        await page.close()
        return sent

    return await browser.run(flow, timeout=UPLOAD_TIMEOUT_MS / 1000 + 15)


async def test_a_page_closed_before_its_success_call_is_stored_and_announced_once_by_the_sweep(
    browser: BrowserThread,
    sweeping_gateway: Stack,
    s3_client: Any,
    tmp_path: Path,
) -> None:
    """Issue 16's scenario in Chromium: Fine Uploader's S3 POST lands, then the page is closed
    before its success call reaches the gateway. The sweep of a real ``serve`` process stores
    the file once and announces it once, with the id a client's completion would have had,
    the trigger "sweep" and the name Fine Uploader left on the object; nothing is left in the
    uploads bucket, and no second message follows."""
    stack = sweeping_gateway
    path, sha256 = jpeg_file(tmp_path, "closed tab.jpg", 300 * 1024)
    result = await upload_then_close_before_success(browser, stack, path)
    assert "closed+tab.jpg" in result["form"] or "closed%20tab.jpg" in result["form"]
    assert [e for e in result["events"] if e["type"] in ("complete", "error")] == []
    [key] = await keys_in(s3_client, stack.uploads)  # in S3, not completed: the page is gone
    etag = (await s3_client.head_object(Bucket=stack.uploads, Key=key))["ETag"]
    assert stack.recorded.completions == []

    deadline = time.monotonic() + 20
    while stack.recorded.completions == [] or await keys_in(s3_client, stack.uploads):
        assert time.monotonic() < deadline, "the sweep did not complete the upload in 20 s"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # seven sweep intervals: a second delivery would show

    [entry] = stack.recorded.completions
    message = entry["message"]
    expected_id = idempotency_key(
        keys.derive(SESSION_KEY, ID_PURPOSE), "photos", "alice", key, etag
    )
    assert entry["status"] == 200 and entry["idempotency_key"] == expected_id
    assert (message["id"], message["trigger"], message["user"]) == (expected_id, "sweep", "alice")
    assert (message["filename"], message["upload_key"]) == ("closed tab.jpg", key)
    [stored] = await keys_in(s3_client, stack.storage)
    assert message["object"]["key"] == stored
    assert await sha256_of(s3_client, stack.storage, stored) == sha256
    assert await keys_in(s3_client, stack.uploads) == []
    leases = await s3_client.list_objects_v2(Bucket=stack.uploads, Prefix=".gateway/")
    assert leases.get("Contents", []) == []  # no lease left behind
    stored_total = 'gateway_completions_total{outcome="stored",route="photos",trigger="sweep"} 1.0'
    assert stored_total in await metrics_of(stack)


# --------------------------------------------------------------------------- a legacy page

# The paths of a page written for drf-to-s3 (its urls.py included under api/s3/, its completion
# view at api/s3/file_uploaded), with a delete endpoint of Django's trailing-slash style.
LEGACY_ENDPOINTS = {
    "signature": "/api/s3/sign",
    "success": "/api/s3/file_uploaded",
    "delete": "/api/s3/delete/",
    "blank": "/api/s3/empty_html",
}


@pytest.fixture
async def legacy_stack(
    serve_gateway: ServeGateway,
    upstream: TestServer,
    s3_server: S3Server,
    s3_client: Any,
    buckets: BucketNames,
) -> Stack:
    """The gateway with the route's endpoints at the legacy page's paths."""
    return await make_stack(
        serve_gateway, upstream, s3_server, s3_client, buckets, LEGACY_ENDPOINTS
    )


async def upload_from_legacy_page(
    browser: BrowserThread,
    stack: Stack,
    s3_server: S3Server,
    path: Path,
    version: int,
    keyline: str,
) -> dict[str, Any]:
    """Log in, open the legacy page with the deployment's bucket settings, upload ``path``,
    then delete it from the page; the page's events and prefix cookie."""
    tree = config_dict("http://127.0.0.1:1", uploads_bucket=stack.uploads)
    tree["s3"]["public_endpoint_url"] = s3_server.browser_endpoint
    tree["s3"]["addressing_style"] = "auto"
    bucket = browser_bucket(build_config(tree).s3, stack.uploads)
    settings = urlencode(
        {
            "endpoint": bucket.url,
            "bucket": stack.uploads,
            "host": bucket.host,
            "accessKey": ACCESS_KEY_ID,
            "version": str(version),
            "keyline": keyline,
        }
    )

    async def flow(context: Any) -> dict[str, Any]:
        page = await context.new_page()
        login = await page.goto(f"{stack.gateway}/login?user=alice")
        assert login is not None and login.status == 200
        await page.goto(f"{stack.gateway}/e2e/pages/legacy-drf-to-s3.html?{settings}")
        await page.set_input_files("#files", str(path))
        await page.wait_for_function(
            "window.events.some(e => e.type === 'all-complete')", timeout=UPLOAD_TIMEOUT_MS
        )
        if await page.evaluate("window.events.some(e => e.type === 'complete')"):
            await page.evaluate("window.uploader.deleteFile(0)")
            await page.wait_for_function(
                "window.events.some(e => e.type === 'deleted')", timeout=UPLOAD_TIMEOUT_MS
            )
        result: dict[str, Any] = await page.evaluate(
            "({events: window.events, prefix: window.prefixCookie})"
        )
        return result

    return await browser.run(flow, timeout=2 * UPLOAD_TIMEOUT_MS / 1000 + 15)


@pytest.mark.parametrize(("version", "keyline"), [(4, "drf"), (2, "drf"), (4, "uuid")])
async def test_page_written_for_drf_to_s3_uploads_and_deletes_through_the_gateway(
    browser: BrowserThread,
    legacy_stack: Stack,
    s3_server: S3Server,
    s3_client: Any,
    tmp_path: Path,
    version: int,
    keyline: str,
) -> None:
    """A page with drf-to-s3's endpoint paths and its own options (nothing from P/config), its
    key built from the prefix cookie (drf-to-s3's line less its + '/', or the line
    docs/migrating.md gives a page with the default uuid key): the gateway signs at
    /api/s3/sign (v2 and v4), completes at /api/s3/file_uploaded from Fine Uploader's form
    body, and deletes at /api/s3/delete/."""
    stack = legacy_stack
    path, _ = jpeg_file(tmp_path, "holiday.jpg", 150 * 1024)
    result = await upload_from_legacy_page(browser, stack, s3_server, path, version, keyline)
    events = result["events"]
    assert [e for e in events if e["type"] == "error"] == [], events
    [complete] = [e for e in events if e["type"] == "complete"]
    assert complete["response"]["success"] is True, complete
    assert complete["key"].startswith(result["prefix"]) and result["prefix"].endswith("/")
    completion, deletion = (entry["message"] for entry in stack.recorded.completions)
    assert completion["user"] == "alice" and completion["filename"] == "holiday.jpg"
    assert completion["params"] == {"album": "holiday"}
    assert complete["response"]["key"] == completion["object"]["key"]
    assert completion["object"]["size"] == 150 * 1024
    # The delete request (DELETE /api/s3/delete//<uuid>?key=&bucket=) reached the gateway.
    assert [e["status"] for e in events if e["type"] == "deleted"] == [204]
    assert deletion["event"] == "upload.deleted"
    assert await keys_in(s3_client, stack.storage) == []
    assert await keys_in(s3_client, stack.uploads) == []
    assert await signatures_issued(stack) == 1
    # Both messages came from the gateway, on the route's forward path.
    assert {entry["path"] for entry in stack.recorded.completions} == {"/internal/uploads/photos"}
