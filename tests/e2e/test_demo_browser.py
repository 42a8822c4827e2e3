"""The demo in headless Chromium, as a new user meets it: sign in, upload with the page's own
uploaders (Fine Uploader, and Uppy), see the files listed, download one, and the screenshot the
README shows (docs/demo.png) is taken of that page.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import BrowserThread
from tests.support.demo import DemoProcess, start_demo

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
# The README's picture; rewritten only when asked (``DEMO_SCREENSHOT=1``), so a test run leaves
# the tree as it was.
README_SCREENSHOT = ROOT / "docs" / "demo.png"
VIEWPORT = {"width": 1000, "height": 700}
# Bounded waits: a broken flow fails within these, it never hangs the suite.
UPLOAD_TIMEOUT_MS = 30_000


def png(width: int, height: int) -> bytes:
    """A real PNG (a colour gradient), so the gateway's sniffer and Fine Uploader's thumbnail
    agree it is an image."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x * 255 // width, y * 255 // height, 180)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    """The demo as `scripts/demo.sh` runs it, started from the checkout (its node_modules)."""
    started = start_demo(tmp_path)
    try:
        yield started
    finally:
        assert started.stop() == 0


async def test_demo_uploads_lists_downloads_and_is_screenshotted(
    browser: BrowserThread, demo: DemoProcess, tmp_path: Path
) -> None:
    """Fine Uploader and Uppy upload through the gateway; the app lists both; a link downloads."""
    photo = tmp_path / "sunset.png"
    photo.write_bytes(png(96, 64))
    big = tmp_path / "big.png"
    big.write_bytes(png(96, 64) + os.urandom(7 * 1024 * 1024))
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"upload-gateway demo\n" * 50)
    screenshot = README_SCREENSHOT if os.environ.get("DEMO_SCREENSHOT") else tmp_path / "demo.png"
    url = f"http://localhost:{demo.port}/"

    async def flow(context: Any) -> dict[str, Any]:
        page = await context.new_page()
        await page.set_viewport_size(VIEWPORT)
        await page.goto(url)
        await page.fill("#name", "alice")
        await page.click("form[action='/login'] button")
        await page.wait_for_url("**/files")
        # Fine Uploader (from node_modules) was built from the gateway's GET P/config.
        await page.wait_for_selector("[data-protocol=fineuploader].ready")
        await page.set_input_files(".fine-uploader input[type=file]", str(photo))
        await page.wait_for_selector(
            "#files a.download:has-text('sunset.png')", timeout=UPLOAD_TIMEOUT_MS
        )
        await page.wait_for_selector(".qq-upload-success", timeout=UPLOAD_TIMEOUT_MS)
        uppy = await page.query_selector("[data-protocol=uppy]")
        if uppy is not None:
            await page.wait_for_selector("[data-protocol=uppy].ready")
            await page.set_input_files("[data-protocol=uppy] input[type=file]", str(notes))
            await page.wait_for_selector(
                "#files a.download:has-text('notes.txt')", timeout=UPLOAD_TIMEOUT_MS
            )
        rows = await page.eval_on_selector_all("#files tr", "rows => rows.map(r => r.innerText)")
        href = await page.get_attribute("#files a.download:has-text('sunset.png')", "href")
        await page.screenshot(path=str(screenshot))
        # The link goes through the app (owner check) to a presigned GET on the demo's S3.
        download = await context.request.get(url.rstrip("/") + href)
        # A phone photo's size: Fine Uploader switches to a chunked v4 multipart upload.
        parts: list[str] = []
        page.on("request", lambda r: parts.append(r.url) if "partNumber=" in r.url else None)
        await page.set_input_files(".fine-uploader input[type=file]", str(big))
        await page.wait_for_selector(
            "#files a.download:has-text('big.png')", timeout=UPLOAD_TIMEOUT_MS
        )
        return {
            "rows": rows,
            "uppy": uppy is not None,
            "status": download.status,
            "body": await download.body(),
            "final_url": download.url,
            "disposition": download.headers.get("content-disposition", ""),
            "parts": parts,
        }

    result = await browser.run(flow, timeout=90)
    assert any("sunset.png" in row and "Fine Uploader" in row for row in result["rows"])
    if result["uppy"]:
        assert any("notes.txt" in row and "Uppy" in row for row in result["rows"])
    assert result["status"] == 200
    assert result["body"] == photo.read_bytes()
    assert "/demo-storage/" in result["final_url"] and "X-Amz-Signature=" in result["final_url"]
    assert result["disposition"].startswith("attachment;")
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    # Two parts, PUT straight to the bucket's host name (the canonical request never names it).
    assert len(result["parts"]) == 2
    assert all(u.startswith("http://demo-uploads.localhost:") for u in result["parts"])
