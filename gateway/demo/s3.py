"""An S3 server inside the demo's process: moto's threaded server, on loopback, in memory."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

LOOPBACK = "127.0.0.1"


class MotoMissing(RuntimeError):
    """moto's server is not installed (it comes with the ``demo`` extra)."""


@contextlib.contextmanager
def embedded_s3() -> Iterator[int]:
    """Run moto's S3 server on 127.0.0.1 and a free port; yields the port, stops it after."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        raise MotoMissing(
            "the demo needs moto's server: pip install 'upload-gateway[demo]' "
            "(scripts/setup.sh does it)"
        ) from exc
    # werkzeug logs every request line, presigned query strings included: keep them out.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    # ip_address: moto binds every interface unless told otherwise.
    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    try:
        _, port = server.get_host_and_port()
        yield int(port)
    finally:
        server.stop()
