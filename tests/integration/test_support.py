"""What the test support promises the rest of the suite (tests/support/): a test's gateway is
served as production serves it, shares the run's one botocore model, and is garbage once
stopped, so a run of a thousand gateways holds no more memory than one."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

import aiohttp
import aiohttp.web_app

from gateway.app import GATEWAY, create_app
from gateway.config import Config
from tests.support.gateway import gateway_app
from tests.support.processes import GatewayServer, ServeGateway, serving


def _holders(obj: object) -> list[str]:
    return sorted({type(r).__name__ for r in gc.get_referrers(obj)})


async def test_a_stopped_gateway_is_garbage(make_config: Callable[..., Config]) -> None:
    """Once ``serving`` returns, nothing keeps the gateway alive: no app, S3 client or upstream
    pool waits for the suite's end (aiohttp's module-level cache of middleware chains held the
    last 1024 apps of the run, about 11 MiB each, and made pytest's final collection walk
    them all)."""
    app = gateway_app(make_config())
    app_ref = weakref.ref(app)
    async with serving(app) as urls, aiohttp.ClientSession() as session:
        client_ref = weakref.ref(app[GATEWAY].services.storage.client)
        async with session.get(urls.url + "/-/healthz") as resp:
            assert resp.status == 200
        # The request went through the cache this test is about (or the test proves nothing).
        assert aiohttp.web_app._cached_build_middleware.cache_info().currsize > 0
    del app
    gc.collect()
    leftover = app_ref()
    assert leftover is None, _holders(leftover)
    assert client_ref() is None


async def test_test_gateways_share_one_botocore_model(
    make_config: Callable[..., Config],
) -> None:
    """Every gateway ``gateway_app`` builds reads botocore's S3 model parsed once for the run;
    ``create_app`` left to itself, as in production, parses its own (100 ms and several MiB a
    time, which a gateway per test multiplies)."""
    config = make_config()
    first, second, alone = gateway_app(config), gateway_app(config), create_app(config)
    async with serving(first), serving(second), serving(alone):
        clients = [app[GATEWAY].services.storage.client for app in (first, second, alone)]
        models = [client.meta.service_model for client in clients]
        descriptions = [model._service_description for model in models]
    assert descriptions[0] is descriptions[1]
    assert descriptions[2] is not descriptions[0]


async def test_the_test_gateway_answers_through_the_front_and_its_connection_class(
    gateway_server: GatewayServer,
) -> None:
    """``GatewayServer`` serves with gateway/server.py's runner: a request aiohttp's parser
    refuses gets the gateway's problem+json (``_Connection``), not aiohttp's plain-text 400
    that its own TestServer would send."""
    assert gateway_server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_server.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    assert head.split(b" ", 2)[1] == b"400", head
    assert b"application/problem+json" in head and b'"reason": "bad-header"' in head, head


async def test_serve_gateway_stops_every_gateway_it_started(
    serve_gateway: ServeGateway, make_config: Callable[..., Config]
) -> None:
    """Each ``serve_gateway`` call is its own server on its own port, and closing one leaves
    the others serving."""
    first = await serve_gateway(make_config())
    second = await serve_gateway(make_config())
    assert first.port != second.port
    await first.close()
    async with aiohttp.ClientSession() as session, session.get(second.make_url("/-/healthz")) as r:
        assert r.status == 200
