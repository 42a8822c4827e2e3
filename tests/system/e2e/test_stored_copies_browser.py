"""Stored copies opened in Chromium run no script, whatever type their uploader declared.

Issue 13: hostile files go through the gateway as an API client would send them (grant, presigned
PUT to moto, completion), under declared types a browser sniffs (``application/unknown``) or
renders (``text/html``), with first bytes Chromium takes for a page (a vertical tab before
``<html>``, a ``<b`` prefix, SVG). Every copy that reaches the storage bucket is then opened in
headless Chromium through a plain presigned GET to moto, which serves it with the stored
Content-Type and Content-Disposition, as a presigned link, a CDN or a permissive app route would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient as _TestClient
from playwright.async_api import Error as PlaywrightError

from gateway.buckets import BucketNames
from tests.support.browser import BrowserThread
from tests.support.gateway import build_config
from tests.support.processes import ServeGateway

pytestmark = pytest.mark.browser

TestClient = _TestClient[web.Request, web.Application]
ALICE = {"Authorization": "Bearer alice"}
MARK = "window.__ran = true; document.title = 'RAN';"
PREFIXES = {
    "vertical-tab-html": b"\x0b<html><body><script>" + MARK.encode() + b"</script>",
    "b-prefix": b"<bx><script>" + MARK.encode() + b"</script>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>' + MARK.encode() + b"</script></svg>",
    # Markup no sniffer sees (text first): only a type that is HTML itself would run it.
    "script-after-text": b"notes\n<script>" + MARK.encode() + b"</script>",
}
# Each route's allow-list, and the declared types x first bytes sent to it.
ROUTES: dict[str, dict[str, list[str]]] = {
    # The default allow-list: what a wildcard lets through must be safe to open.
    "wild": {
        "content_types": ["*/*"],
        "declared": ["application/unknown", "unknown/unknown", "text/plain", "application/x-foo",
                     "image/png"],
        "prefixes": ["vertical-tab-html", "b-prefix", "script-after-text"],
    },
    # An operator who listed the hostile types literally still gets copies that do not run.
    "literal": {
        "content_types": ["application/unknown", "text/html", "image/svg+xml", "text/plain",
                          "image/*"],
        "declared": ["application/unknown", "text/html", "image/svg+xml", "text/plain",
                     "image/png"],
        "prefixes": ["vertical-tab-html", "svg"],
    },
}  # fmt: skip


@dataclass(frozen=True)
class Case:
    route: str
    declared: str
    prefix: str


@dataclass
class Outcome:
    case: Case
    status: int  # the gateway's answer: 201/415 for the grant, else the completion's
    key: str | None = None  # in the storage bucket, when stored


async def upload(gateway: TestClient, http: aiohttp.ClientSession, case: Case) -> Outcome:
    """Grant, PUT and complete one file as an API client does; where it ended up."""
    body = PREFIXES[case.prefix]
    grant = await gateway.post(
        f"/api/{case.route}",
        json={"filename": "page.html", "content_type": case.declared, "size": len(body)},
        headers=ALICE,
    )
    if grant.status != 201:
        return Outcome(case, grant.status)
    granted = await grant.json()
    async with http.put(granted["url"], data=body, headers=granted["headers"]) as put:
        assert put.status == 200, await put.text()
    done = await gateway.post(
        f"/api/{case.route}/{granted['upload_id']}/complete", json={"parts": []}, headers=ALICE
    )
    answer = await done.json(content_type=None)
    return Outcome(case, done.status, answer.get("key") if done.status == 200 else None)


async def open_all(browser: BrowserThread, urls: list[str]) -> list[bool]:
    """Open each URL in turn in one tab of a fresh context; whether each one's script ran."""

    async def drive(context: Any) -> list[bool]:
        page = await context.new_page()
        ran: list[bool] = []
        for url in urls:
            # A download leaves the tab on the previous document: clear what it may have set.
            await page.evaluate("window.__ran = false; document.title = ''")
            try:
                await page.goto(url, wait_until="domcontentloaded")  # inline scripts have run
            except PlaywrightError as exc:
                # An attachment (or a type Chromium does not render) starts a download instead.
                assert "Download is starting" in str(exc), exc
            ran.append(await page.evaluate("window.__ran === true || document.title === 'RAN'"))
        return ran

    return await browser.run(drive, timeout=60)


async def test_no_stored_copy_runs_script_when_opened(
    aiohttp_client: Any,
    serve_gateway: ServeGateway,
    s3_tree: dict[str, Any],
    s3_client: Any,
    buckets: BucketNames,
    browser: BrowserThread,
) -> None:
    """Every declared type x first bytes combination is refused, or stored so that Chromium,
    opening the stored copy by a presigned GET, runs none of its script; the same files put
    straight into the bucket under their declared types do run, so the check can fail."""
    common = {"protocol": "api", "max_size": "1MiB", "forward": "/internal/uploads/x"}
    routes = [
        {**common, "name": name, "path": f"/api/{name}", "content_types": r["content_types"]}
        for name, r in ROUTES.items()
    ]
    config = build_config(s3_tree, routes=routes, identity={"auth_request": {"path": "/api/me"}})
    gateway: TestClient = await aiohttp_client(await serve_gateway(config))
    cases = [
        Case(name, declared, prefix)
        for name, r in ROUTES.items()
        for declared in r["declared"]
        for prefix in r["prefixes"]
    ]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
        outcomes = await asyncio.gather(*(upload(gateway, http, case) for case in cases))
    assert {o.status for o in outcomes} <= {200, 415}, [(o.case, o.status) for o in outcomes]
    stored = [o for o in outcomes if o.key is not None]
    # Controls: the attack without the gateway, straight into the bucket as the uploader typed it.
    controls = {
        "control/unknown-vertical-tab": ("application/unknown", PREFIXES["vertical-tab-html"]),
        "control/unknown-b-prefix": ("unknown/unknown", PREFIXES["b-prefix"]),
        "control/svg": ("image/svg+xml", PREFIXES["svg"]),
    }
    for key, (declared, body) in controls.items():
        await s3_client.put_object(Bucket=buckets.storage, Key=key, Body=body, ContentType=declared)
    keys = [o.key for o in stored if o.key is not None] + list(controls)
    urls = [
        await s3_client.generate_presigned_url(
            "get_object", Params={"Bucket": buckets.storage, "Key": key}, ExpiresIn=300
        )
        for key in keys
    ]

    ran = await open_all(browser, urls)

    assert ran[len(stored) :] == [True] * len(controls), "Chromium ran none of the controls"
    ran_stored = [(o.case, o.key) for o, did in zip(stored, ran, strict=False) if did]
    assert ran_stored == []
    # Not vacuous: plain files through the wildcard, hostile ones through the literal route.
    assert {o.case.route for o in stored} == {"wild", "literal"}
    assert len(stored) >= 10, [(o.case, o.status) for o in outcomes]
