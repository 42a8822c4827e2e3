"""The one owner of the pooled connection to the upstream app.

Shared by the proxy, ``auth_request`` and the completion forward. No cookie jar (a shared jar
would replay one user's upstream cookies for the next user), no decompression (bodies pass
through untouched), no redirects followed. Client errors are mapped here, once, to the gateway's
502 and 504.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .config import UpstreamConfig
from .problems import UpstreamTimeout, UpstreamUnavailable

# Answers read into memory (auth_request, completion replies) are capped: the upstream is trusted
# but a runaway body must not grow the gateway without bound.
MAX_ANSWER_BYTES = 1024 * 1024


@dataclass(frozen=True)
class UpstreamAnswer:
    """A small upstream answer read whole: status, headers and body bytes."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes


class Upstream:
    """A pooled ``ClientSession`` to ``upstream.url``; build with ``Upstream.open``."""

    def __init__(self, config: UpstreamConfig, session: aiohttp.ClientSession) -> None:
        self.config = config
        self.session = session
        self.base = config.base
        self.read_timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
        )

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, config: UpstreamConfig, *, trace_configs: list[aiohttp.TraceConfig] | None = None
    ) -> AsyncIterator[Upstream]:
        """Open the pool for the app's lifetime (used from ``cleanup_ctx``)."""
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
                total=None, sock_connect=config.connect_timeout, sock_read=config.read_timeout
            ),
            trace_configs=trace_configs,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )
        try:
            yield cls(config, session)
        finally:
            await session.close()

    def url(self, raw_path: str) -> URL:
        """The upstream URL for a raw (still percent-encoded) path and query, kept byte for byte."""
        return URL(self.base + raw_path, encoded=True)

    async def call(
        self,
        method: str,
        raw_path: str,
        *,
        headers: Mapping[str, str] | CIMultiDict[str] | None = None,
        body: bytes | None = None,
        # Passed to aiohttp as its connect and read limits, which asyncio.timeout cannot express.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> UpstreamAnswer:
        """Send a small request and read the whole answer (capped); 502/504 on failure."""
        client_timeout = self.read_timeout
        if timeout is not None:
            client_timeout = aiohttp.ClientTimeout(
                total=timeout, sock_connect=self.config.connect_timeout, sock_read=timeout
            )
        with map_client_errors():
            async with self.session.request(
                method,
                self.url(raw_path),
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=client_timeout,
            ) as resp:
                return UpstreamAnswer(resp.status, resp.headers, await _read_capped(resp))

    async def ping(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Raise UpstreamUnavailable unless the upstream accepts a connection and answers."""
        await self.call("HEAD", "/", timeout=timeout)


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, or UpstreamUnavailable past MAX_ANSWER_BYTES.

    ``StreamReader.read(n)`` returns what has arrived so far, not n bytes, so a body sent in
    several pieces must be read until EOF.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise UpstreamUnavailable(
                "the upstream's answer is larger than the gateway accepts",
                reason="upstream-answer-too-large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


@contextlib.contextmanager
def map_client_errors() -> Iterator[None]:
    """Translate aiohttp client failures into the gateway's 502 and 504 problems."""
    started = time.monotonic()
    try:
        yield
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        waited = time.monotonic() - started
        raise UpstreamTimeout(
            f"the upstream did not answer in time ({waited:.1f}s)", reason="upstream-timeout"
        ) from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable(
            "the upstream refused the connection", reason="upstream-refused"
        ) from exc
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise UpstreamUnavailable(
            "the upstream closed the connection or sent a broken answer",
            reason="upstream-broken",
        ) from exc
