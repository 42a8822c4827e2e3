"""gateway.completion's pure helpers: idempotency keys, ETag spellings, storage uuids, safe file
names and storage-key templates.

The completion against real S3 servers and the upstream app:
tests/integration/test_completion.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from gateway import keys
from gateway.completion import (
    ID_PURPOSE,
    etag_value,
    idempotency_key,
    render_storage_key,
    safe_filename,
    stable_prefix,
    storage_uuid,
    storage_uuid_prefix,
)
from tests.support.gateway import SESSION_KEY

ID_KEY = keys.derive(SESSION_KEY, ID_PURPOSE)


def test_the_idempotency_key_is_stable_and_specific() -> None:
    """Same route, user, key and ETag: the same id every time; any difference: another id."""
    etag = '"9b2cf535f27731c974343645a3985328"'
    base = idempotency_key(ID_KEY, "photos", "alice", "k/1.png", etag)
    assert base == idempotency_key(ID_KEY, "photos", "alice", "k/1.png", etag)
    assert len(base) == 32 and int(base, 16) >= 0
    others = {
        idempotency_key(ID_KEY, "docs", "alice", "k/1.png", etag),
        idempotency_key(ID_KEY, "photos", "bob", "k/1.png", etag),
        idempotency_key(ID_KEY, "photos", "alice", "k/2.png", etag),
        idempotency_key(ID_KEY, "photos", "alice", "k/1.png", '"9b2cf535f27731c974343645a3985329"'),
        idempotency_key(keys.derive(SESSION_KEY, "other"), "photos", "alice", "k/1.png", etag),
        idempotency_key(ID_KEY, "photos", "alice", "k/1.png", etag, "deleted"),
    }
    assert base not in others and len(others) == 6


@pytest.mark.parametrize(
    "spelling",
    [
        "9b2cf535f27731c974343645a3985328",
        '"9b2cf535f27731c974343645a3985328"',
        ' W/"9B2CF535F27731C974343645A3985328" ',
    ],
)
def test_an_etag_names_one_object_however_it_is_quoted(spelling: str) -> None:
    """Quotes, a weak marker, case and spaces are how a client passes an ETag on, not another
    object: the id is the one S3's own quoted ETag gives (what a sweep of the bucket sees)."""
    s3_says = '"9b2cf535f27731c974343645a3985328"'
    assert etag_value(spelling) == "9b2cf535f27731c974343645a3985328"
    assert idempotency_key(ID_KEY, "photos", "alice", "k/1.png", spelling) == idempotency_key(
        ID_KEY, "photos", "alice", "k/1.png", s3_says
    )


def test_a_multipart_etag_keeps_its_part_count() -> None:
    """``md5-N`` is another object than ``md5`` or ``md5-M``: the same bytes in other parts."""
    ids = {
        idempotency_key(ID_KEY, "photos", "alice", "k/1.png", etag)
        for etag in ('"d41d8cd98f00b204e9800998ecf8427e"', '"d41d8cd98f00b204e9800998ecf8427e-2"',
                     '"d41d8cd98f00b204e9800998ecf8427e-3"')
    }  # fmt: skip
    assert len(ids) == 3


def test_the_storage_uuid_of_an_object_begins_with_its_upload_keys_prefix() -> None:
    """Two objects written at one upload key share the first half of their {uuid} (a retry
    lists the key's copies under it) and differ in the rest (neither is stored over the other);
    another upload key has another first half."""
    first = storage_uuid(ID_KEY, "photos", "alice", "k/1.png", "a" * 32)
    second = storage_uuid(ID_KEY, "photos", "alice", "k/1.png", "b" * 32)
    prefix = storage_uuid_prefix(ID_KEY, "photos", "alice", "k/1.png")
    assert first.startswith(prefix) and second.startswith(prefix) and first != second
    assert not storage_uuid_prefix(ID_KEY, "photos", "alice", "k/2.png").startswith(prefix)
    assert str(uuid.UUID(first)) == first and uuid.UUID(first).version == 4


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cat.png", "cat.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("..", "file"),
        ("", "file"),
        ("\x00\x1b[31mred\n.txt", "_31mred.txt"),
        ('a"b<c>#d.txt', "a_b_c__d.txt"),
        ("my photo (1).jpg", "my photo (1).jpg"),
        ("x" * 300 + ".jpeg", "x" * 195 + ".jpeg"),
        ("é" * 150 + ".png", "é" * 98 + ".png"),
    ],
)
def test_file_names_are_made_safe_for_object_keys(name: str, expected: str) -> None:
    """No path, control or key-unsafe characters, at most 200 bytes, the extension kept."""
    assert safe_filename(name) == expected
    assert len(safe_filename(name).encode()) <= 200


def test_storage_keys_render_placeholders_literally() -> None:
    """Each placeholder is replaced; braces in a file name are not re-expanded."""
    key = render_storage_key(
        "{route}/{user_hash}/{uuid}/{date}/{filename}{ext}",
        route="photos",
        user_hash="abcd",
        uuid_text="u-1",
        filename="{route}.JPG",
        now=datetime(2026, 1, 2, tzinfo=UTC),
    )
    assert key == "photos/abcd/u-1/2026-01-02/_route_.JPG.jpg"


@pytest.mark.parametrize(
    "template", ["{route}/{date}/{user_hash}/{uuid}/{filename}", "{route}/{filename}-{uuid}"]
)
def test_a_storage_key_that_varies_before_its_uuid_is_refused(template: str) -> None:
    """A retry could not find a copy whose key varies before {uuid}: such templates are refused."""
    with pytest.raises(ValueError, match=r"\{uuid\} before"):
        stable_prefix(template, route="r", user_hash="h", uuid_text="u")
