"""The aiohttp and aiohttp-session internals the gateway relies on (gateway/_fast/__init__.py
lists them), one test each, named for it: after an upgrade, a failure here names what moved.
Each asserts the attribute, signature or behaviour the gateway uses, against the installed
release, on real objects (no server needed unless the behaviour needs one)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aiohttp_session
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.client_proto import ResponseHandler
from aiohttp.http_parser import RawResponseMessage
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_urldispatcher import Resource

from gateway._fast.connection import ClientConnection, install


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


async def test_response_handler_init_takes_the_loop() -> None:
    """``ResponseHandler(loop)``: how the fast forwarder makes each connection's protocol."""
    handler = ResponseHandler(asyncio.get_running_loop())
    assert handler._loop is asyncio.get_running_loop()
    assert _params(ResponseHandler.__init__) == ["self", "loop"]


def test_response_handler_set_response_params_keywords() -> None:
    """``set_response_params`` takes every keyword the fast forwarder passes."""
    used = {"skip_payload", "read_until_eof", "auto_decompress", "read_timeout", "read_bufsize",
            "max_line_size", "max_field_size"}  # fmt: skip
    assert used <= set(_params(ResponseHandler.set_response_params))


async def test_response_handler_read_timeout_private_state() -> None:
    """``_read_timeout`` (set by set_response_params) and ``_read_timeout_handle`` hold the
    read timer the lazy one replaces."""
    handler = ResponseHandler(asyncio.get_running_loop())
    handler.set_response_params(read_timeout=7.0)
    assert handler._read_timeout == 7.0
    assert hasattr(handler, "_read_timeout_handle")


def test_response_handler_reschedule_timeout_is_what_start_timeout_calls() -> None:
    """``start_timeout`` and ``data_received`` arm the timer through ``_reschedule_timeout``:
    the fast forwarder overrides that one method."""
    assert "_reschedule_timeout" in inspect.getsource(ResponseHandler.start_timeout)
    assert "_reschedule_timeout" in inspect.getsource(ResponseHandler.data_received)


def test_response_handler_drop_timeout_ends_each_answer() -> None:
    """``_drop_timeout`` is what the protocol calls when an answer ends or fails."""
    assert _params(ResponseHandler._drop_timeout) == ["self"]
    assert "_drop_timeout" in inspect.getsource(ResponseHandler.data_received)


def test_response_handler_on_read_timeout() -> None:
    """``_on_read_timeout()`` fails the answer; the lazy timer calls it when the deadline is due."""
    assert _params(ResponseHandler._on_read_timeout) == ["self"]


def test_response_handler_resume_reading_signature() -> None:
    """``resume_reading(resume_parser)`` and ``_reading_paused``: the fast path skips a resume
    when reading is not paused."""
    assert _params(ResponseHandler.resume_reading) == ["self", "resume_parser"]
    assert "_reading_paused" in BaseProtocol.__slots__


def test_base_protocol_drain_helper() -> None:
    """``_drain_helper()`` waits while writing is paused (the fast forwarder's body sender)."""
    assert inspect.iscoroutinefunction(BaseProtocol._drain_helper)
    assert isinstance(BaseProtocol.writing_paused, property)


def test_response_handler_read_gives_the_raw_message_and_payload() -> None:
    """``read()`` (DataQueue's) and ``RawResponseMessage``'s fields the forwarder reads."""
    assert inspect.iscoroutinefunction(ResponseHandler.read)
    for name in ("version", "code", "reason", "headers"):
        assert hasattr(RawResponseMessage, name), name


def test_response_handler_public_methods_the_forwarder_uses() -> None:
    """``should_close``, ``is_connected``, ``set_exception``, ``start_timeout``, ``close``,
    ``abort``, ``connection_lost`` on the private module's class."""
    for name in ("is_connected", "set_exception", "start_timeout", "close", "abort",
                 "connection_lost", "data_received"):  # fmt: skip
        assert callable(getattr(ResponseHandler, name)), name
    assert isinstance(ResponseHandler.should_close, property)


def test_request_handler_handle_error_signature() -> None:
    """``handle_error(request, status, exc, message)``: overridden to answer parser refusals."""
    assert _params(RequestHandler.handle_error) == ["self", "request", "status", "exc", "message"]


def test_request_handler_private_state_the_connection_reads() -> None:
    """``_task_handler``, ``_paused`` and ``_loop`` (slots of the server protocol)."""
    slots: set[str] = set()
    for cls in RequestHandler.__mro__:
        slots.update(getattr(cls, "__slots__", ()))
    assert {"_task_handler", "_paused", "_loop"} <= slots
    assert "_task_handler = task" in inspect.getsource(RequestHandler.connection_made)


def test_request_handler_reads_the_servers_request_handler_when_made() -> None:
    """Each connection copies ``manager.request_handler`` at construction, so ``install``
    setting the attribute reaches every later connection."""
    assert "manager.request_handler" in inspect.getsource(RequestHandler.__init__)


async def test_web_server_call_builds_the_protocol_from_kwargs() -> None:
    """``web.Server`` keeps ``_loop`` and ``_kwargs``; ``install`` swaps its ``__class__`` so
    ``__call__`` makes a ``ClientConnection`` with them, and sets ``request_handler``."""

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        return web.Response()

    server = web.Server(handler, max_line_size=1234)
    assert server._loop is asyncio.get_running_loop()
    assert server._kwargs == {"max_line_size": 1234}
    install(server, send_timeout=3.0, handler=handler)
    protocol = server()
    assert isinstance(protocol, ClientConnection)
    assert server.request_handler is handler
    await server.shutdown()


async def test_app_runner_server_is_the_apps_handler_and_request_factory() -> None:
    """An ``AppRunner``'s server hands requests to the Application's own handler and makes them
    with the Application's factory: what the dispatcher passes on, and the ops listener reuses."""
    app = web.Application()
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        server = runner.server
        assert server is not None
        assert server.request_handler == app._handle
        assert server.request_factory == app._make_request
        assert inspect.signature(app._make_request).parameters["_cls"].default is web.Request
    finally:
        await runner.cleanup()


def test_router_resources_match_on_path_safe() -> None:
    """The router's resources match ``request.rel_url.path_safe`` (decoded, %2F kept): the
    dispatcher compares the gateway's own prefixes on the same reading of the path."""
    assert "request.rel_url.path_safe" in inspect.getsource(Resource.resolve)


def test_aiohttp_session_changed_flag() -> None:
    """``Session._changed``: the flag ``SessionData.modified`` reads (gateway/identity.py)."""
    session = aiohttp_session.Session(None, data=None, new=True)
    assert session._changed is False
    session.changed()
    assert session._changed is True


def test_aiohttp_session_get_session_data() -> None:
    """``AbstractStorage._get_session_data(session)``: what the cookie storage encrypts."""
    assert _params(aiohttp_session.AbstractStorage._get_session_data) == ["self", "session"]
