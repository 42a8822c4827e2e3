"""Request ids: a client's X-Request-ID kept when it is a sane token, else a fresh one, and the
id of the request being handled, in a context variable.

The front (gateway/front.py) gives every request its id and sets ``request_id_var`` while the
request runs; the logs read it (gateway/logs.py), and the completion sends it upstream with its
message (gateway/completion/notify.py).
"""

from __future__ import annotations

import contextvars
import itertools
import os
import re

# The id of the request being handled; None outside a request (start-up, the sweep).
request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Letters, digits and ``._:-``: nothing that could break or forge a log line or a header.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def valid_request_id(value: str | None) -> str:
    """The client's X-Request-ID when it is a sane token, else a fresh random one."""
    if value and _REQUEST_ID_RE.match(value):
        return value
    # 128 random bits, as uuid4().hex gave, without building a UUID object per request.
    return os.urandom(16).hex()


class RequestIds:
    """``valid_request_id`` for the request path: fresh ids are a random prefix and a counter.

    One per app (so per worker process): the 64-bit random prefix keeps ids of workers and
    restarts apart, and the counter spares a getrandom call on every request.
    """

    def __init__(self) -> None:
        self._prefix = os.urandom(8).hex()
        self._count = itertools.count(1)

    def __call__(self, value: str | None) -> str:
        if value and _REQUEST_ID_RE.match(value):
            return value
        # 32 hex digits, the shape valid_request_id's ids have.
        return f"{self._prefix}{next(self._count):016x}"
