"""Log lines (gateway/logs.py): batched JSON access lines, whole and in order, with no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import select
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from gateway.config import Config
from gateway.logs import (
    ACCESS_LOGGER,
    AccessLogBuffer,
    RequestIds,
    access_buffer,
    configure,
    valid_request_id,
)
from tests.support.gateway import gateway_app
from tests.support.processes import free_port, served

PIPE_BUF = getattr(select, "PIPE_BUF", 4096)


class Recorder(io.StringIO):
    """A text stream that remembers each write separately (one write is one syscall)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


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


def test_buffer_writes_whole_lines_in_pipe_atomic_pieces() -> None:
    """A batch goes out as few writes of whole lines, each at most PIPE_BUF bytes (atomic on a
    pipe shared by workers), and nothing is lost or reordered."""
    stream = Recorder()
    buffer = AccessLogBuffer(stream, limit=64 * 1024)
    lines = [json.dumps({"n": n, "pad": "x" * (n % 300)}) for n in range(200)]
    for line in lines:
        buffer.append(line)  # no running loop: every append is written at once
    assert stream.getvalue().splitlines() == lines
    stream = Recorder()
    buffer = AccessLogBuffer(stream, limit=10**9)
    buffer._lines = list(lines)
    buffer._size = sum(len(line) + 1 for line in lines)
    buffer.flush()
    assert stream.getvalue().splitlines() == lines
    assert len(stream.writes) < len(lines) / 5
    for piece in stream.writes:
        assert piece.endswith("\n")
        assert len(piece.encode()) <= PIPE_BUF


async def test_buffer_writes_on_its_timer_or_when_full() -> None:
    """Inside a loop lines wait for the short timer, or go at once when the limit is passed."""
    stream = Recorder()
    buffer = AccessLogBuffer(stream, limit=1000, delay=0.05)
    buffer.append('{"a": 1}')
    assert stream.writes == []
    await _until(lambda: bool(stream.writes))
    assert stream.getvalue() == '{"a": 1}\n'
    big = json.dumps({"pad": "y" * 1200})
    buffer.append(big)
    assert stream.getvalue().endswith(big + "\n")


def test_buffer_timer_follows_the_running_loop() -> None:
    """A timer left on a loop that stopped (tests run many) does not strand later lines."""
    stream = Recorder()
    buffer = AccessLogBuffer(stream, delay=0.05)

    async def first() -> None:
        buffer.append('{"n": 1}')

    async def second() -> None:
        buffer.append('{"n": 2}')
        await _until(lambda: '{"n": 2}' in stream.getvalue())

    for coro in (first, second):
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(coro())
        finally:
            loop.close()
    assert stream.getvalue().splitlines() == ['{"n": 1}', '{"n": 2}']


def test_request_id_kept_when_sane_else_fresh() -> None:
    """A client's sane X-Request-ID is kept (it ties logs together); anything else is replaced
    by a fresh random one, so log lines cannot be forged or broken by it."""
    assert valid_request_id("abc-1.2:3_x") == "abc-1.2:3_x"
    fresh = {valid_request_id(bad) for bad in (None, "", "a b", "x" * 129, '"}{', "\u00e9")}
    assert len(fresh) == 6
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in fresh)


def test_fresh_request_ids_are_unique_valid_tokens_per_app() -> None:
    """Ids made for requests without one never repeat, within an app or across apps (workers),
    and are themselves sane tokens, so the upstream and the logs carry them unchanged."""
    first, second = RequestIds(), RequestIds()
    made = [first(None) for _ in range(1000)] + [second("bad id") for _ in range(1000)]
    assert len(set(made)) == 2000
    assert all(valid_request_id(value) == value for value in made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in made)
    assert first("kept-1") == "kept-1"
