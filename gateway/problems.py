"""The gateway's own errors, each a value with a status, rendered once as problem+json.

    GatewayError (500)
     ├── BadRequest (400)
     │    └── PolicyRefused (400)        a signing request outside the rules
     ├── NotAuthenticated (401)
     ├── Forbidden (403)
     │    └── OriginRefused (403)
     ├── NotFound (404)
     ├── Gone (410)
     ├── PayloadTooLarge (413)
     ├── UnsupportedMediaType (415)
     ├── UpstreamUnavailable (502)
     ├── StorageUnavailable (503)
     ├── UpstreamBusy (503)             every pooled connection stayed busy; Retry-After
     └── UpstreamTimeout (504)

Every instance carries a short kebab-case ``reason`` (``key-outside-prefix``): the same string is
the log field, the metric label and the suffix of the problem ``type``. Each reason's status and
title are in the catalogue (``reasons.py``, printed in docs/errors.md); the class's ``title``
only stands in for a reason the catalogue lacks. Pure modules raise these; only the front
(``front.py``) turns them into responses (RFC 9457).
"""

from __future__ import annotations

from typing import Any, ClassVar

from .reasons import title_of

PROBLEM_TYPE_BASE = "urn:upload-gateway:problem:"
# 4xx answers where the same request may succeed later: the moment was wrong, not the request
# (a slow body, a race with another request, too early, too many at once).
_TRANSIENT_STATUSES = frozenset({408, 409, 425, 429})


class GatewayError(Exception):
    """Base of every error the gateway answers itself."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal gateway error"
    default_reason: ClassVar[str] = "internal-error"
    # Seconds for a Retry-After header (RFC 9110 10.2.3), when trying again later can help.
    retry_after: int | None = None

    def __init__(self, detail: str, *, reason: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reason = reason or self.default_reason
        self.extra = extra

    @property
    def type(self) -> str:
        return PROBLEM_TYPE_BASE + self.reason

    def to_problem(self) -> dict[str, Any]:
        """The RFC 9457 body: type, title, status, detail, reason and any safe extra members.

        The title is the reason's, so one problem type always has one title (RFC 9457 3.1.3).
        """
        body: dict[str, Any] = {
            "type": self.type,
            "title": title_of(self.reason) or self.title,
            "status": self.status,
            "detail": self.detail,
            "reason": self.reason,
        }
        body.update(self.extra)
        return body


class BadRequest(GatewayError):
    status = 400
    title = "Bad request"
    default_reason = "bad-request"


class PolicyRefused(BadRequest):
    """A POST policy or REST string the rules do not allow; nothing was signed."""

    title = "Signature refused"
    default_reason = "policy-refused"


class NotAuthenticated(GatewayError):
    status = 401
    title = "Not authenticated"
    default_reason = "no-identity"


class Forbidden(GatewayError):
    status = 403
    title = "Forbidden"
    default_reason = "forbidden"


class OriginRefused(Forbidden):
    title = "Origin not allowed"
    default_reason = "origin-refused"


class NotFound(GatewayError):
    status = 404
    title = "Not found"
    default_reason = "not-found"


class Gone(GatewayError):
    status = 410
    title = "Gone"
    default_reason = "expired"


class PayloadTooLarge(GatewayError):
    status = 413
    title = "Payload too large"
    default_reason = "too-large"


class UnsupportedMediaType(GatewayError):
    status = 415
    title = "Unsupported media type"
    default_reason = "content-type-not-allowed"


class UpstreamUnavailable(GatewayError):
    status = 502
    title = "Upstream unavailable"
    default_reason = "upstream-unavailable"


class StorageUnavailable(GatewayError):
    status = 503
    title = "Storage unavailable"
    default_reason = "storage-unavailable"


class UpstreamBusy(GatewayError):
    """No upstream connection came free in time; the request was not sent, so it may be
    sent again after ``retry_after`` seconds."""

    status = 503
    title = "Upstream busy"
    default_reason = "upstream-busy"

    def __init__(self, detail: str, *, retry_after: int, reason: str | None = None) -> None:
        super().__init__(detail, reason=reason)
        self.retry_after = retry_after


class UpstreamTimeout(GatewayError):
    status = 504
    title = "Upstream timeout"
    default_reason = "upstream-timeout"


def is_final(exc: GatewayError) -> bool:
    """Whether asking again can never succeed: a refusal (4xx) that is not about timing.

    Rules (type, size, key), a missing identity or object, a refused origin are final; the
    gateway, S3 or the upstream failing (5xx) and the transient 4xx are worth a retry.
    """
    return 400 <= exc.status < 500 and exc.status not in _TRANSIENT_STATUSES
