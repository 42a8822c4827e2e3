"""The reason catalogue (gateway/reasons.py) against the problems a running gateway answers.

The code read, not run, against the catalogue: tests/unit/test_reasons.py."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.reasons import REASONS


@pytest.mark.parametrize(
    ("method", "path", "reason"),
    [
        ("GET", "/-/no-such-endpoint", "not-found"),
        ("GET", "/uploads/photos/no-such-endpoint", "not-found"),
        ("POST", "/uploads/photos/signature", "no-identity"),
        ("GET", "/internal/uploads/photos", "not-found"),
        ("GET", "/some%00path", "nul-in-path"),
        ("GET", "/some/%c0%ae%c0%ae/path", "overlong-utf8"),
    ],
)
async def test_problems_of_a_running_gateway_carry_the_catalogued_title(
    gateway_server: TestServer, method: str, path: str, reason: str
) -> None:
    """Problems answered over HTTP carry the catalogue's status and title for their reason."""
    async with aiohttp.ClientSession() as client:
        url = URL(str(gateway_server.make_url("/")).rstrip("/") + path, encoded=True)
        answer = await client.request(method, url)
        body = await answer.json(content_type=None)
    entry = REASONS[reason]
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert (answer.status, body["reason"], body["title"]) == (entry.status, reason, entry.title)
    assert body["type"] == f"urn:upload-gateway:problem:{reason}"
