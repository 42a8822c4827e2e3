"""The sweep: completion at least once, driven by the gateway, the client's call the fast path.

The uploads bucket holds only uploads not finished yet: the pipeline deletes an upload once the
app has answered it for good (2xx; or 4xx, its copy removed). So a listing of the uploads bucket
(past the gateway's ``.gateway/`` records) grows with the pending uploads, not with what was
ever stored. Each pass, every object older than ``completion.sweep_after`` is completed exactly
as a client's call would: the same checks, storage key, message id and ``Idempotency-Key``, with
``"trigger": "sweep"`` in the message.

Coordination between instances (and ``--workers``) is S3 itself: a lease record per upload at
``.gateway/leases/<sha256 of the key>`` in the uploads bucket, created If-None-Match ``*`` or
replaced If-Match its ETag, so of several sweeps one wins; a lease lasts ``completion.lease``
seconds, so a killed instance's upload is delivered again by another once it ends (at least
once). The record also carries the attempts and the time of the next, for the backoff.

A failed delivery (5xx, timeout, S3 failing) is retried with exponential backoff and jitter
until ``completion.give_up_after`` from the upload's LastModified; then it becomes a dead letter:
a record in the storage bucket (``.gateway/dead/``), next to the stored copy that holds its
bytes, listed by ``completions status`` and retried by ``completions retry --dead``; the upload
itself is removed only once that record is written. An upload whose owner or route cannot be
recovered (gateway/completion/owners.py) is left for the lifecycle rule and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from ..config import RESERVED_PREFIX, Config
from ..identity import Identity
from ..metrics import Metrics
from ..problems import GatewayError
from ..storage import Listed, RecordConflict, Storage, StoredObject
from .interfaces import CompletionRequest
from .naming import etag_value
from .objectmeta import META_ROUTE, read_object_metadata
from .owners import Owner, OwnerBook
from .pipeline import Completion

log = logging.getLogger("gateway.completion")

LEASES_PREFIX = RESERVED_PREFIX + "leases/"
DEAD_PREFIX = RESERVED_PREFIX + "dead/"
# The first key after every ".gateway/..." key in S3's byte order ("/" + 1 is "0").
_PAST_RECORDS = RESERVED_PREFIX.rstrip("/") + "0"
# Fine Uploader keeps the file name here (x-amz-meta-qqfilename, percent-encoded).
_FINEUPLOADER_NAME = "qqfilename"
# How long an owner lookup is kept: long for a found owner, short for none (its record may be
# written a moment later by a slow signing).
_OWNER_TTL = 600.0
_NO_OWNER_TTL = 30.0
UNKNOWN_ROUTE = "unknown"


def lease_key(upload_key: str) -> str:
    return LEASES_PREFIX + hashlib.sha256(upload_key.encode()).hexdigest()


def dead_key(upload_key: str) -> str:
    return DEAD_PREFIX + hashlib.sha256(upload_key.encode()).hexdigest()


def hash_pattern(key_prefix: str) -> re.Pattern[str]:
    """A pattern of the config's key prefix whose one group is the user hash."""
    head, _, tail = key_prefix.partition("{user_hash}")
    return re.compile(re.escape(head) + "([0-9a-f]{16})" + re.escape(tail))


def backoff(attempts: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``base`` up to ``cap``, with the
    upper half jittered, so instances that failed together do not retry together."""
    delay: float = min(cap, base * 2.0 ** max(attempts - 1, 0))
    return delay * (0.5 + rng() / 2)


@dataclass
class Lease:
    """The per-upload record: who delivers it until when, how often it failed, when next."""

    etag: str
    holder: str = ""
    until: float = 0.0
    attempts: int = 0
    next: float = 0.0
    record_etag: str | None = None  # the record's own ETag in S3, None while it does not exist

    def body(self, upload_key: str) -> bytes:
        fields = {
            "key": upload_key,
            "etag": self.etag,
            "holder": self.holder,
            "until": self.until,
            "attempts": self.attempts,
            "next": self.next,
            # S3 gives equal bodies equal ETags: a nonce makes every write a new version, so
            # If-Match on the old ETag tells two writers apart.
            "nonce": secrets.token_hex(8),
        }
        return json.dumps(fields, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes, record_etag: str) -> Lease | None:
        try:
            fields = json.loads(data)
            return cls(
                etag=str(fields["etag"]),
                holder=str(fields["holder"]),
                until=float(fields["until"]),
                attempts=int(fields["attempts"]),
                next=float(fields["next"]),
                record_etag=record_etag,
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class Pending:
    """One upload the sweep saw: its key, age, user hash and route (if known), and state."""

    key: str
    age: float
    user_hash: str | None
    route: str
    state: str  # waiting (for its client), due, leased, backoff, unowned, delivered, ...
    attempts: int = 0


@dataclass
class PassReport:
    """What one pass did, by outcome, and the uploads it left pending."""

    outcomes: dict[str, int] = field(default_factory=dict)
    pending: list[Pending] = field(default_factory=list)
    dead: int = 0

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Sweeper:
    """Completes what no client completed, retries what the app failed, keeps dead letters."""

    def __init__(
        self,
        config: Config,
        storage: Storage,
        completion: Completion,
        owners: OwnerBook,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._settings = config.completion
        self._storage = storage
        self._completion = completion
        self._owners = owners
        self._metrics = metrics
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rng = rng
        self._routes = {route.name: route for route in config.routes}
        self._hash_re = hash_pattern(config.identity.key_prefix)
        self._instance = secrets.token_hex(8)
        self._owner_cache: dict[str, tuple[float, list[Owner]]] = {}

    # ------------------------------------------------------------------ running in serve

    async def run(self) -> None:
        """Sweep every ``completion.interval`` seconds until cancelled; a failed pass is logged
        and the next one tries again (S3 or the app may be back by then)."""
        while True:
            # First wait: a process starting up has nothing of its own pending yet.
            await asyncio.sleep(self._settings.interval * (0.75 + self._rng() / 2))
            try:
                await self.sweep_once()
            except GatewayError as exc:
                log.warning("sweep_failed", extra={"reason": exc.reason})
            except Exception:  # a bug must not end the sweeping for the process's life
                log.exception("sweep_failed", extra={"reason": "internal"})

    # ------------------------------------------------------------------ one pass

    async def sweep_once(self, *, force: bool = False) -> PassReport:
        """One pass over the uploads bucket; ``force`` ignores backoff (``completions retry``)."""
        report = PassReport()
        delivered = 0
        async for listed in self.uploads():
            now = self._clock()
            age = (now - listed.last_modified).total_seconds()
            if age < self._settings.sweep_after:
                continue  # its client still has the fast path
            if delivered >= self._settings.batch:
                report.pending.append(Pending(listed.key, age, None, UNKNOWN_ROUTE, "due"))
                continue
            item = await self._handle(listed, age, now.timestamp(), force=force)
            if item.state in ("delivered", "rejected", "refused", "gone", "dead-letter"):
                delivered += 1
                report.add(item.state)
            else:
                report.add(item.state)
                report.pending.append(item)
        report.dead = len(await self.dead_keys())
        self._publish(report)
        return report

    async def uploads(self) -> AsyncIterator[Listed]:
        """Every object in the uploads bucket but the gateway's own records (one LIST request
        per 1000 pending uploads; the records are skipped with StartAfter, never paged)."""
        bucket = self._storage.uploads_bucket
        token: str | None = None
        start = ""
        while True:
            page, token = await self._storage.list_page(bucket, start_after=start, token=token)
            for item in page:
                if not item.key.startswith(RESERVED_PREFIX):
                    yield item
            if page and page[-1].key.startswith(RESERVED_PREFIX):
                token, start = None, _PAST_RECORDS  # past the records in one step
                continue
            if token is None:
                return

    async def _handle(self, listed: Listed, age: float, now: float, *, force: bool) -> Pending:
        item = Pending(listed.key, age, None, UNKNOWN_ROUTE, "unowned")
        match = self._hash_re.match(listed.key)
        if match is None:
            self._count_unowned(item, "no-user-hash")
            return item
        item.user_hash = match.group(1)
        owners = await self.owners(item.user_hash)
        if not owners:
            self._count_unowned(item, "no-owner-record")
            return item
        bucket = self._storage.uploads_bucket
        record = await self._storage.get_record(bucket, lease_key(listed.key))
        lease = Lease.parse(*record) if record is not None else None
        if lease is not None and etag_value(lease.etag) != etag_value(listed.etag):
            # Other bytes at the same key: a new upload, with attempts of its own.
            lease = Lease(listed.etag, record_etag=lease.record_etag)
        if lease is None:
            lease = Lease(listed.etag, record_etag=record[1] if record is not None else None)
        item.attempts = lease.attempts
        if lease.until > now and lease.holder != self._instance:
            item.state = "leased"  # another instance is delivering it right now
            return item
        if lease.next > now and not force:
            item.state = "backoff"
            return item
        upload = await self._storage.head(bucket, listed.key)
        if upload is None:
            item.state = "gone"  # its client (or another sweep) finished it meanwhile
            await self._drop_lease(listed.key)
            return item
        owner = self._choose(owners, upload)
        if owner is None:
            self._count_unowned(item, "route-unknown")
            return item
        item.route = owner.route
        lease.holder, lease.until = self._instance, now + self._settings.lease
        try:
            lease.record_etag = await self._storage.put_record(
                bucket, lease_key(listed.key), lease.body(listed.key), if_match=lease.record_etag
            )
        except RecordConflict:
            item.state = "leased"  # another sweep took it first
            return item
        return await self._deliver(item, listed, upload, owner, lease)

    async def _deliver(
        self, item: Pending, listed: Listed, upload: StoredObject, owner: Owner, lease: Lease
    ) -> Pending:
        route = self._routes[owner.route]
        identity = self.identity(owner)
        filename, params = _name_and_params(upload)
        attempt = lease.attempts + 1
        extra: dict[str, Any] = {
            "route": route.name,
            "user_hash": owner.user_hash,
            "attempt": attempt,
            "trigger": "sweep",
        }
        request = CompletionRequest(
            route=route,
            identity=identity,
            key=listed.key,
            filename=filename,
            params=params,
            etag=upload.etag,
            passed_headers={"X-Request-ID": f"sweep-{secrets.token_hex(8)}"},
            trigger="sweep",
            upload_only=True,
        )
        try:
            result = await self._completion.complete(request)
        except GatewayError as exc:
            if exc.status < 500:
                # Refused by a rule (the pipeline removed it), gone, or replaced meanwhile.
                item.state = "gone" if exc.status == 404 else "refused"
                log.info(
                    "sweep_delivery", extra={**extra, "outcome": item.state, "reason": exc.reason}
                )
                await self._drop_lease(listed.key)
                return item
            return await self._failed(item, listed, owner, lease, exc.reason, extra)
        item.state = "delivered" if 200 <= result.status < 300 else "rejected"
        log.info(
            "sweep_delivery",
            extra={**extra, "outcome": item.state, "upstream_status": result.status},
        )
        await self._drop_lease(listed.key)
        return item

    async def _failed(
        self,
        item: Pending,
        listed: Listed,
        owner: Owner,
        lease: Lease,
        reason: str,
        extra: dict[str, Any],
    ) -> Pending:
        """Schedule the next attempt, or (past give_up_after) make the upload a dead letter."""
        now = self._clock().timestamp()
        lease.attempts += 1
        item.attempts = lease.attempts
        if item.age >= self._settings.give_up_after and await self._bury(listed, owner, lease):
            item.state = "dead-letter"
            log.warning("sweep_delivery", extra={**extra, "outcome": item.state, "reason": reason})
            self._count(owner.route, "dead-letter")
            return item
        lease.holder, lease.until = "", 0.0
        lease.next = now + backoff(
            lease.attempts, self._settings.retry_base, self._settings.retry_max, self._rng
        )
        item.state = "retrying"
        log.warning("sweep_delivery", extra={**extra, "outcome": item.state, "reason": reason})
        with contextlib.suppress(GatewayError):  # the lease then just runs out
            lease.record_etag = await self._storage.put_record(
                self._storage.uploads_bucket,
                lease_key(listed.key),
                lease.body(listed.key),
                if_match=lease.record_etag,
            )
        return item

    async def _bury(self, listed: Listed, owner: Owner, lease: Lease) -> bool:
        """Record a dead letter next to its stored copy, then remove the upload; False (keep
        retrying) when no copy exists to hold its bytes: S3 itself kept failing."""
        route = self._routes[owner.route]
        identity = self.identity(owner)
        try:
            stored = await self._completion.find_stored(route, identity, listed.key)
            if stored is None:
                log.warning("sweep_no_copy_to_keep", extra={"route": route.name})
                return False
            record = {
                "upload_key": listed.key,
                "etag": etag_value(listed.etag),
                "route": route.name,
                "user_hash": owner.user_hash,
                "owner": self._owners.seal(identity, route.name).decode(),
                "stored_key": stored.key,
                "uploaded": listed.last_modified.astimezone(UTC).isoformat(),
                "attempts": lease.attempts,
            }
            body = json.dumps(record, separators=(",", ":")).encode()
            bucket = self._storage.storage_bucket
            with contextlib.suppress(RecordConflict):  # buried before, by another instance
                await self._storage.put_record(bucket, dead_key(listed.key), body)
            await self._storage.delete(self._storage.uploads_bucket, listed.key)
            await self._drop_lease(listed.key)
        except GatewayError as exc:
            log.warning("sweep_bury_failed", extra={"route": route.name, "reason": exc.reason})
            return False
        return True

    async def status(self) -> list[Pending]:
        """Every upload in the uploads bucket and where it stands; reads, never writes."""
        now = self._clock()
        found: list[Pending] = []
        async for listed in self.uploads():
            age = (now - listed.last_modified).total_seconds()
            item = Pending(listed.key, age, None, UNKNOWN_ROUTE, "waiting")
            found.append(item)
            match = self._hash_re.match(listed.key)
            if match is None:
                item.state = "unowned"
                continue
            item.user_hash = match.group(1)
            owners = await self.owners(item.user_hash)
            upload = await self._storage.head(self._storage.uploads_bucket, listed.key)
            owner = self._choose(owners, upload) if upload is not None else None
            if owner is None:
                item.state = "unowned"
                continue
            item.route = owner.route
            record = await self._storage.get_record(
                self._storage.uploads_bucket, lease_key(listed.key)
            )
            lease = Lease.parse(*record) if record is not None else None
            if lease is not None and etag_value(lease.etag) == etag_value(listed.etag):
                item.attempts = lease.attempts
                if lease.until > now.timestamp():
                    item.state = "leased"
                elif lease.attempts:
                    item.state = "retrying"
            if item.state == "waiting" and age >= self._settings.sweep_after:
                item.state = "due"
        return found

    # ------------------------------------------------------------------ dead letters

    async def dead_keys(self) -> list[str]:
        """The dead-letter records in the storage bucket (every page)."""
        keys: list[str] = []
        token: str | None = None
        while True:
            page, token = await self._storage.list_page(
                self._storage.storage_bucket, prefix=DEAD_PREFIX, token=token
            )
            keys += [item.key for item in page]
            if token is None:
                return keys

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead letter's record (its upload key, user hash, route, stored key...)."""
        letters = []
        for key in await self.dead_keys():
            record = await self._storage.get_record(self._storage.storage_bucket, key)
            if record is None:
                continue
            with contextlib.suppress(ValueError):
                letter = json.loads(record[0])
                if isinstance(letter, dict):
                    letters.append({**letter, "record": key})
        return letters

    async def retry_dead(self) -> dict[str, int]:
        """Deliver every dead letter once more: its record goes when the app answers for good."""
        outcomes: dict[str, int] = {}
        for letter in await self.dead_letters():
            outcome = await self._redeliver(letter)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes

    async def _redeliver(self, letter: Mapping[str, Any]) -> str:
        route = self._routes.get(str(letter.get("route")))
        user_hash = str(letter.get("user_hash"))
        owner = None
        if route is not None:
            owner = self._owners.open(str(letter.get("owner", "")).encode(), user_hash, route.name)
        if route is None or owner is None:
            return "unowned"
        request = CompletionRequest(
            route=route,
            identity=self.identity(owner),
            key=str(letter["upload_key"]),
            filename=str(letter["upload_key"]).rsplit("/", 1)[-1],
            etag=str(letter["etag"]),
            passed_headers={"X-Request-ID": f"sweep-{secrets.token_hex(8)}"},
            trigger="sweep",
        )
        extra = {"route": route.name, "user_hash": user_hash, "trigger": "sweep"}
        try:
            result = await self._completion.complete(request)
        except GatewayError as exc:
            log.warning(
                "dead_letter_retry", extra={**extra, "outcome": "failed", "reason": exc.reason}
            )
            if exc.status >= 500:
                return "failed"
            outcome = "gone"
        else:
            outcome = "delivered" if 200 <= result.status < 300 else "rejected"
            log.info(
                "dead_letter_retry",
                extra={**extra, "outcome": outcome, "upstream_status": result.status},
            )
        await self._storage.delete(self._storage.storage_bucket, str(letter["record"]))
        return outcome

    # ------------------------------------------------------------------ owners

    async def owners(self, user_hash: str) -> list[Owner]:
        """The owner records of a user hash (cached: one LIST and a GET per route, per hash)."""
        cached = self._owner_cache.get(user_hash)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = [
            o
            for o in await self._owners.owners(self._storage, user_hash)
            if o.route in self._routes
        ]
        ttl = _OWNER_TTL if found else _NO_OWNER_TTL
        if len(self._owner_cache) > 65536:
            self._owner_cache.clear()
        self._owner_cache[user_hash] = (time.monotonic() + ttl, found)
        return found

    def _choose(self, owners: list[Owner], upload: StoredObject) -> Owner | None:
        """The route of an upload: the one the gateway bound into its metadata (Uppy, api
        multipart), if this user was granted on it; else the user's only route; else none."""
        bound = upload.metadata.get(META_ROUTE)
        if bound is not None:
            return next((o for o in owners if o.route == bound), None)
        return owners[0] if len(owners) == 1 else None

    def identity(self, owner: Owner) -> Identity:
        prefix = self._config.identity.key_prefix.replace("{user_hash}", owner.user_hash)
        return Identity(owner.user, owner.user_hash, prefix)

    # ------------------------------------------------------------------ bookkeeping

    async def _drop_lease(self, upload_key: str) -> None:
        with contextlib.suppress(GatewayError):  # a lease left behind only runs out
            await self._storage.delete(self._storage.uploads_bucket, lease_key(upload_key))

    def _count_unowned(self, item: Pending, reason: str) -> None:
        item.state = "unowned"
        log.info("sweep_unowned", extra={"user_hash": item.user_hash, "reason": reason})
        self._count(UNKNOWN_ROUTE, "unowned")

    def _count(self, route: str, outcome: str) -> None:
        if self._metrics is not None:
            self._metrics.completions.labels(route, outcome, "sweep").inc()

    def _publish(self, report: PassReport) -> None:
        if self._metrics is None:
            return
        by_route: dict[str, list[float]] = {name: [] for name in [*self._routes, UNKNOWN_ROUTE]}
        for item in report.pending:
            by_route.setdefault(item.route, []).append(item.age)
        for route, ages in by_route.items():
            self._metrics.pending.labels(route).set(len(ages))
            self._metrics.oldest_pending.labels(route).set(max(ages, default=0.0))
        self._metrics.dead_letters.set(report.dead)


def _name_and_params(upload: StoredObject) -> tuple[str, dict[str, str]]:
    """The file name (and, for Uppy, the params) the client left on the object in S3."""
    meta = upload.metadata
    if _FINEUPLOADER_NAME in meta:
        return unquote(meta[_FINEUPLOADER_NAME]) or upload.key.rsplit("/", 1)[-1], {}
    return read_object_metadata(meta, upload.key)
