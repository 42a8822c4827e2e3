"""Telling the upstream: a signed message about an upload, sent with the client's credentials."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from .. import webhook
from ..config import RouteConfig
from ..identity import Identity
from ..problems import GatewayError
from ..requestids import request_id_var, valid_request_id
from ..storage import StoredObject
from ..upstream import UpstreamAnswer
from .interfaces import CompletionUpstream

# The package's name, so log lines name the logger they always named.
log = logging.getLogger("gateway.completion")

_PASSED = {"cookie": "Cookie", "authorization": "Authorization", "x-request-id": "X-Request-ID"}


def object_json(stored: StoredObject) -> dict[str, Any]:
    """The ``object`` of a message: where the stored copy is and what it holds."""
    return {
        "bucket": stored.bucket,
        "key": stored.key,
        "size": stored.size,
        "etag": stored.etag,
        "content_type": stored.content_type,
    }


def json_or_none(body: bytes) -> Any:
    """The upstream's answer as JSON, or None when it sent none (or not JSON)."""
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class Notifier:
    """POSTs signed messages about one user's upload to its route's message path (``forward``)."""

    def __init__(self, upstream: CompletionUpstream, *, secret: str, timeout: float) -> None:
        webhook.check_secret(secret)  # an unusable secret fails here, not on every message
        self._upstream = upstream
        self._secret = secret
        self._timeout = timeout

    async def send(
        self,
        route: RouteConfig,
        identity: Identity,
        idempotency: str,
        message: Mapping[str, Any],
        passed_headers: Mapping[str, str],
    ) -> UpstreamAnswer:
        """POST a signed message to the route's message path, with the client's credentials.

        ``idempotency`` names the message: its ``Idempotency-Key`` and ``webhook-id``, the same
        on every delivery of it, while each delivery is signed at the second it is sent.
        """
        body = json.dumps(message, separators=(",", ":")).encode()
        headers = {
            _PASSED[name.lower()]: value
            for name, value in passed_headers.items()
            if name.lower() in _PASSED
        }
        headers["X-Request-ID"] = valid_request_id(
            headers.get("X-Request-ID") or request_id_var.get()
        )
        headers["Content-Type"] = "application/json"
        headers["X-Upload-User"] = identity.user
        headers["Idempotency-Key"] = idempotency
        timestamp = int(time.time())
        headers[webhook.HEADER] = webhook.sign(self._secret, body, timestamp)
        headers.update(webhook.standard_headers(self._secret, idempotency, body, timestamp))
        try:
            return await self._upstream.call(
                "POST", route.forward, headers=headers, body=body, timeout=self._timeout
            )
        except GatewayError as exc:
            log.warning(
                "completion_upstream_failed", extra={"route": route.name, "reason": exc.reason}
            )
            raise
