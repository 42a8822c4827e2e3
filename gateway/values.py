"""The values the layers hand each other: who the user is, what S3 holds, what the app answered.

Standard library only, so the pure core can name these types without importing the clients
that produce them (aiohttp, aiobotocore). The modules that make them re-export them:
``identity.Identity``, ``storage.StoredObject``/``storage.Part``, ``upstream.UpstreamAnswer``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# The gateway's notion of now: tests pass a fixed one, the app the UTC wall clock.
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Identity:
    """A known user: the name the upstream gave, its hash and the key prefix it may write under."""

    user: str
    user_hash: str
    key_prefix: str


@dataclass(frozen=True)
class StoredObject:
    """What HEAD says about an object."""

    bucket: str
    key: str
    size: int
    etag: str
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    content_disposition: str | None = None


@dataclass(frozen=True)
class Part:
    """One uploaded part of a multipart upload, as ListParts reports it."""

    number: int
    etag: str
    size: int


@dataclass(frozen=True)
class UpstreamAnswer:
    """A small upstream answer read whole: status, headers and body bytes.

    ``headers`` is the client's case-insensitive multidict; it is typed as a plain mapping so
    this module needs no third-party import. Look headers up by any case only on answers the
    Upstream made.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
