"""The streaming reverse proxy: every request that is not the gateway's own goes upstream.

Bodies stream both ways with back-pressure (nothing is buffered whole); the raw path and query
are forwarded byte for byte; WebSocket upgrades are relayed frame by frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from multidict import CIMultiDict

from . import headers as hdr
from .pools import Answer
from .problems import BadRequest, NotFound
from .requestkeys import SCOPE
from .services import Services
from .targets import Reserved, origin_form
from .upstream import Upstream, map_client_errors

log = logging.getLogger(__name__)

_NO_BODY_STATUSES = frozenset({204, 304})

# Sized answers up to this are read whole and sent with their head in one write.
_WHOLE_ANSWER_BYTES = 64 * 1024


class Proxy:
    """Request handler bound to one app's services; built once by ``create_app``."""

    def __init__(
        self,
        services: Services,
        *,
        reserved: tuple[str, ...],
        finish: Callable[[web.Request, web.StreamResponse], Awaitable[None]],
    ) -> None:
        """``finish``: what every answer gets before its head goes out (``Front.finish``); run
        here for the answers this sends itself, streamed ones and WebSockets."""
        config = services.config
        self._services = services
        self._finish = finish
        self._upstream: Upstream | None = None
        self._networks = hdr.parse_networks(config.trusted_proxies)
        self._session_cookie = config.session.cookie_name
        self._spoofable = (config.identity.login_header, config.identity.logout_header)
        self._identity_headers = frozenset(map(hdr.normalise, self._spoofable))
        # aiohttp refuses a message of max_msg_size bytes or more (whole or in continuation
        # frames; an inflated one only past it), closing with 1009: one more lets a message of
        # the limit itself pass.
        self._ws_max_msg_size = config.limits.websocket_max_message + 1
        # Paths only the gateway may call upstream (the routes' message paths), in every reading
        # an upstream stack may make of a target (gateway/targets.py). This handler is the one
        # way a client's target goes upstream, by the front's fast path or the router's
        # catch-all alike, so the test here covers both.
        self._reserved = Reserved(reserved)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Proxy one request: send it upstream and stream the answer back."""
        target = origin_form(request.raw_path)
        if target is None:
            raise BadRequest("the request target must be a path", reason="bad-target")
        if self._reserved.named_by(target):
            raise NotFound("no such path", reason="not-found")
        upstream = self._upstream
        if upstream is None:
            # Opened by the app's start-up, after this handler was made.
            upstream = self._upstream = self._services.upstream
        headers = self._upstream_headers(request)
        if _is_websocket(request):
            return await self._websocket(request, upstream, headers, target)
        body = request.content if request.body_exists else None
        upstream_resp = await upstream.request(
            request.method,
            target,
            headers.items(),
            body,
            # A chunked body (no length known) is re-chunked toward the upstream.
            chunked=body is not None and "Content-Length" not in headers,
        )
        try:
            # Most small answers are in whole with their head: answered without a coroutine.
            whole = self._whole(request, upstream_resp)
            return whole if whole is not None else await self._relay(request, upstream_resp)
        finally:
            upstream_resp.release()

    def _whole(self, request: web.Request, upstream_resp: Answer) -> web.Response | None:
        """The answer in one write (head and body), when it is sized, small and all here."""
        content = upstream_resp.content
        if not content.is_eof() or request.method == "HEAD":
            return None
        status = upstream_resp.status
        size = _small_size(upstream_resp.headers.get("Content-Length"))
        if size is None or status in _NO_BODY_STATUSES:
            return None
        data = content.read_nowait(-1)
        upstream_resp.release()
        whole = web.Response(status=status, reason=upstream_resp.reason, body=data)
        whole.headers.extend(
            hdr.response_headers(upstream_resp.headers, underscored=self._identity_headers)
        )
        return whole

    def _upstream_headers(self, request: web.Request) -> CIMultiDict[str]:
        peer = request.remote
        trusted = hdr.is_trusted(peer, self._networks)
        out = hdr.request_headers(
            request.headers, extra_spoofable=self._spoofable, trusted=trusted
        )
        cookies = out.getall("Cookie", None)
        if cookies is not None:
            del out["Cookie"]
            joined = hdr.upstream_cookie(cookies, self._session_cookie)
            if joined:
                out["Cookie"] = joined
        out.update(
            hdr.forwarded_headers(
                request.headers,
                peer=peer,
                scheme=request.scheme,
                host=request.headers.get("Host"),
                trusted=trusted,
            )
        )
        out["X-Request-ID"] = request[SCOPE].request_id
        return out

    async def _relay(
        self, request: web.Request, upstream_resp: Answer
    ) -> web.StreamResponse:
        status = upstream_resp.status
        headers = hdr.response_headers(upstream_resp.headers, underscored=self._identity_headers)
        length = upstream_resp.headers.get("Content-Length")
        no_body = request.method == "HEAD" or status in _NO_BODY_STATUSES
        size = int(length) if length is not None and length.isdigit() else None
        if not no_body and _small_size(length) is not None:
            # A small sized answer goes out in one write (head and body), not two. Nothing is
            # sent yet, so a failure while it comes in is still the gateway's 502 or 504.
            with map_client_errors():
                data = await upstream_resp.content.read()
            upstream_resp.release()
            whole = web.Response(status=status, reason=upstream_resp.reason, body=data)
            whole.headers.extend(headers)
            return whole
        response = web.StreamResponse(status=status, reason=upstream_resp.reason)
        response.headers.extend(headers)
        if size is not None:
            response.content_length = size
        # Without a length aiohttp itself picks chunked for HTTP/1.1 and close-delimited for
        # HTTP/1.0 (which forbids chunked), so no framing is forced here.
        await self._finish(request, response)
        await response.prepare(request)
        if no_body:
            return response
        content = upstream_resp.content
        while True:
            try:
                chunk = await content.readany()
            except (TimeoutError, aiohttp.ClientError) as exc:
                # Headers are gone: no problem body is possible any more. Close the connection
                # so the client sees a truncated answer rather than a complete-looking short one.
                log.warning(
                    "upstream_failed_mid_response",
                    extra={"error": type(exc).__name__, "path": request.path},
                )
                if request.transport is not None:
                    request.transport.close()
                return response
            if not chunk:
                break
            try:
                await response.write(chunk)
            except ConnectionError:
                # The client hung up (aiohttp's ClientConnectionResetError is one): not an
                # upstream failure. The caller's release() drops the half-read upstream
                # connection instead of pooling it.
                log.info("client_went_away", extra={"path": request.path})
                return response
        # Read whole: the upstream connection goes back to the pool before the last write.
        upstream_resp.release()
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
                # Each side's messages are read whole before they are passed on: bounded.
                max_msg_size=self._ws_max_msg_size,
            )
        client_ws = web.WebSocketResponse(
            protocols=[upstream_ws.protocol] if upstream_ws.protocol else (),
            max_msg_size=self._ws_max_msg_size,
        )
        await self._finish(request, client_ws)
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


def _small_size(length: str | None) -> int | None:
    """A Content-Length small enough to send the answer whole, as an int; else None."""
    if length is None or not length.isdigit():
        return None
    size = int(length)
    return size if size <= _WHOLE_ANSWER_BYTES else None


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
