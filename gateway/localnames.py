"""Name resolution for the ``upload`` client: every name under ``localhost`` is loopback.

RFC 6761 section 6.3: resolvers should answer loopback for ``localhost`` and the names under
it, and never ask DNS about them. Browsers do; glibc with a plain ``files dns`` nsswitch does
not, so ``http://<bucket>.localhost:<port>`` (the demo's S3, which presigned URLs name) fails to
resolve for a program. Other names go to aiohttp's default resolver.
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

_LOOPBACK = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))


def is_localhost_name(host: str) -> bool:
    """``localhost``, or a name under it, in any case, with or without the root dot."""
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


class LocalhostResolver(AbstractResolver):
    """Loopback for localhost names (IPv4 first), the default resolver for the rest."""

    def __init__(self) -> None:
        self._default = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not is_localhost_name(host):
            return await self._default.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=kind,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for kind, address in _LOOPBACK
            if family in (socket.AF_UNSPEC, kind)
        ]

    async def close(self) -> None:
        await self._default.close()
