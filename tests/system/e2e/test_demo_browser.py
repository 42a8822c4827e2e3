"""The demo in headless Chromium, as a new user meets it: sign in, upload with the page's own
uploaders (Fine Uploader, Uppy) and with the command the page prints, see the files listed,
download one, delete from the list; refusals read as sentences with no Retry that cannot work;
the page fits a desktop and a phone and speaks one unit system; the console stays clean. The
screenshot the README shows (docs/demo.png) is taken of that page.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import struct
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from gateway.demo.runner import BUCKETS, s3_config
from gateway.storage import open_s3_client
from tests.support.browser import BrowserThread
from tests.support.demo import DemoProcess, demo_environment, start_demo

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]
# The README's picture; rewritten only when asked (``DEMO_SCREENSHOT=1``), so a test run leaves
# the tree as it was.
README_SCREENSHOT = ROOT / "docs" / "demo.png"
VIEWPORT = {"width": 1000, "height": 700}
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
MiB = 1024 * 1024
# Bounded waits: a broken flow fails within these, it never hangs the suite.
UPLOAD_TIMEOUT_MS = 30_000
TOLD_TIMEOUT = 10.0
# Size units of other systems: kB/MB (SI, Fine Uploader's own) and KB/MB (Uppy's own).
FOREIGN_UNITS = re.compile(r"\d\s?(?:kB|KB|MB|GB|TB)\b")
FINE = ".fine-uploader input[type=file]"
UPPY = "[data-protocol=uppy] input[type=file]"


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


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """The demo as `scripts/demo.sh` runs it, started from a folder of its own (the checkout's
    node_modules serve it); each test signs in as a user of its own."""
    started = start_demo(tmp_path_factory.mktemp("demo"))
    try:
        yield started
    finally:
        assert started.stop() == 0


def user() -> str:
    return f"alice-{uuid.uuid4().hex[:6]}"


class Noise:
    """What a page reports that a user should never cause: console errors and warnings, failed
    requests, answers of 400 and above."""

    def __init__(self, page: Any) -> None:
        self.console: list[str] = []
        self.failed: list[str] = []
        self.answers: list[str] = []
        page.on(
            "console",
            lambda m: (
                self.console.append(f"{m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}"))
        page.on(
            "response",
            lambda r: self.answers.append(f"{r.status} {r.url}") if r.status >= 400 else None,
        )

    def all(self) -> list[str]:
        return self.console + self.failed + self.answers


async def sign_in(context: Any, demo: DemoProcess, name: str, viewport: dict[str, int]) -> Any:
    page = await context.new_page()
    await page.set_viewport_size(viewport)
    await page.goto(f"http://localhost:{demo.port}/")
    await page.fill("#name", name)
    await page.click("form[action='/login'] button")
    await page.wait_for_url("**/files")
    await page.wait_for_selector("[data-protocol=fineuploader].ready")
    await page.wait_for_selector("[data-protocol=uppy].ready")
    return page


async def listed(page: Any, name: str) -> None:
    await page.wait_for_selector(f"#files a.download:text-is('{name}')", timeout=UPLOAD_TIMEOUT_MS)


def told(demo: DemoProcess, line: str) -> bool:
    """Whether the demo's terminal shows ``line`` (the app logs what it was told) in time."""
    deadline = time.monotonic() + TOLD_TIMEOUT
    while time.monotonic() < deadline:
        if any(printed.endswith(line) for printed in demo.lines):
            return True
        time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- the first upload


async def test_demo_uploads_lists_downloads_and_is_screenshotted(
    browser: BrowserThread, demo: DemoProcess, tmp_path: Path
) -> None:
    """Fine Uploader (simple and chunked) and Uppy upload through the gateway; the app lists
    both; a link downloads; and the console stays clean throughout: no favicon 404, no
    'Refused to get unsafe header ETag' (the demo's S3 exposes ETag as S3's CORS rule does)."""
    photo = tmp_path / "sunset.png"
    photo.write_bytes(png(96, 64))
    big = tmp_path / "big.png"
    big.write_bytes(png(96, 64) + os.urandom(7 * MiB))
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"upload-gateway demo\n" * 50)
    screenshot = README_SCREENSHOT if os.environ.get("DEMO_SCREENSHOT") else tmp_path / "demo.png"
    name = "alice" if os.environ.get("DEMO_SCREENSHOT") else user()

    async def flow(context: Any) -> dict[str, Any]:
        page = await context.new_page()
        noise = Noise(page)
        await page.set_viewport_size(VIEWPORT)
        await page.goto(f"http://localhost:{demo.port}/")
        await page.fill("#name", name)
        await page.click("form[action='/login'] button")
        await page.wait_for_url("**/files")
        # Fine Uploader (from node_modules) was built from the gateway's GET P/config.
        await page.wait_for_selector("[data-protocol=fineuploader].ready")
        await page.set_input_files(FINE, str(photo))
        await listed(page, "sunset.png")
        await page.wait_for_selector(".qq-upload-success", timeout=UPLOAD_TIMEOUT_MS)
        await page.wait_for_selector("[data-protocol=uppy].ready")
        await page.set_input_files(UPPY, str(notes))
        await listed(page, "notes.txt")
        rows = await page.eval_on_selector_all("#files tr", "rows => rows.map(r => r.innerText)")
        href = await page.get_attribute("#files a.download:text-is('sunset.png')", "href")
        await page.screenshot(path=str(screenshot), full_page=True)
        # The link goes through the app (owner check) to a presigned GET on the demo's S3.
        download = await context.request.get(f"http://localhost:{demo.port}{href}")
        # A phone photo's size: Fine Uploader switches to a chunked v4 multipart upload.
        parts: list[str] = []
        page.on("request", lambda r: parts.append(r.url) if "partNumber=" in r.url else None)
        await page.set_input_files(FINE, str(big))
        await listed(page, "big.png")
        return {
            "rows": rows,
            "status": download.status,
            "body": await download.body(),
            "final_url": download.url,
            "disposition": download.headers.get("content-disposition", ""),
            "parts": parts,
            "noise": noise.all(),
        }

    result = await browser.run(flow, timeout=90)
    assert any("sunset.png" in row and "Fine Uploader" in row for row in result["rows"])
    assert any("notes.txt" in row and "Uppy" in row for row in result["rows"])
    assert result["status"] == 200
    assert result["body"] == photo.read_bytes()
    assert "/demo-storage/" in result["final_url"] and "X-Amz-Signature=" in result["final_url"]
    assert result["disposition"].startswith("attachment;")
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    # Two parts, PUT straight to the bucket's host name (the canonical request never names it).
    assert len(result["parts"]) == 2
    assert all(u.startswith("http://demo-uploads.localhost:") for u in result["parts"])
    assert result["noise"] == []


# --------------------------------------------------------------------------- refusals


async def test_refused_files_say_why_and_offer_no_retry_that_cannot_work(
    browser: BrowserThread, demo: DemoProcess, tmp_path: Path
) -> None:
    """A refused file shows the gateway's sentence, not a code: in Fine Uploader's line with no
    Retry (refused at signing, where the page reads preventRetry itself, and at completion,
    where Fine Uploader honours it), and in Uppy's list (the status line's text)."""
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"x" * 2000)
    fake = tmp_path / "fake.png"  # a PNG by its name, HTML by its bytes
    fake.write_bytes(b"<!DOCTYPE html><html><script>alert(1)</script></html>\n" * 10)
    svg = tmp_path / "logo.svg"
    svg.write_bytes(b'<svg xmlns="http://www.w3.org/2000/svg"></svg>')

    async def flow(context: Any) -> dict[str, Any]:
        page = await sign_in(context, demo, user(), DESKTOP)
        await page.set_input_files(FINE, [str(pdf), str(fake)])
        await page.set_input_files(UPPY, str(svg))
        items = page.locator(".fu-item.qq-upload-fail")
        await items.nth(1).wait_for(timeout=UPLOAD_TIMEOUT_MS)
        await page.wait_for_selector(".progress li.failed", timeout=UPLOAD_TIMEOUT_MS)
        lines = []
        for index in range(await items.count()):
            item = items.nth(index)
            lines.append(
                {
                    "name": await item.locator(".qq-upload-file-selector").inner_text(),
                    "status": await item.locator(".qq-upload-status-text-selector").inner_text(),
                    "retry": await item.locator(".qq-upload-retry-selector").is_visible(),
                    "remove": await item.locator(".qq-upload-cancel-selector").is_visible(),
                }
            )
        return {"fine": lines, "uppy": await page.inner_text(".progress li.failed")}

    result = await browser.run(flow, timeout=90)
    by_name = {line["name"]: line for line in result["fine"]}
    assert by_name["report.pdf"]["status"] == "'application/pdf' is not allowed here."
    assert "text/html" in by_name["fake.png"]["status"]
    assert [line["retry"] for line in result["fine"]] == [False, False]
    assert [line["remove"] for line in result["fine"]] == [True, True]
    assert result["uppy"] == "logo.svg (46 bytes): 'image/svg+xml' is not allowed here."


# --------------------------------------------------------------------------- layout


# What a user could not see or reach: the page or a card wider than the screen, an element
# sticking out of its card, or one cut off by an ancestor that hides its overflow (a user cannot
# scroll those, though a script, Playwright's clicks included, can).
LAYOUT = """() => {
  const root = document.documentElement;
  const name = el => el.tagName + "." + el.className + " " + (el.innerText || "").slice(0, 30);
  const outside = (r, box, x, y) => r.width > 0 && (
    (x && (r.left < box.left - 0.5 || r.right > box.right + 0.5)) ||
    (y && (r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)));
  const clipped = (el, card) => {
    const r = el.getBoundingClientRect();
    for (let a = el.parentElement; a && a !== card.parentElement; a = a.parentElement) {
      const style = getComputedStyle(a);
      const x = ["hidden", "clip"].includes(style.overflowX);
      const y = ["hidden", "clip"].includes(style.overflowY);
      if ((x || y) && outside(r, a.getBoundingClientRect(), x, y)) { return true; }
    }
    return false;
  };
  const cards = [...document.querySelectorAll(".card")];
  const parts = "button, li, tr, a, .fu-status, .fu-bar, .message";
  return {
    page: [root.scrollWidth, root.clientWidth],
    cards: cards.filter(c => c.scrollWidth > c.clientWidth).map(c => c.className),
    escaping: cards.flatMap(card => [...card.querySelectorAll("*")]
      .filter(el => outside(el.getBoundingClientRect(), card.getBoundingClientRect(), true, false))
      .map(name)),
    clipped: cards.flatMap(card => [...card.querySelectorAll(parts)]
      .filter(el => clipped(el, card)).map(name)),
  };
}"""


async def test_many_files_fit_at_desktop_and_phone_widths(
    browser: BrowserThread, demo: DemoProcess, tmp_path: Path
) -> None:
    """Seven Fine Uploader files (one refused, its sentence long), three Uppy files and a long
    name: at 1280 and 390 px nothing is wider than the page or its card, nothing is cut off, and
    every Delete button (Fine Uploader's and the list's) can be clicked. The screenshots are in
    the test's tmp folder, to look at."""
    photos = []
    for index in range(6):
        path = tmp_path / f"holiday-{index}.png"
        path.write_bytes(png(64 + index, 48))
        photos.append(str(path))
    refused = tmp_path / "minutes-of-the-meeting-about-the-quarterly-report.pdf"
    refused.write_bytes(b"%PDF-1.4\n" + b"x" * 3000)
    long_name = tmp_path / ("a-rather-long-file-name-" * 4 + "end.txt")
    long_name.write_bytes(b"notes\n" * 200)
    files = [photos[0], photos[1], str(long_name)]

    async def flow(context: Any) -> dict[str, Any]:
        page = await sign_in(context, demo, user(), DESKTOP)
        await page.set_input_files(FINE, [*photos, str(refused)])
        await page.set_input_files(UPPY, files)
        await page.wait_for_function(
            "document.querySelectorAll('#files tr:not(.empty)').length >= 9",
            timeout=UPLOAD_TIMEOUT_MS,
        )
        await page.wait_for_selector(".fu-item.qq-upload-fail", timeout=UPLOAD_TIMEOUT_MS)
        seen = {}
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            await page.set_viewport_size(viewport)
            await page.screenshot(path=str(tmp_path / f"{label}.png"), full_page=True)
            layout = await page.evaluate(LAYOUT)
            buttons = page.locator(".qq-upload-delete-selector:visible, button.delete")
            clickable = 0
            for index in range(await buttons.count()):
                # Playwright's actionability checks (visible, stable, enabled, not covered),
                # without clicking.
                await buttons.nth(index).click(trial=True, timeout=5000)
                clickable += 1
            seen[label] = {**layout, "buttons": clickable}
        return seen

    seen = await browser.run(flow, timeout=120)
    for label, layout in seen.items():
        width, client = layout["page"]
        assert width <= client, (label, layout)
        assert layout["cards"] == [], (label, layout)
        assert layout["escaping"] == [], (label, layout)
        assert layout["clipped"] == [], (label, layout)
        assert layout["buttons"] == 6 + 9, (label, layout)  # 6 tiles, 9 rows
    assert (tmp_path / "desktop.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "phone.png").read_bytes().startswith(b"\x89PNG")


# --------------------------------------------------------------------------- units


async def test_sizes_are_in_one_unit_system_everywhere(
    browser: BrowserThread, demo: DemoProcess, tmp_path: Path
) -> None:
    """KiB and MiB (IEC, as the config) in the limits, Fine Uploader's lines and its size
    message, Uppy's lines and restriction message, and the file list; no kB, KB or MB."""
    photo = tmp_path / "small.png"
    photo.write_bytes(png(80, 60) + b"\x00" * 3000)
    too_big_photo = tmp_path / "huge.png"
    with too_big_photo.open("wb") as sparse:  # the browser reads the size, not the bytes
        sparse.truncate(21 * MiB)
    too_big_file = tmp_path / "huge.bin"
    with too_big_file.open("wb") as sparse:
        sparse.truncate(101 * MiB)

    async def flow(context: Any) -> dict[str, Any]:
        page = await sign_in(context, demo, user(), DESKTOP)
        await page.set_input_files(FINE, str(photo))
        await page.set_input_files(UPPY, str(photo))
        await page.wait_for_function(
            "document.querySelectorAll('#files tr:not(.empty)').length >= 2",
            timeout=UPLOAD_TIMEOUT_MS,
        )
        await page.set_input_files(FINE, str(too_big_photo))
        await page.set_input_files(UPPY, str(too_big_file))
        await page.wait_for_selector(".message:not([hidden])")
        await page.wait_for_selector(".progress li.failed")
        return {
            "text": await page.inner_text("body"),
            "fine_message": await page.inner_text(".message"),
            "fine_size": await page.inner_text(".fu-item .qq-upload-size-selector"),
            "uppy_message": await page.inner_text(".progress li.failed"),
            "size_cells": await page.eval_on_selector_all(
                "#files td.size", "cells => cells.map(c => c.innerText)"
            ),
        }

    result = await browser.run(flow, timeout=90)
    size = photo.stat().st_size
    shown = f"{size / 1024:.1f} KiB".replace(".0 KiB", " KiB")
    assert FOREIGN_UNITS.findall(result["text"]) == []
    assert "Accepts image/* up to 20 MiB a file." in result["text"]
    assert "Accepts any type up to 100 MiB a file." in result["text"]
    assert result["fine_size"] == shown
    assert result["size_cells"] == [shown, shown]
    assert result["fine_message"] == (
        "huge.png is larger than 20 MiB, the largest file this route accepts."
    )
    assert result["uppy_message"] == (
        "huge.bin (101 MiB): huge.bin is larger than 100 MiB, the largest file this route accepts."
    )


# --------------------------------------------------------------------------- delete


async def stored_keys(demo: DemoProcess, download_url: str) -> list[str]:
    """What the demo's storage bucket holds under the key a download link names."""
    key = unquote(urlsplit(download_url).path).split(f"/{BUCKETS.storage}/", 1)[1]
    port = int(demo.banner("S3").rsplit(":", 1)[1])
    async with open_s3_client(s3_config(port)) as s3:
        answer = await s3.list_objects_v2(Bucket=BUCKETS.storage, Prefix=key)
    return [item["Key"] for item in answer.get("Contents", [])]


async def test_delete_from_the_list_asks_first_and_tells_the_app(
    browser: BrowserThread, demo: DemoProcess, tmp_path: Path
) -> None:
    """Every route's files (Fine Uploader's, Uppy's, and those sent with the command the page
    prints) have a labelled Delete in the list: dismissing the question keeps the file and sends
    nothing; accepting it goes through the gateway's delete path, the app is told (it logs the
    deletion and unlists the file), the stored object is gone, and Fine Uploader's line says so.
    Fine Uploader's own Delete (a line of this page load) asks first too."""
    name = user()
    photo = tmp_path / "old.png"
    photo.write_bytes(png(70, 50))
    fresh = tmp_path / "fresh.png"
    fresh.write_bytes(png(50, 70))
    tile = tmp_path / "tile.png"
    tile.write_bytes(png(40, 40))
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"delete me\n" * 20)
    report = tmp_path / "from-the-terminal.txt"
    report.write_bytes(b"sent with upload-gateway upload\n" * 20)
    names = ["old.png", "notes.txt", "from-the-terminal.txt", "fresh.png"]

    async def upload(context: Any) -> dict[str, Any]:
        page = await sign_in(context, demo, name, DESKTOP)
        await page.set_input_files(FINE, str(photo))
        await page.set_input_files(UPPY, str(notes))
        await listed(page, "old.png")
        await listed(page, "notes.txt")
        href = await page.get_attribute("#files a.download:text-is('old.png')", "href")
        download = await context.request.get(f"http://localhost:{demo.port}{href}", max_redirects=0)
        return {
            "command": await page.inner_text(".api .command"),
            "stored_url": download.headers["location"],
        }

    async def delete(context: Any) -> dict[str, Any]:
        page = await sign_in(context, demo, name, DESKTOP)
        # Lines of this page load: one to update, one to delete from.
        await page.set_input_files(FINE, [str(fresh), str(tile)])
        await listed(page, "fresh.png")
        await listed(page, "tile.png")
        await listed(page, "from-the-terminal.txt")
        labels = await page.eval_on_selector_all(
            "#files button.delete", "buttons => buttons.map(b => b.innerText)"
        )
        questions: list[str] = []
        deletes: list[str] = []
        answers = iter([False, True, True, True, True, True])
        page.on("request", lambda r: deletes.append(r.url) if r.method == "DELETE" else None)

        async def answer(dialog: Any) -> None:
            questions.append(dialog.message)
            await (dialog.accept() if next(answers) else dialog.dismiss())

        page.on("dialog", lambda dialog: asyncio.ensure_future(answer(dialog)))
        await page.click("#files tr:has(a.download:text-is('old.png')) button.delete")
        kept = await page.locator("#files a.download").all_inner_texts()
        sent_when_dismissed = list(deletes)
        for file_name in names:
            link = page.locator(f"#files a.download:text-is('{file_name}')")
            await page.click(f"#files tr:has(a.download:text-is('{file_name}')) button.delete")
            await link.wait_for(state="detached", timeout=UPLOAD_TIMEOUT_MS)
        line = page.locator(".fu-item:has(.qq-upload-file-selector:text-is('tile.png'))")
        await line.locator(".qq-upload-delete-selector").click()
        await page.locator("#files a.download:text-is('tile.png')").wait_for(
            state="detached", timeout=UPLOAD_TIMEOUT_MS
        )
        return {
            "labels": labels,
            "questions": questions,
            "kept": kept,
            "sent_when_dismissed": sent_when_dismissed,
            "deletes": deletes,
            "status": await page.inner_text("#files-status"),
            "line": await page.inner_text(".qq-upload-success .qq-upload-status-text-selector"),
            "line_delete": await page.locator(
                ".qq-upload-success .qq-upload-delete-selector"
            ).is_visible(),
            "rows": await page.inner_text("#files"),
        }

    uploaded = await browser.run(upload, timeout=90)
    assert len(await stored_keys(demo, uploaded["stored_url"])) == 1
    # The command the page prints for this user uploads from a terminal, into their list.
    argv = [str(report) if a == "FILE" else a for a in shlex.split(uploaded["command"])]
    done = subprocess.run(
        argv,
        cwd=tmp_path,
        env=demo_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = await browser.run(delete, timeout=90)
    assert result["labels"] == ["Delete"] * 5
    assert sorted(result["kept"]) == sorted([*names, "tile.png"])
    assert result["sent_when_dismissed"] == []
    assert len(result["questions"]) == 6
    assert all("The stored file is removed, and the app is told" in q for q in result["questions"])
    assert "tile.png" in result["questions"][-1]
    assert len(result["deletes"]) == 5
    assert result["status"] == "Deleted fresh.png."
    assert result["line"] == "Deleted" and result["line_delete"] is False
    assert "No files yet" in result["rows"]
    for file_name in [*names, "tile.png"]:
        assert told(demo, f"{name} deleted {file_name}"), demo.stdout()
    assert await stored_keys(demo, uploaded["stored_url"]) == []
