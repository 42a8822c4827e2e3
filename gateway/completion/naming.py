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


def idempotency_key(
    id_key: bytes, route: str, user: str, upload_key: str, event: str = "completed"
) -> str:
    """32 hex chars naming one event of one upload of one user on one route, on every retry."""
    message = json.dumps([event, route, user, upload_key], ensure_ascii=True).encode()
    return hmac.new(id_key, message, hashlib.sha256).hexdigest()[:32]


def storage_uuid(id_key: bytes, idempotency: str) -> str:
    """The ``{uuid}`` of an upload's storage key: derived, so a retry names the same copy."""
    digest = hmac.new(id_key, b"storage-uuid\n" + idempotency.encode(), hashlib.sha256).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


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
