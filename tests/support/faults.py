"""A fault-injecting HTTP proxy for tests, put between the gateway and S3 or the upstream app.

It forwards every request to its target (moto's server, the reflecting upstream) over a real
loopback socket, so the gateway, in process or a ``python -m gateway serve`` subprocess, reaches
it as it would reach S3 or the app. On command from the test, which holds the ``FaultProxy``
object in its own event loop, requests matching a ``Match`` are failed the way a ``Fault``
says: answered with an error status, closed unanswered, reset (TCP RST), delayed, held until
released, or cut in the middle of the answer's body. ``refuse_connections`` closes the
listening socket itself, so connecting fails as it does against a server that is down.

Handlers are cancelled when their client goes away (``handler_cancellation=True``): a request
held or delayed here, whose sender died or gave up, never reaches the target afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NoReturn

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

Action = Literal["status", "close", "reset", "delay", "hold", "cut"]

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Match:
    """Which requests a fault applies to; every field given must hold.

    ``path`` is compared with the decoded path (S3's ``/bucket/key``), ``header`` and ``query``
    must merely be present (``x-amz-copy-source`` marks a CopyObject, ``uploadId`` a multipart
    call).
    """

    method: str | None = None
    path: str | None = None
    path_prefix: str | None = None
    header: str | None = None
    query: str | None = None

    def matches(
        self, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> bool:
        return (
            (self.method is None or method == self.method)
            and (self.path is None or path == self.path)
            and (self.path_prefix is None or path.startswith(self.path_prefix))
            and (self.header is None or self.header in headers)
            and (self.query is None or self.query in query)
        )

    def describe(self) -> str:
        parts = [self.method or "*", self.path or (self.path_prefix or "") + "*"]
        if self.header:
            parts.append(f"with {self.header}")
        if self.query:
            parts.append(f"?{self.query}")
        return " ".join(parts)


@dataclass(frozen=True)
class Fault:
    """What happens to a matching request.

    ``status``: answered ``status`` by the proxy, the target never sees it. ``close``: the
    connection is closed unanswered. ``reset``: the connection is reset (RST). ``delay``: sent
    on after ``seconds``. ``hold``: sent on once the rule is released (``Rule.release``).
    ``cut``: sent on, then the answer is cut after ``cut_after`` bytes of its body.
    ``after_target``: close, reset or delay only once the target has answered (the work is
    done, the answer lost or late). ``times``: how many requests it applies to; None until
    ``clear()``.
    """

    action: Action
    status: int = 503
    seconds: float = 0.0
    cut_after: int = 1
    after_target: bool = False
    times: int | None = None


@dataclass
class Rule:
    """An injected fault and what it did: ``hits`` (requests struck), ``arrived`` (set at the
    first), ``abandoned``/``gone`` (held or delayed requests whose sender went away)."""

    match: Match
    fault: Fault
    hits: int = 0
    abandoned: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def active(self) -> bool:
        return self.fault.times is None or self.hits < self.fault.times

    def release(self) -> None:
        """Let held requests go on to the target."""
        self.released.set()


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and the fault it met (None: forwarded untouched)."""

    method: str
    path: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    fault: Action | None

    def matches(self, match: Match) -> bool:
        return match.matches(self.method, self.path, self.headers, self.query)


class FaultProxy:
    """The proxy: ``url`` to point the gateway at, ``inject``/``clear`` to command it."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.rules: list[Rule] = []
        self.seen: list[Seen] = []
        self._app = web.Application(client_max_size=_MAX_BODY)
        self._app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a held request whose sender is gone is never forwarded.
        self._runner = web.AppRunner(self._app, handler_cancellation=True, access_log=None)
        self._site: web.TCPSite | None = None
        self._port = 0
        self._client: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        await self._runner.setup()
        self._client = aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        await self.accept_connections()

    async def stop(self) -> None:
        self.clear()
        await self._runner.cleanup()
        if self._client is not None:
            await self._client.close()

    # ------------------------------------------------------------------ commands

    def inject(self, match: Match, fault: Fault) -> Rule:
        """Fail requests matching ``match`` as ``fault`` says, from now on; the first rule that
        matches and is still active applies."""
        rule = Rule(match, fault)
        self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        """Remove one fault without releasing what it holds (its senders are gone or will go)."""
        self.rules.remove(rule)

    def clear(self) -> None:
        """Remove every fault; held requests go on to the target."""
        for rule in self.rules:
            rule.release()
        self.rules.clear()

    def count(self, match: Match) -> int:
        """How many requests matching ``match`` arrived, faulted or not."""
        return sum(1 for seen in self.seen if seen.matches(match))

    @property
    def faulted(self) -> int:
        """How many requests met a fault."""
        return sum(1 for seen in self.seen if seen.fault is not None)

    async def refuse_connections(self) -> None:
        """Close the listening socket and every open connection: connecting is refused."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        server = self._runner.server
        if server is not None:
            for handler in server.connections:
                handler.force_close()

    async def accept_connections(self) -> None:
        """Listen again, on the same port once one was chosen."""
        if self._site is not None:
            return
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, reuse_address=True)
        await site.start()
        self._site = site
        if not self._port:
            self._port = self._runner.addresses[0][1]

    # ------------------------------------------------------------------ the handler

    def _rule_for(self, request: web.Request) -> Rule | None:
        for rule in self.rules:
            if rule.active and rule.match.matches(
                request.method, request.path, request.headers, request.query
            ):
                return rule
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rule = self._rule_for(request)
        fault = rule.fault if rule is not None else None
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.headers),
                dict(request.query),
                fault.action if fault is not None else None,
            )
        )
        body = await request.read()
        if rule is not None and fault is not None:
            rule.hits += 1
            rule.arrived.set()
            if fault.action == "status":
                return web.json_response(
                    {"injected": fault.status}, status=fault.status, headers={"Connection": "close"}
                )
            if fault.action in ("close", "reset") and not fault.after_target:
                _drop(request, reset=fault.action == "reset")
            try:
                if fault.action == "delay" and not fault.after_target:
                    await asyncio.sleep(fault.seconds)
                elif fault.action == "hold":
                    await rule.released.wait()
            except asyncio.CancelledError:
                # The sender went away (gave up, or died): its request never reaches the target.
                rule.abandoned += 1
                rule.gone.set()
                raise
        return await self._forward(request, body, rule)

    async def _forward(
        self, request: web.Request, body: bytes, rule: Rule | None
    ) -> web.StreamResponse:
        fault = rule.fault if rule is not None else None
        assert self._client is not None
        headers = CIMultiDict(
            (name, value)
            for name, value in request.headers.items()
            if name.lower() not in _HOP_BY_HOP
        )
        async with self._client.request(
            request.method,
            URL(self.target + request.raw_path, encoded=True),
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            if fault is not None and fault.action in ("close", "reset"):
                _drop(request, reset=fault.action == "reset")
            if rule is not None and rule.fault.action == "delay" and rule.fault.after_target:
                try:
                    await asyncio.sleep(rule.fault.seconds)
                except asyncio.CancelledError:
                    # The sender gave up waiting; the target did the work all the same.
                    rule.abandoned += 1
                    rule.gone.set()
                    raise
            response = web.StreamResponse(
                status=answer.status,
                reason=answer.reason,
                headers=CIMultiDict(
                    (name, value)
                    for name, value in answer.headers.items()
                    if name.lower() not in _HOP_BY_HOP
                ),
            )
        if "Content-Length" not in response.headers:
            response.content_length = len(payload)
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        if fault is not None and fault.action == "cut":
            # The head announced the whole length; the client must notice the missing rest.
            await response.write(payload[: fault.cut_after])
            _drop(request, reset=False)
        await response.write(payload)
        await response.write_eof()
        return response


def _drop(request: web.Request, *, reset: bool) -> NoReturn:
    """End the connection unanswered: a FIN, or with ``reset`` an RST (SO_LINGER of zero)."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if reset and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        else:
            transport.close()
    raise asyncio.CancelledError


@contextlib.asynccontextmanager
async def fault_proxy(target: str) -> AsyncIterator[FaultProxy]:
    """A started ``FaultProxy`` in front of ``target``; stopped (faults cleared) on exit."""
    proxy = FaultProxy(target)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
