"""Access lines of a gateway served on loopback (gateway/logs.py): whole JSON, in order, no secrets.

The log formatting alone: tests/unit/test_logs.py."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from gateway.config import Config
from gateway.logs import (
    ACCESS_LOGGER,
    access_buffer,
    configure,
)
from tests.support.gateway import gateway_app
from tests.support.processes import free_port, served
from tests.unit.test_logs import Recorder


@pytest.fixture
def log_stream() -> Iterator[Recorder]:
    """``configure()`` writing to a recorder; the logging tree is put back afterwards."""
    root = logging.getLogger()
    access = logging.getLogger(ACCESS_LOGGER)
    saved = (root.handlers[:], root.level, access.handlers[:], access.propagate)
    stream = Recorder()
    configure(stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level, access.handlers[:], access.propagate = saved
        root.setLevel(level)


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


def _access(stream: Recorder) -> list[dict[str, Any]]:
    """The gateway's access lines (the in-process test upstream logs to aiohttp.access too)."""
    return [
        line
        for line in stream.lines()
        if line["logger"] == ACCESS_LOGGER and line["event"] == "request"
    ]


async def test_access_lines_are_whole_json_in_order_without_secrets(
    log_stream: Recorder, make_config: Callable[..., Config]
) -> None:
    """Every request gets one JSON line with the documented fields, in request order; query
    strings (presigned URLs) and cookies never reach it."""
    ids = [f"req-{n}" for n in range(20)]
    async with (
        served(gateway_app(make_config())) as gw,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as client,
    ):
        for request_id in ids:
            async with client.get(
                gw + "/echo/page?X-Amz-Signature=querysecret",
                headers={"X-Request-ID": request_id, "Cookie": "gateway_session=cookiesecret"},
            ) as resp:
                assert resp.status == 200
        await _until(lambda: len(_access(log_stream)) >= len(ids))
    # The in-process test upstream's own access lines (aiohttp's format) are not the gateway's.
    text = "\n".join(
        json.dumps(line) for line in log_stream.lines() if line["logger"] != ACCESS_LOGGER
    ) + json.dumps(_access(log_stream))
    assert "querysecret" not in text
    assert "cookiesecret" not in text
    lines = _access(log_stream)
    assert [line["request_id"] for line in lines] == ids
    first = lines[0]
    assert set(first) == {
        "time",
        "level",
        "logger",
        "event",
        "request_id",
        "pid",
        "method",
        "path",
        "route",
        "status",
        "bytes",
        "duration_ms",
        "user_hash",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert (first["level"], first["event"], first["method"]) == ("info", "request", "GET")
    assert (first["path"], first["route"], first["status"]) == ("/echo/page", "proxy", 200)
    assert first["user_hash"] is None
    assert first["bytes"] > 0


async def test_access_lines_are_the_text_json_dumps_would_write(
    log_stream: Recorder, make_config: Callable[..., Config]
) -> None:
    """The access line is written out by hand for speed: it must be exactly json.dumps's text
    for the same fields, whatever the path holds (quotes, backslashes, controls, non-ASCII)."""
    async with (
        served(gateway_app(make_config())) as gw,
        aiohttp.ClientSession() as client,
    ):
        async with client.get(
            gw + "/echo/%22q%22%5Cb%01%E2%82%AC%ff", headers={"X-Request-ID": "req-exact"}
        ) as resp:
            assert resp.status == 200

        def raw() -> list[str]:
            return [
                text
                for text in log_stream.getvalue().splitlines()
                if '"req-exact"' in text and f'"logger": "{ACCESS_LOGGER}"' in text
            ]

        await _until(lambda: bool(raw()))
    (text,) = raw()
    line = json.loads(text)
    assert line["path"].startswith('/echo/"q"\\b\x01\u20ac')
    assert text == json.dumps(line)


async def test_access_lines_of_5xx_are_warnings(
    log_stream: Recorder, make_config: Callable[..., Config]
) -> None:
    """A 5xx (here: no upstream listening, 502) is logged at warning level, a 4xx at info."""
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        served(gateway_app(make_config(upstream={"url": dead}))) as gw,
        aiohttp.ClientSession() as client,
    ):
        async with client.get(gw + "/page", headers={"X-Request-ID": "dead-1"}) as resp:
            assert resp.status == 502
        async with client.get(gw + "/uploads/photos/config", headers={"X-Request-ID": "anon-1"}):
            pass
        await _until(lambda: len(_access(log_stream)) >= 2)
    levels = {line["request_id"]: line["level"] for line in _access(log_stream)}
    assert levels == {"dead-1": "warning", "anon-1": "info"}


async def test_app_cleanup_writes_lines_still_waiting(
    log_stream: Recorder, make_config: Callable[..., Config]
) -> None:
    """Lines still in the buffer at shutdown are written by the app's cleanup (a --workers
    child exits without atexit), not lost."""
    buffer = access_buffer(logging.getLogger(ACCESS_LOGGER))
    assert buffer is not None
    buffer.delay = 3600  # only the cleanup can write them now
    async with served(gateway_app(make_config())) as gw, aiohttp.ClientSession() as client:
        async with client.get(gw + "/echo/x", headers={"X-Request-ID": "last-1"}) as resp:
            assert resp.status == 200
        await _until(lambda: bool(buffer._lines))
        assert _access(log_stream) == []
    assert [line["request_id"] for line in _access(log_stream)] == ["last-1"]
