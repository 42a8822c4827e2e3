"""Log lines (gateway/logs.py): batched JSON access lines, whole and in order, with no secrets."""

from __future__ import annotations

import asyncio
import io
import json
import select
from collections.abc import Callable
from typing import Any

from gateway.logs import AccessLogBuffer

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


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


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
