"""The gateway's services, built once per app from its config and handed to each constructor.

``create_app`` builds one ``Services``; the upload adapters (``protocols/``), the ops endpoints
and the completion sweep are given what they need when they are constructed, never look it up
in the app by key. What opens asynchronously (the upstream pool, the S3 client and the
``Storage`` and ``Completion`` over them) opens for the app's lifetime in ``Services.opened``,
which the app runs as a cleanup context, and is held here from then on: a handler reads
``services.storage`` when it runs, after the app has started.

Layer: above the I/O modules it assembles, below the HTTP surface that uses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING

from . import keys
from .completion import ID_PURPOSE, Completion, stable_prefix
from .completion.owners import OwnerBook
from .config import Config
from .identity import IdentityService
from .metrics import Metrics
from .signing import SigningKeys
from .storage import S3ClientFactory, Storage, open_s3_client
from .tokens import TokenSealer
from .upstream import Upstream

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client


def check_storage_keys(config: Config) -> None:
    """Refuse a route whose ``storage_key`` varies before ``{uuid}``, naming the route.

    The config's own validation refuses these when it is read; a Config built past validation
    (``model_copy(update=...)``) must not start either: a retried completion finds its stored
    copy by the key up to ``{uuid}``, so the mistake would show only on the first lost retry.
    """
    for index, route in enumerate(config.routes):
        try:
            stable_prefix(route.storage_key, route="r", user_hash="h", uuid_text="u")
        except ValueError as exc:
            raise ValueError(f"routes[{index}].storage_key: {exc}") from None


def storage_for(config: Config, client: S3Client) -> Storage:
    """The gateway's two buckets over an open S3 client."""
    return Storage(
        client, uploads_bucket=config.s3.uploads_bucket, storage_bucket=config.s3.storage_bucket
    )


def completion_for(
    config: Config,
    storage: Storage,
    upstream: Upstream,
    *,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Completion:
    """The completion over ``storage`` and ``upstream``, with the config's webhook secret and
    the id key derived from the first session key (so every instance names an upload alike)."""
    return Completion(
        storage,
        upstream,
        webhook_secret=config.webhook.secret.get_secret_value(),
        id_key=keys.derive(config.session.keys[0].get_secret_value(), ID_PURPOSE),
        webhook_timeout=config.webhook.timeout,
        metrics=metrics,
        clock=clock,
    )


class NotOpen(RuntimeError):
    """A service that opens with the app was asked for before the app started."""


class Services:
    """Everything the gateway's handlers use, for one app: built at once, the clients opened
    in ``opened``."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime],
        metrics: Metrics,
        s3_client: S3ClientFactory = open_s3_client,
    ) -> None:
        check_storage_keys(config)
        self.config = config
        self.clock = clock
        self.metrics = metrics
        session_keys = [k.get_secret_value() for k in config.session.keys]
        self.identity = IdentityService(config, upstream=lambda: self.upstream, clock=clock)
        self.signing_keys = SigningKeys(config.s3.secret_access_key.get_secret_value())
        self.tokens = TokenSealer(session_keys)
        self.owners = OwnerBook(session_keys)
        self._s3_client = s3_client
        self._upstream: Upstream | None = None
        self._storage: Storage | None = None
        self._completion: Completion | None = None

    @property
    def upstream(self) -> Upstream:
        """The app's upstream pool (open while the app runs)."""
        if self._upstream is None:
            raise NotOpen("the upstream opens when the app starts")
        return self._upstream

    @property
    def storage(self) -> Storage:
        """The uploads and storage buckets (open while the app runs)."""
        if self._storage is None:
            raise NotOpen("the S3 client opens when the app starts")
        return self._storage

    @property
    def completion(self) -> Completion:
        """The completion pipeline over storage and upstream (open while the app runs)."""
        if self._completion is None:
            raise NotOpen("the completion opens when the app starts")
        return self._completion

    @contextlib.asynccontextmanager
    async def opened(self) -> AsyncIterator[Services]:
        """Open the upstream pool and the S3 client, and the completion over them; close both
        after. The closed clients stay referenced: a late caller gets their own error."""
        async with contextlib.AsyncExitStack() as stack:
            # No aiohttp TraceConfig: it makes a Trace and fires every client signal per
            # request, a cost bench/PROFILE.md measures; the proxy times its own calls.
            upstream = await stack.enter_async_context(
                Upstream.open(self.config.upstream, observe=self.metrics.observe_upstream)
            )
            client = await stack.enter_async_context(self._s3_client(self.config.s3))
            storage = storage_for(self.config, client)
            self._upstream, self._storage = upstream, storage
            self._completion = completion_for(
                self.config, storage, upstream, metrics=self.metrics, clock=self.clock
            )
            yield self
