"""What the completion is given and gives back, and the parts of storage and upstream it uses."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import RouteConfig
from ..identity import Identity
from ..storage import StoredObject
from ..upstream import UpstreamAnswer


class CompletionStorage(Protocol):
    """The part of ``storage.Storage`` the completion uses."""

    @property
    def uploads_bucket(self) -> str: ...

    @property
    def storage_bucket(self) -> str: ...

    async def head(self, bucket: str, key: str) -> StoredObject | None: ...

    async def read_prefix(
        self, bucket: str, key: str, n: int, *, etag: str | None = ...
    ) -> bytes: ...

    async def list_keys(self, bucket: str, prefix: str, limit: int = ...) -> list[str]: ...

    async def copy_to_storage(
        self,
        src_key: str,
        dst_key: str,
        *,
        source_etag: str | None = ...,
        checked: StoredObject | None = ...,
        content_type: str | None = ...,
        content_disposition: str = ...,
        metadata: Mapping[str, str] | None = ...,
        only_new: bool = ...,
    ) -> StoredObject: ...

    async def delete(self, bucket: str, key: str) -> None: ...


class CompletionUpstream(Protocol):
    """The part of ``upstream.Upstream`` the completion uses."""

    async def call(
        self,
        method: str,
        raw_path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> UpstreamAnswer: ...


@dataclass(frozen=True)
class CompletionRequest:
    """What a protocol adapter learnt from its client about one finished upload.

    ``passed_headers`` may carry Cookie, Authorization and X-Request-ID; nothing else is sent.
    """

    route: RouteConfig
    identity: Identity
    key: str
    filename: str
    params: Mapping[str, Any] = field(default_factory=dict)
    declared_size: int | None = None
    declared_content_type: str | None = None
    etag: str | None = None
    passed_headers: Mapping[str, str] = field(default_factory=dict)
    # What started it: "client" (a client's call) or "sweep" (the gateway's, gateway/completion
    # /sweep.py); the message says which.
    trigger: str = "client"
    # Only while the upload is in the uploads bucket: the sweep, which holds a lease on it, must
    # not announce again a copy whose upload another completion has just finished.
    upload_only: bool = False


@dataclass(frozen=True)
class CompletionResult:
    """The upstream's status and JSON body (None when it sent none), and the stored copy."""

    status: int
    body: Any
    stored: StoredObject | None
    idempotency_key: str
