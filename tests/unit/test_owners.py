"""gateway/completion/owners.py: owner records never make signing wait on an S3 that is down."""

from __future__ import annotations

import asyncio

import pytest

from gateway.completion import owners
from gateway.completion.owners import OwnerBook
from gateway.identity import Identity
from gateway.problems import StorageUnavailable
from tests.support.gateway import SESSION_KEY


class DownStorage:
    """The record calls of ``Storage`` (``owners.RecordStorage``) against an S3 that refuses
    every connection, counting the attempts."""

    storage_bucket = "st"

    def __init__(self) -> None:
        self.puts = 0

    async def get_record(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        raise StorageUnavailable("S3 is down", reason="s3-unavailable")

    async def put_record(
        self, bucket: str, key: str, data: bytes, *, if_match: str | None = None
    ) -> str:
        self.puts += 1
        raise StorageUnavailable("S3 is down", reason="s3-unavailable")

    async def list_keys(self, bucket: str, prefix: str, limit: int = 100) -> list[str]:
        return []


def user(name: str) -> Identity:
    return Identity(user=name, user_hash=f"{abs(hash(name)):016x}"[:16], key_prefix="p/")


async def test_a_failed_owner_write_quiets_the_next_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """With S3 down, one signature tries the owner record and fails (logged, not raised); the
    signatures after it, any user's, do not wait on S3 again until FAILURE_QUIET has passed,
    and then one tries again. (The fuzzed signing tests took over two minutes without this: each
    signature waited on an unreachable S3.)"""
    clock = [1000.0]
    monkeypatch.setattr(owners.time, "monotonic", lambda: clock[0])
    book = OwnerBook([SESSION_KEY])
    storage = DownStorage()

    for name in ("alice", "alice", "bob", "carol"):
        await book.note(storage, user(name), "photos")
    assert storage.puts == 1

    clock[0] += owners.FAILURE_QUIET + 0.1
    await book.note(storage, user("bob"), "photos")
    await book.note(storage, user("carol"), "photos")
    assert storage.puts == 2


class SlowStorage:
    """The record calls of ``Storage`` against an S3 whose PUT answers only when released,
    counting the PUTs."""

    storage_bucket = "st"

    def __init__(self) -> None:
        self.puts = 0
        self.release = asyncio.Event()

    async def get_record(self, bucket: str, key: str) -> tuple[bytes, str] | None:
        return None

    async def put_record(
        self, bucket: str, key: str, data: bytes, *, if_match: str | None = None
    ) -> str:
        self.puts += 1
        await self.release.wait()
        return '"etag"'

    async def list_keys(self, bucket: str, prefix: str, limit: int = 100) -> list[str]:
        return []


async def test_concurrent_first_signatures_of_a_user_write_the_record_once() -> None:
    """A new user's page signs several files at once (Fine Uploader: three by default): the
    signatures that come while the record's PUT is under way wait on that one PUT instead of
    sending their own, and the first waiter going away does not cancel it for the others."""
    book = OwnerBook([SESSION_KEY])
    storage = SlowStorage()
    alice = user("alice")
    first = asyncio.create_task(book.note(storage, alice, "photos"))
    others = [asyncio.create_task(book.note(storage, alice, "photos")) for _ in range(4)]
    await asyncio.sleep(0)
    first.cancel()  # the first signature's client went away mid-write
    storage.release.set()
    await asyncio.gather(*others)
    assert storage.puts == 1
    await book.note(storage, alice, "photos")
    assert storage.puts == 1  # remembered once written
    await book.note(storage, user("bob"), "photos")
    assert storage.puts == 2
