"""Owner records: whose upload an object is, and on which route, without a client.

An object key carries only the user's hash. So that the sweep can complete an upload its client
never reported, the gateway writes one small record per user and route to the storage bucket,
at ``.gateway/owners/<user hash>/<route>``, the first time a process signs or grants an upload
for that user on that route. The record holds the user id encrypted and authenticated (Fernet
under a key derived from ``session.keys`` for this purpose alone): the id is personal data, and
the storage bucket is read by the app's own tools. It is written If-None-Match ``*``, so
concurrent instances never fight, once per process even when a user's first signatures come
together, and remembered in memory, so a user's uploads after the first cost no S3 request at
all (Fine Uploader signs every chunk: never one request per signature).

The storage bucket, not the uploads bucket: the uploads bucket's lifecycle rule expires every
object, and a user's record must outlive any one upload. ``.gateway/`` is outside every storage
key (``{route}`` is a route name; a literal start is refused by the config) and every user's
key prefix (refused by the config too), so neither a client nor a stored copy can write there.

Rotation: the user hash is made with the first session key, and the record is encrypted with a
key derived from that same first key. A record therefore decrypts as long as the key that made
its user's hash is configured, which is exactly as long as a client could complete uploads under
that hash (after that the hash is another user's prefix). A record that does not decrypt, or
whose user does not hash to the hash it is filed under, names no owner: the upload is left for
the lifecycle rule and counted, never guessed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cryptography.fernet import InvalidToken

from .. import keys
from ..config import RESERVED_PREFIX
from ..identity import Identity
from ..problems import StorageUnavailable
from ..storage import RecordConflict

log = logging.getLogger("gateway.completion")

OWNER_PURPOSE = "upload-gateway/owner-record/v1"
OWNERS_PREFIX = RESERVED_PREFIX + "owners/"
# Users whose records this process knows are written: about 100 bytes each.
_NOTED_CACHE = 65536
# After a failed write, how long no signature waits on another: signing needs no S3, so an S3
# that is down or unreachable must not make every signature wait for its timeout.
FAILURE_QUIET = 10.0


class RecordStorage(Protocol):
    """The part of ``storage.Storage`` owner records use."""

    @property
    def storage_bucket(self) -> str: ...

    async def get_record(self, bucket: str, key: str) -> tuple[bytes, str] | None: ...

    async def put_record(
        self, bucket: str, key: str, body: bytes, *, if_match: str | None = ...
    ) -> str: ...

    async def list_keys(self, bucket: str, prefix: str, limit: int = ...) -> list[str]: ...


@dataclass(frozen=True)
class Owner:
    """The user an upload belongs to and a route it was granted on."""

    user: str
    user_hash: str
    route: str


class OwnerBook:
    """Writes owner records (once per user and route per process) and reads them back."""

    def __init__(self, session_keys: Sequence[str]) -> None:
        self._fernet = keys.fernet_for(session_keys, OWNER_PURPOSE)
        # Every configured key's hash key: a record filed under a hash the first key no longer
        # makes still proves its user by one of them.
        self._hash_keys = [keys.user_hash_key(k) for k in session_keys]
        self._noted: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Writes under way: a new user's page signs several files (and chunks) at once, and each
        # signature of theirs must wait on the one PUT, not send its own.
        self._writing: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._quiet_until = 0.0

    @staticmethod
    def record_key(user_hash: str, route: str) -> str:
        return f"{OWNERS_PREFIX}{user_hash}/{route}"

    def seal(self, identity: Identity, route: str) -> bytes:
        """The record's bytes: the user id, hash and route, encrypted and authenticated."""
        plain = json.dumps(
            {"v": 1, "user": identity.user, "hash": identity.user_hash, "route": route},
            separators=(",", ":"),
        ).encode()
        return self._fernet.encrypt(plain)

    def open(self, data: bytes, user_hash: str, route: str) -> Owner | None:
        """The owner a record names, if it is authentic and filed where it belongs; else None."""
        try:
            fields = json.loads(self._fernet.decrypt(data))
        except (InvalidToken, ValueError):
            return None
        if not isinstance(fields, dict):
            return None
        user = fields.get("user")
        if (
            not isinstance(user, str)
            or fields.get("hash") != user_hash
            or fields.get("route") != route
            or not any(keys.hash_user(k, user) == user_hash for k in self._hash_keys)
        ):
            return None
        return Owner(user, user_hash, route)

    async def note(self, storage: RecordStorage, identity: Identity, route: str) -> None:
        """Make sure this user's record for ``route`` exists: at most one S3 request per user
        and route per process, however many signatures ask at once. A failure is logged, not
        raised: the upload itself goes on, and the next signing tries again, once
        ``FAILURE_QUIET`` seconds have passed since the last failure of any (until then the
        sweep cannot name this user's uploads)."""
        noted = (identity.user_hash, route)
        if noted in self._noted or time.monotonic() < self._quiet_until:
            return
        writing = self._writing.get(noted)
        if writing is None:
            writing = asyncio.ensure_future(self._write(storage, identity, route))
            self._writing[noted] = writing
            writing.add_done_callback(lambda done: self._written(noted, done))
        # Shielded: a client that goes away must not cancel the write others are waiting on.
        await asyncio.shield(writing)

    def _written(self, noted: tuple[str, str], done: asyncio.Future[None]) -> None:
        self._writing.pop(noted, None)
        if not done.cancelled():
            done.exception()  # retrieved here when every waiter went away before the end

    async def _write(self, storage: RecordStorage, identity: Identity, route: str) -> None:
        noted = (identity.user_hash, route)
        try:
            await storage.put_record(
                storage.storage_bucket,
                self.record_key(identity.user_hash, route),
                self.seal(identity, route),
            )
        except RecordConflict:
            pass  # written before, by this or another instance
        except StorageUnavailable as exc:
            self._quiet_until = time.monotonic() + FAILURE_QUIET
            log.warning("owner_record_failed", extra={"route": route, "reason": exc.reason})
            return
        self._noted[noted] = None
        if len(self._noted) > _NOTED_CACHE:
            self._noted.popitem(last=False)

    async def owners(self, storage: RecordStorage, user_hash: str) -> list[Owner]:
        """Every authentic record of this user hash, one per route it was granted on."""
        found: list[Owner] = []
        prefix = f"{OWNERS_PREFIX}{user_hash}/"
        for key in await storage.list_keys(storage.storage_bucket, prefix, limit=100):
            route = key[len(prefix) :]
            record = await storage.get_record(storage.storage_bucket, key)
            if record is None:
                continue
            owner = self.open(record[0], user_hash, route)
            if owner is not None:
                found.append(owner)
        return found
