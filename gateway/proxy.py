"""The streaming reverse proxy: every request that is not the gateway's own goes upstream.

Bodies stream both ways with back-pressure (nothing is buffered whole); the raw path and query
are forwarded byte for byte; WebSocket upgrades are relayed frame by frame.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import WSMsgType, web
from multidict import CIMultiDict

from . import headers as hdr
from .appkeys import CONFIG, REQUEST_ID, UPSTREAM
from .problems import NotFound
from .upstream import Upstream, map_client_errors

log = logging.getLogger(__name__)

_NO_BODY_STATUSES = frozenset({204, 304})


class Proxy:
    """Request handler bound to one app's config; built once by ``create_app``."""

    def __init__(self, app: web.Application, *, reserved: tuple[str, ...]) -> None:
        config = app[CONFIG]
        self._app = app
        self._networks = hdr.parse_networks(config.trusted_proxies)
        self._session_cookie = config.session.cookie_name
        self._spoofable = (config.identity.login_header, config.identity.logout_header)
        # Paths only the gateway may call upstream (the routes' forward paths), compared after
        # the same normalisation an upstream framework would apply.
        self._reserved = tuple(p.lower().rstrip("/") for p in reserved)

    def _is_reserved(self, path: str) -> bool:
        normalised = _normalise_path(path).lower().rstrip("/")
        return any(normalised == p or normalised.startswith(p + "/") for p in self._reserved)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request upstream and stream the answer back."""
        raw = request.raw_path.split("?", 1)[0]
        if self._is_reserved(request.path) or self._is_reserved(unquote(raw)):
            raise NotFound("no such path", reason="not-found")
        upstream = self._app[UPSTREAM]
        headers = self._upstream_headers(request)
        if _is_websocket(request):
            return await self._websocket(request, upstream, headers)
        url = upstream.url(request.raw_path)
        data: Any = request.content if request.body_exists else None
        with map_client_errors():
            upstream_resp = await upstream.session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                compress=False,
                chunked=None,
                auto_decompress=False,
            )
        try:
            return await self._relay(request, upstream_resp)
        finally:
            upstream_resp.release()

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        out = hdr.request_headers(request.headers, extra_spoofable=self._spoofable)
        cookie = out.get("Cookie")
        if cookie is not None:
            del out["Cookie"]
            stripped = hdr.strip_cookie(cookie, self._session_cookie)
            if stripped:
                out["Cookie"] = stripped
        peer = request.remote
        trusted = hdr.is_trusted(peer, self._networks)
        out.update(
            hdr.forwarded_headers(
                request.headers,
                peer=peer,
                scheme=request.scheme,
                host=request.headers.get("Host"),
                trusted=trusted,
            )
        )
        out["X-Request-ID"] = request[REQUEST_ID]
        if request.body_exists and "Content-Length" not in out:
            # The client sent a chunked body; aiohttp re-chunks it toward the upstream.
            out.pop("Content-Length", None)
        return out

    async def _relay(
        self, request: web.Request, upstream_resp: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream_resp.status, reason=upstream_resp.reason)
        response.headers.extend(hdr.response_headers(upstream_resp.headers))
        length = upstream_resp.headers.get("Content-Length")
        no_body = request.method == "HEAD" or upstream_resp.status in _NO_BODY_STATUSES
        if length is not None and length.isdigit():
            response.content_length = int(length)
        # Without a length aiohttp itself picks chunked for HTTP/1.1 and close-delimited for
        # HTTP/1.0 (which forbids chunked), so no framing is forced here.
        await response.prepare(request)
        if no_body:
            return response
        try:
            async for chunk in upstream_resp.content.iter_any():
                await response.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Headers are gone: no problem body is possible any more. Close the connection so
            # the client sees a truncated answer rather than a complete-looking short one.
            log.warning(
                "upstream_failed_mid_response",
                extra={"error": type(exc).__name__, "path": request.path},
            )
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response

    async def _websocket(
        self, request: web.Request, upstream: Upstream, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        protocols = [
            p.strip()
            for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
            if p.strip()
        ]
        for name in (
            "Sec-WebSocket-Key",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Extensions",
            "Sec-WebSocket-Protocol",
        ):
            headers.pop(name, None)
        with map_client_errors():
            upstream_ws = await upstream.session.ws_connect(
                upstream.url(request.raw_path),
                headers=headers,
                protocols=protocols,
                autoping=True,
                max_msg_size=0,
            )
        client_ws = web.WebSocketResponse(
            protocols=[upstream_ws.protocol] if upstream_ws.protocol else (), max_msg_size=0
        )
        await client_ws.prepare(request)

        async def pump(
            source: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
            sink: aiohttp.ClientWebSocketResponse | web.WebSocketResponse,
        ) -> None:
            async for msg in source:
                if msg.type == WSMsgType.TEXT:
                    await sink.send_str(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    await sink.send_bytes(msg.data)
                else:
                    break
            await sink.close()

        to_upstream = asyncio.ensure_future(pump(client_ws, upstream_ws))
        to_client = asyncio.ensure_future(pump(upstream_ws, client_ws))
        try:
            await asyncio.wait({to_upstream, to_client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_upstream, to_client):
                task.cancel()
            await asyncio.gather(to_upstream, to_client, return_exceptions=True)
            await upstream_ws.close()
            await client_ws.close()
        return client_ws


def _is_websocket(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in hdr.connection_tokens(request.headers)
    )


def _normalise_path(path: str) -> str:
    """Collapse ``//`` and resolve dot segments, as an upstream router would before matching."""
    out: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out)
