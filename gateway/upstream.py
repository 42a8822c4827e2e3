"""The one owner of the pooled connections to the upstream app.

Three lean keep-alive pools (gateway/pools.py: the fast one in gateway/_fast/forwarder.py
or the standard one on ``ClientSession``, config ``upstream.forwarder``), so that no kind of
traffic waits behind another: ``request`` goes through ``proxy_pool`` (``max_connections``), for
proxied requests, which anyone can send and
a client can hold while it takes its answer (a stall of ``limits.send_timeout`` at most);
``call`` goes through ``reserved_connections`` of its own (``auth_request`` lookups and
completion messages); ``ping`` (``/-/readyz``) through one connection of its own, so a
balancer's probe never reports an instance down because clients hold its proxy pool. A request
waits at most ``pool_timeout`` for a connection, then gets 503 with ``Retry-After``. Only
WebSocket upgrades use ``session``, an aiohttp ``ClientSession`` with a pool of its own. No
cookie jar (a shared jar would replay one user's upstream cookies for the next user), no
decompression (bodies pass through untouched), no redirects followed. Client errors are mapped
here, once, to the gateway's 502, 503 and 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping

import aiohttp
from aiohttp.streams import StreamReader
from multidict import CIMultiDict
from yarl import URL

from ._fast.forwarder import FastPool
from .config import UpstreamConfig
from .pools import Answer, Pool, PoolTimeout, StandardPool, UpstreamConnectError
from .problems import GatewayError, UpstreamBusy, UpstreamTimeout, UpstreamUnavailable
from .values import UpstreamAnswer as UpstreamAnswer

# Answers read into memory (auth_request, completion replies) are capped: the upstream is trusted
# but a runaway body must not grow the gateway without bound.
MAX_ANSWER_BYTES = 1024 * 1024


class Upstream:
    """The pools to ``upstream.url``; build with ``Upstream.open``."""

    def __init__(
        self,
        config: UpstreamConfig,
        session: aiohttp.ClientSession,
        proxy_pool: Pool,
        *,
        reserved: Pool,
        probe: Pool,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self.proxy_pool = proxy_pool
        self._reserved = reserved
        self._probe = probe
        self._observe = observe
        self.base = config.base

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        config: UpstreamConfig,
        *,
        trace_configs: list[aiohttp.TraceConfig] | None = None,
        observe: Callable[[float], None] | None = None,
    ) -> AsyncIterator[Upstream]:
        """Open the pools for the app's lifetime (used from ``cleanup_ctx``).

        ``observe``: told the seconds from sending each ``call`` to its answer's head (the
        proxy times its own requests).
        """
        connector = aiohttp.TCPConnector(
            limit=config.max_connections,
            limit_per_host=config.max_connections,
            ttl_dns_cache=300,
            enable_cleanup_closed=False,
        )
        session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(
                total=None,
                # The wait for one of the pool's connections (all may be open WebSockets), and
                # then for the connection itself.
                connect=config.pool_timeout + config.connect_timeout,
                sock_connect=config.connect_timeout,
                sock_read=config.read_timeout,
            ),
            trace_configs=trace_configs,
            # Content-Type too: a body sent without a type goes on without one (aiohttp would
            # label it application/octet-stream); callers with a type set it themselves.
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
        )
        kind = FastPool if config.forwarder == "fast" else StandardPool
        pools: list[Pool] = [
            kind(
                config.base,
                limit=limit,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
                pool_timeout=config.pool_timeout,
            )
            for limit in (config.max_connections, config.reserved_connections, 1)
        ]
        proxy_pool, reserved, probe = pools
        try:
            yield cls(config, session, proxy_pool, reserved=reserved, probe=probe, observe=observe)
        finally:
            for pool in pools:
                await pool.close()
            await session.close()

    def url(self, raw_path: str) -> URL:
        """The upstream URL for a raw (still percent-encoded) path and query, kept byte for byte."""
        return URL(self.base + raw_path, encoded=True)

    async def request(
        self,
        method: str,
        target: str,
        headers: Iterable[tuple[str, str]],
        body: StreamReader | bytes | None = None,
        *,
        chunked: bool = False,
    ) -> Answer:
        """Send a proxied request (``target``: raw path and query, kept byte for byte) through
        the proxy's pool and return its answer's head; 502/503/504 on failure. The caller
        reads the body and releases the answer."""
        started = time.perf_counter()
        try:
            answer = await self.proxy_pool.request(method, target, headers, body, chunked=chunked)
        except UPSTREAM_ERRORS as exc:
            raise upstream_problem(exc, time.perf_counter() - started) from exc
        if self._observe is not None:
            self._observe(time.perf_counter() - started)
        return answer

    async def call(
        self,
        method: str,
        raw_path: str,
        *,
        headers: Mapping[str, str] | CIMultiDict[str] | None = None,
        body: bytes | None = None,
        # The whole exchange's limit, on top of connect_timeout and read_timeout; callers with
        # their own limit (the completion's webhook.timeout) pass it here.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> UpstreamAnswer:
        """Send a small request through the reserved pool and read the whole answer (capped);
        502/503/504 on failure."""
        return await self._exchange(self._reserved, method, raw_path, headers, body, timeout)

    async def ping(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Raise UpstreamUnavailable unless the upstream accepts a connection and answers
        (through the probe's own connection: busy pools are not a dependency down)."""
        await self._exchange(self._probe, "HEAD", "/", None, None, timeout)

    async def _exchange(
        self,
        pool: Pool,
        method: str,
        raw_path: str,
        headers: Mapping[str, str] | CIMultiDict[str] | None,
        body: bytes | None,
        timeout: float | None,  # noqa: ASYNC109
    ) -> UpstreamAnswer:
        sent = list(headers.items()) if headers is not None else []
        if body is not None:
            sent.append(("Content-Length", str(len(body))))
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                answer = await pool.request(method, raw_path, sent, body)
                if self._observe is not None:
                    self._observe(time.perf_counter() - started)
                try:
                    data = await _read_capped(answer.content)
                finally:
                    answer.release()
        except UPSTREAM_ERRORS as exc:
            raise upstream_problem(exc, time.perf_counter() - started) from exc
        return UpstreamAnswer(answer.status, answer.headers, data)


async def _read_capped(content: StreamReader) -> bytes:
    """The whole body, or UpstreamUnavailable past MAX_ANSWER_BYTES.

    ``StreamReader.read(n)`` returns what has arrived so far, not n bytes, so a body sent in
    several pieces must be read until EOF.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise UpstreamUnavailable(
                "the upstream's answer is larger than the gateway accepts",
                reason="upstream-answer-too-large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


# What an upstream exchange can fail with; ``upstream_problem`` turns each into a 502, 503 or 504.
UPSTREAM_ERRORS = (TimeoutError, aiohttp.ClientError, ConnectionError, PoolTimeout)


def upstream_problem(exc: BaseException, waited: float) -> GatewayError:
    """The gateway's 502, 503 or 504 for one of ``UPSTREAM_ERRORS``, ``waited`` seconds in."""
    if isinstance(exc, PoolTimeout):
        return UpstreamBusy(
            f"every connection to the upstream stayed busy for {exc.waited:g}s; "
            "the request was not sent",
            retry_after=exc.retry_after,
        )
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return UpstreamTimeout(
            f"the upstream did not answer in time ({waited:.1f}s)", reason="upstream-timeout"
        )
    if isinstance(exc, aiohttp.ClientConnectorError | UpstreamConnectError):
        return UpstreamUnavailable("the upstream refused the connection", reason="upstream-refused")
    return UpstreamUnavailable(
        "the upstream closed the connection or sent a broken answer", reason="upstream-broken"
    )


@contextlib.contextmanager
def map_client_errors() -> Iterator[None]:
    """Translate aiohttp client failures into the gateway's 502 and 504 problems."""
    started = time.monotonic()
    try:
        yield
    except UPSTREAM_ERRORS as exc:
        raise upstream_problem(exc, time.monotonic() - started) from exc
