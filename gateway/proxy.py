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
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict

from . import headers as hdr
from .appkeys import CONFIG, REQUEST_ID, UPSTREAM
from .problems import BadRequest, NotFound
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
        target = origin_form(request.raw_path)
        if target is None:
            raise BadRequest("the request target must be a path", reason="bad-target")
        raw = target.split("?", 1)[0]
        if self._is_reserved(request.path) or any(map(self._is_reserved, _decodings(raw))):
            raise NotFound("no such path", reason="not-found")
        upstream = self._app[UPSTREAM]
        headers = self._upstream_headers(request)
        if _is_websocket(request):
            return await self._websocket(request, upstream, headers, target)
        url = upstream.url(target)
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
                # A body sent without a type goes on without one: aiohttp would otherwise label
                # it application/octet-stream, which some apps then refuse or mis-parse.
                skip_auto_headers=("Content-Type",),
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
                try:
                    await response.write(chunk)
                except ConnectionError:
                    # The client hung up (aiohttp's ClientConnectionResetError is one): not an
                    # upstream failure. The caller's release() drops the half-read upstream
                    # connection instead of pooling it.
                    log.info("client_went_away", extra={"path": request.path})
                    return response
        except (TimeoutError, aiohttp.ClientError) as exc:
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
        self, request: web.Request, upstream: Upstream, headers: CIMultiDict[str], target: str
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
                upstream.url(target),
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
            await sink.close(code=_close_code(source.close_code))

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


def _close_code(code: int | None) -> int:
    """The close code to pass on: the peer's own, unless it is one that may not be sent
    (RFC 6455 7.4.1: 1005, 1006 and 1015 are reserved for reporting, never for a frame)."""
    if code is None or code == WSCloseCode.OK:
        return WSCloseCode.OK
    if code == WSCloseCode.ABNORMAL_CLOSURE:
        return WSCloseCode.INTERNAL_ERROR
    if code in (1005, 1015) or not 1000 <= code <= 4999:
        return WSCloseCode.OK
    return code


def _is_websocket(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in hdr.connection_tokens(request.headers)
    )


def origin_form(raw_target: str) -> str | None:
    """The path and query of a request target, byte for byte; None if it has no path.

    A server must accept the absolute form ``GET http://host/path`` (RFC 9112 3.2.2); only its
    path and query go upstream, so the upstream URL is never built from a client's host.
    """
    if raw_target.startswith("/"):
        return raw_target
    scheme, sep, rest = raw_target.partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i != -1), default=len(rest))
    path = rest[cut:]
    return path if path.startswith("/") else "/" + path


def _decodings(raw_path: str) -> list[str]:
    """The path percent-decoded once, twice and thrice: some upstream stacks decode twice (a
    proxy rule, then the framework), so ``%252f`` may reach a router as ``/``."""
    out: list[str] = []
    current = raw_path
    for _ in range(3):
        decoded = unquote(current)
        if decoded == current:
            break
        out.append(decoded)
        current = decoded
    return out


def _normalise_path(path: str) -> str:
    """Collapse ``//``, resolve dot segments and drop ``;params``, as upstream routers may
    (Servlet containers ignore ``;jsessionid=...``; some servers read ``\\`` as ``/``)."""
    out: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out)
