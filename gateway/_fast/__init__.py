"""The speed layer: every use of aiohttp's private internals, in quarantine.

Verified on aiohttp 3.14.5 (yarl 1.25.1) and aiohttp-session 2.12.1. Internals change even
between aiohttp patch releases, so an upgrade (a security release included) is a checklist:

1. Run ``tests/unit/test_internals.py`` and ``tests/integration/test_dispatch.py``: one test per
   internal below, named for it; a failure names what moved.
2. If one failed and the fix is not obvious, set ``upstream.forwarder: standard`` (the pools on
   aiohttp's public ``ClientSession``, gateway/pools.py) and ship; the proxy and forwarder
   tests run under both forwarders (the ``forwarder_kind`` fixture).
3. Update this list and the versions above.

What is used, and where:

``forwarder.py`` (config ``upstream.forwarder: fast``): the upstream pools' HTTP/1.1 client.
  - ``aiohttp.client_proto.ResponseHandler`` (a private module), subclassed as ``_Connection``:
    ``__init__(loop)``; ``set_response_params(skip_payload=, read_until_eof=,
    auto_decompress=, read_timeout=, read_bufsize=, max_line_size=, max_field_size=)``;
    ``start_timeout()``; ``read()`` (its ``DataQueue`` base) giving
    ``(RawResponseMessage(version, code, reason, headers, ...), StreamReader)``;
    ``should_close``, ``is_connected()``, ``set_exception()``, ``writing_paused``,
    ``transport``, ``close()``, ``abort()``, ``data_received()``, ``connection_lost()``.
  - its private attributes and methods, overridden for the lazy read timer:
    ``_read_timeout``, ``_read_timeout_handle``, ``_loop``, ``_reschedule_timeout()`` (called by
    ``data_received`` and ``start_timeout``), ``_drop_timeout()`` (called at each answer's end),
    ``_on_read_timeout()``; and ``_reading_paused``, ``resume_reading(resume_parser)`` and
    ``_drain_helper()`` of ``BaseProtocol``.

``connection.py``: the client connections (``limits.send_timeout``, parser refusals).
  - ``web.RequestHandler`` (``aiohttp.web_protocol``), subclassed as ``ClientConnection``:
    ``__init__(manager, **kwargs)``, ``handle_error(request, status, exc, message)`` (called
    with the parser's ``HttpProcessingError``), ``connection_made``, ``connection_lost``,
    ``pause_writing``; private ``_task_handler`` (set by ``connection_made``), ``_paused``,
    ``_loop``; its ``__slots__`` (the subclass adds its own).
  - ``web.Server``: private ``_loop`` and ``_kwargs`` (what ``__call__`` builds each protocol
    from), ``__call__`` as the protocol factory the event loop calls, ``request_handler`` read
    by each new ``RequestHandler``; ``install`` assigns the server's ``__class__`` (used by
    gateway/server.py for the public listener and the ops runner) and its ``request_handler``
    (the dispatcher below).

``dispatch.py``: the server's handlers (made by gateway/front.py), past the Application.
  - ``web.AppRunner``'s server: ``request_handler`` is the Application's own handler (router,
    match info, middleware chain, Expect) and ``request_factory`` makes ``web.Request`` objects
    (gateway/server.py gives the same factory to the ops listener's ``web.Server``).
  - ``web.Request`` answering without match info: ``_prepare_hook`` (called by
    ``StreamResponse.prepare``) sends no ``on_response_prepare`` signal when ``_match_info`` is
    None; the proxy never reads ``request.app`` or ``match_info`` (they assert it is set).
  - the router's comparison: resources match on ``request.rel_url.path_safe`` (yarl's decoded
    path with %2F kept), as the dispatcher's prefix test does.

Outside this package, on purpose (small and read-only):
  - gateway/identity.py: aiohttp-session's ``Session._changed`` (the flag its own middleware
    reads; ``Session.changed`` is a setter) and ``AbstractStorage._get_session_data``
    (pinned ``aiohttp-session>=2.12,<3``).
"""
