"""Names that stay the same on every retry: idempotency keys, storage keys, safe file names."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import unicodedata
import uuid
from datetime import datetime

# Placeholders whose value could differ between retries: they may only follow {uuid}, so the
# key up to {uuid} is known on every retry and a listing under it finds the stored copy.
_UNSTABLE = ("{filename}", "{ext}", "{date}")
_MAX_FILENAME_BYTES = 200
# Characters AWS's object key guidelines list as ones to avoid, plus both path separators.
_KEY_UNSAFE = frozenset('\\/{}^%`[]"<>~#|')
_EXT_RE = re.compile(r"[a-z0-9]{1,10}")


def etag_value(etag: str) -> str:
    """An ETag as S3 means it, however a client quoted it: no quotes, no weak marker, lower case.

    A multipart ETag keeps its ``-N`` (the number of parts): the same bytes uploaded in other
    parts are another object to S3, and so to the gateway.
    """
    return etag.strip().removeprefix("W/").strip().strip('"').lower()


def idempotency_key(
    id_key: bytes, route: str, user: str, upload_key: str, etag: str, event: str = "completed"
) -> str:
    """32 hex chars naming one event of one uploaded object (the upload key and its ETag).

    Every completion of that object (a client's retry, or anything else that sees the object in
    the uploads bucket, as S3 reports its ETag) gets the same id; other bytes written to the same
    key get another, so an app never takes them for a repeat of the first.
    """
    message = json.dumps(
        [event, route, user, upload_key, etag_value(etag)], ensure_ascii=True
    ).encode()
    return hmac.new(id_key, message, hashlib.sha256).hexdigest()[:32]


def _uuid_halves(
    id_key: bytes, route: str, user: str, upload_key: str, idempotency: str
) -> uuid.UUID:
    head = json.dumps([route, user, upload_key], ensure_ascii=True).encode()
    key_half = hmac.new(id_key, b"storage-uuid/key\n" + head, hashlib.sha256).digest()[:8]
    object_half = hmac.new(
        id_key, b"storage-uuid/object\n" + idempotency.encode(), hashlib.sha256
    ).digest()[:8]
    return uuid.UUID(bytes=key_half + object_half, version=4)


def storage_uuid(id_key: bytes, route: str, user: str, upload_key: str, idempotency: str) -> str:
    """The ``{uuid}`` of an object's storage key: derived, so every completion names one copy.

    Its first half (``storage_uuid_prefix``) comes from the upload key alone, so a retry that no
    longer knows the ETag (the upload is gone) finds the key's copies by listing under it; its
    second half comes from the object's id, so other bytes at the same upload key are stored
    under another key and never over a stored copy.
    """
    return str(_uuid_halves(id_key, route, user, upload_key, idempotency))


def storage_uuid_prefix(id_key: bytes, route: str, user: str, upload_key: str) -> str:
    """What every ``storage_uuid`` of this upload key begins with (its first 8 bytes, 19 chars)."""
    # The version nibble falls in the first 8 bytes and the variant bits after them, so the
    # first 19 characters of the text depend on the upload key alone.
    return str(_uuid_halves(id_key, route, user, upload_key, ""))[:19]


def safe_filename(name: str) -> str:
    """The client's file name fit for an object key: its base name, printable, at most 200 bytes."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(
        "_" if char in _KEY_UNSAFE else char
        for char in base
        if not unicodedata.category(char).startswith(("C", "Z")) or char == " "
    ).strip(" .")
    if not cleaned or cleaned in (".", ".."):
        return "file"
    stem, dot, ext = cleaned.rpartition(".")
    if not dot or len(ext.encode()) > 16:
        stem, ext = cleaned, ""
    suffix = "." + ext if ext else ""
    room = _MAX_FILENAME_BYTES - len(suffix.encode())
    stem = stem.encode()[:room].decode("utf-8", errors="ignore").rstrip(" .")
    return (stem or "file") + suffix


def extension(name: str) -> str:
    """``.jpg`` from ``Cat.JPG``: a short alphanumeric extension with its dot, or nothing."""
    _, dot, ext = safe_filename(name).rpartition(".")
    ext = ext.lower()
    return "." + ext if dot and _EXT_RE.fullmatch(ext) else ""


def stable_prefix(template: str, *, route: str, user_hash: str, uuid_text: str) -> str:
    """The storage key up to and including ``{uuid}``: known on every retry, unique per upload."""
    head = template.partition("{uuid}")[0]
    if "{uuid}" not in template or any(p in head for p in _UNSTABLE):
        raise ValueError(
            "storage_key must contain {uuid} before {filename}, {ext} and {date}: "
            "the gateway finds a stored copy again by the key up to its {uuid}"
        )
    return head.replace("{route}", route).replace("{user_hash}", user_hash) + uuid_text


def render_storage_key(
    template: str,
    *,
    route: str,
    user_hash: str,
    uuid_text: str,
    filename: str,
    now: datetime,
) -> str:
    """The stored copy's key: placeholders replaced literally (never ``str.format``)."""
    prefix = stable_prefix(template, route=route, user_hash=user_hash, uuid_text=uuid_text)
    tail = template.partition("{uuid}")[2]
    values = {
        "{route}": route,
        "{user_hash}": user_hash,
        "{uuid}": uuid_text,
        "{filename}": safe_filename(filename),
        "{ext}": extension(filename),
        "{date}": now.strftime("%Y-%m-%d"),
    }
    return prefix + re.sub(r"{[a-z_]+}", lambda m: values.get(m[0], m[0]), tail)
