"""An S3 server inside the demo's process: moto's server, threaded, on loopback, in memory."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..buckets import CORS_EXPOSE

LOOPBACK = "127.0.0.1"

# WSGI, as PEP 3333 has it.
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class MotoMissing(RuntimeError):
    """moto's server is not installed (it comes with the ``demo`` extra)."""


def expose_headers(app: WsgiApp, exposed: Iterable[str] = CORS_EXPOSE) -> WsgiApp:
    """Add ``Access-Control-Expose-Headers`` to every CORS answer that lacks it.

    S3 applies the bucket's CORS rule (``ExposeHeaders: ETag``, gateway.buckets) to the form
    POST and every other answer; moto applies it to some operations only, and its catch-all CORS
    exposes nothing. Browsers then refuse Fine Uploader and Uppy the ETag of what they uploaded
    ("Refused to get unsafe header"), one console error an upload.
    """
    value = ", ".join(exposed)

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            names = {name.lower() for name, _ in headers}
            if "access-control-allow-origin" in names and (
                "access-control-expose-headers" not in names
            ):
                headers = [*headers, ("Access-Control-Expose-Headers", value)]
            return start_response(status, headers, *exc_info)

        return app(environ, start)

    return wrapped


@contextlib.contextmanager
def embedded_s3() -> Iterator[int]:
    """Run moto's S3 server on 127.0.0.1 and a free port; yields the port, stops it after."""
    try:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server
    except ImportError as exc:
        raise MotoMissing(
            "the demo needs moto's server: pip install 'upload-gateway[demo]' "
            "(scripts/setup.sh does it)"
        ) from exc
    # werkzeug logs every request line, presigned query strings included: keep them out.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # What moto's ThreadedMotoServer runs, with the answers wrapped; on loopback only (moto
    # binds every interface unless told otherwise).
    app = expose_headers(DomainDispatcherApplication(create_backend_app))
    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, name="demo-s3", daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
