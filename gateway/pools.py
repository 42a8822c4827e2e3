"""What the upstream's pools offer, and the standard pool on aiohttp's public ``ClientSession``.

Two implementations keep the same interface (``Pool``): the fast one (gateway/_fast/forwarder.py,
on aiohttp's private client protocol) and ``StandardPool`` here, on public API only. Config
``upstream.forwarder`` picks one; the standard one is the fallback for an aiohttp release whose
internals the fast one no longer fits (tests/unit/test_internals.py names the internal that moved).
Both: at most ``limit`` requests at once, the rest queued first come first served for at most
``pool_timeout`` (then ``PoolTimeout``, the 503), connect failures as ``UpstreamConnectError``
(the 502), ``TimeoutError`` kinds past ``connect_timeout`` or ``read_timeout`` (the 504), the
raw target sent byte for byte below the base URL's path, bodies streamed both ways.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

import aiohttp
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL


class UpstreamConnectError(ConnectionError):
    """No connection could be opened to the upstream (refused, unreachable, bad name)."""


class PoolTimeout(Exception):
    """Every connection stayed lent out for ``pool_timeout``: the request was never sent.

    ``retry_after``: the seconds a client is asked to wait before trying again (the pool wait
    rounded up), for the 503's ``Retry-After``."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"no upstream connection came free in {waited:g}s")
        self.waited = waited
        self.retry_after = max(1, math.ceil(waited))


class Answer(Protocol):
    """The upstream's answer: status line and headers parsed, the body still to read."""

    @property
    def status(self) -> int: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    @property
    def content(self) -> StreamReader: ...

    def release(self) -> None:
        """Give the connection back: pooled if the answer was read whole, closed otherwise."""


class Pool(Protocol):
    """Keep-alive connections to one upstream (``limit``, ``pool_timeout``, timeouts as above)."""

    @property
    def in_use(self) -> int:
        """Requests holding a connection (or waiting for one to open)."""

    @property
    def waiting(self) -> int:
        """Requests queued for a connection (all ``limit`` are lent out)."""

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: StreamReader | bytes | None = None,
        *,
        chunked: bool = False,
    ) -> Answer:
        """Send ``method target`` with ``headers`` (no Host: the upstream's is added) and
        ``body`` (bytes, or streamed, re-chunked when ``chunked``; the framing header, when not
        chunked, is the caller's); return once the answer's head is in."""

    async def close(self) -> None:
        """Close the pool; lent connections close when given back."""


def checked_base(base: str) -> URL:
    """``base`` as a URL; ValueError if it is not http(s) with a host."""
    url = URL(base)
    if url.scheme not in ("http", "https") or url.raw_host is None or url.port is None:
        raise ValueError(f"not an http(s) URL: {base}")
    return url


class _StandardAnswer:
    """A ``ClientResponse`` that gives its pool slot back with its connection."""

    __slots__ = ("_pool", "_released", "_response")

    def __init__(self, pool: StandardPool, response: aiohttp.ClientResponse) -> None:
        self._pool = pool
        self._response = response
        self._released = False

    @property
    def status(self) -> int:
        return self._response.status

    @property
    def reason(self) -> str | None:
        return self._response.reason

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self._response.headers

    @property
    def content(self) -> StreamReader:
        return self._response.content

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        # aiohttp pools the connection only if the answer was read whole, as the fast one does.
        self._response.release()
        self._pool.give_back()


class _HeadWatch:
    """``read_timeout`` for the final answer's head, counted from the end of the request.

    aiohttp's own read timeout is stopped at the end of each answer it parses, 1xx ones too,
    and its client does not start it again for the final answer unless it sent Expect: an
    upstream that says 103 (or an unasked 100) and then nothing would hold the request and
    its connection for ever. This bounds that wait (with ``connect_timeout`` more when the
    request goes out with the connection, whose opening it cannot see); without a 1xx,
    aiohttp's own timeout comes first.
    """

    __slots__ = ("_deadline", "_delay", "waiting")

    def __init__(self, deadline: asyncio.Timeout, delay: float) -> None:
        self._deadline = deadline
        self._delay = delay
        self.waiting = True

    def start(self, extra: float = 0.0) -> None:
        """The request is out (or will be within ``extra`` seconds)."""
        if self.waiting:
            self._deadline.reschedule(asyncio.get_running_loop().time() + self._delay + extra)


async def _streamed(body: StreamReader, watch: _HeadWatch) -> AsyncIterator[bytes]:
    """The client's body as it comes; its end starts the wait for the answer."""
    while chunk := await body.readany():
        yield chunk
    watch.start()


class StandardPool:
    """``Pool`` on a ``ClientSession`` of its own: public aiohttp API only.

    The session's connector is unlimited; the pool's own FIFO line bounds it, so that waiting
    for a connection (503 after ``pool_timeout``) and opening one (504 after
    ``connect_timeout``) stay apart, as they are in the fast pool.
    """

    def __init__(
        self,
        base: str,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        pool_timeout: float | None = None,
        keepalive: float = 15.0,
    ) -> None:
        checked_base(base)
        # Targets are appended to the base as they came (``Upstream.url`` does the same).
        self._base = base.rstrip("/")
        self._limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._pool_timeout = pool_timeout
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            # aiohttp starts it once the request is sent, as the fast pool does.
            sock_read=read_timeout,
        )
        self._session: aiohttp.ClientSession | None = None
        self._in_use = 0
        self._waiting = 0
        self._closed = False

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def waiting(self) -> int:
        return self._waiting

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0, keepalive_timeout=self._keepalive, enable_cleanup_closed=False
            ),
            # No jar (one user's upstream cookies must not go with the next user's request),
            # no decompression (bodies pass untouched), no headers of aiohttp's own.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=self._timeout,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )
        return self._session

    async def _take(self) -> None:
        if self._closed:
            raise UpstreamConnectError("the upstream pool is closed")
        if self._slots.locked():
            # Only a request that has to queue pays for a timer.
            self._waiting += 1
            try:
                async with asyncio.timeout(self._pool_timeout):
                    await self._slots.acquire()
            except TimeoutError:
                raise PoolTimeout(self._pool_timeout or 0.0) from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()
        self._in_use += 1

    def give_back(self) -> None:
        """A lent slot is free again."""
        self._in_use -= 1
        self._slots.release()

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: StreamReader | bytes | None = None,
        *,
        chunked: bool = False,
    ) -> Answer:
        sent = CIMultiDict(headers)
        # The client's 100-continue was answered by the gateway, which holds the body: aiohttp
        # would wait for the upstream's 100 before sending it, and an upstream that just reads
        # the body (RFC 9110 10.1.1 allows it) never sends one, so the request would hang with
        # no read timeout running. Without the expectation the body goes at once, as the fast
        # pool sends it (that one forwards the header; its 1xx answers are skipped).
        sent.popall("Expect", None)
        await self._take()
        try:
            session = self._session or self._open()
            async with asyncio.timeout(None) as deadline:
                watch = _HeadWatch(deadline, self._read_timeout)
                data: StreamReader | AsyncIterator[bytes] | bytes | None = body
                if isinstance(body, StreamReader):
                    data = _streamed(body, watch)
                else:
                    # Sent as soon as the connection is open: within connect_timeout.
                    watch.start(self._connect_timeout)
                try:
                    response = await session.request(
                        method,
                        URL(self._base + target, encoded=True),
                        headers=sent,
                        data=data,
                        chunked=chunked or None,
                        allow_redirects=False,
                    )
                finally:
                    watch.waiting = False
        except aiohttp.ClientConnectorError as exc:
            self.give_back()
            raise UpstreamConnectError(f"cannot connect to the upstream: {exc}") from exc
        except BaseException:
            self.give_back()
            raise
        return _StandardAnswer(self, response)

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
