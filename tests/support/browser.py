"""Headless Debian Chromium through Playwright, one browser per test module.

Playwright's async objects belong to the event loop that made them, and every test has a loop of
its own; so the browser lives in a thread with its own loop, and tests hand it coroutines with
``await browser.run(fn)``. Each ``fn`` gets a fresh context (no cookies, no storage) and closes it.
Never ``playwright install``: this drives the system's /usr/bin/chromium.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Every wait inside a page is bounded: a broken flow fails the test, it never hangs it.
DEFAULT_TIMEOUT_MS = 20_000
STARTUP_TIMEOUT = 60.0

T = TypeVar("T")


class BrowserThread:
    """A Chromium launched by Playwright on a private event loop in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chromium", daemon=True)
        self._playwright: Any = None
        self._browser: Any = None

    def _submit(self, coro: Awaitable[T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._loop)  # type: ignore[arg-type]

    def start(self) -> None:
        self._thread.start()
        self._submit(self._launch()).result(STARTUP_TIMEOUT)

    async def _launch(self) -> None:
        from playwright.async_api import async_playwright

        self._playwright = await async_playwright().start()
        self._browser = await self._playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )

    async def _in_context(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        context = await self._browser.new_context()
        context.set_default_timeout(DEFAULT_TIMEOUT_MS)
        try:
            return await fn(context)
        finally:
            await context.close()

    async def run(self, fn: Callable[[Any], Awaitable[T]], timeout: float = 60.0) -> T:
        """Run ``fn(context)`` in the browser's loop with a fresh BrowserContext; bounded."""
        future = self._submit(self._in_context(fn))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        finally:
            future.cancel()

    async def _shutdown(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()

    def stop(self) -> None:
        if self._thread.is_alive():
            try:
                self._submit(self._shutdown()).result(STARTUP_TIMEOUT)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(STARTUP_TIMEOUT)
        self._loop.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[BrowserThread]:
    """One headless Chromium for the whole module; skipped nowhere: a missing browser fails."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh)")
    thread = BrowserThread()
    try:
        thread.start()
        yield thread
    finally:
        thread.stop()
