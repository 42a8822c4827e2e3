"""The completion pipeline every protocol shares: verify, copy, notify, clean up (docs/http.md).

1. The object must be in the uploads bucket under the user's prefix, within ``max_size``, with
   a declared and a sniffed content type the route allows. An object that breaks a rule can
   never complete, so it is removed at once rather than left for the lifecycle rule.
2. It is copied into the storage bucket and the copy checked.
3. The upstream gets a signed ``upload.completed`` message, with an ``Idempotency-Key`` that is
   the same for every completion of the same uploaded object (upload key and ETag), and another
   for other bytes written to the same key, which are a new upload stored under a new key.
4. A 2xx is relayed; a 4xx is relayed and the stored copy removed; only then is the original
   removed. A failure (5xx, timeout, unreachable) is a 502/504 and leaves everything where it
   is: the upload pending in the uploads bucket, where the sweep (``sweep.py``) finds it.

No state is kept besides S3: a retry recognises its own earlier work from the stored copy's
metadata, found by listing the storage key up to its ``{uuid}``, which is derived from the
upload key (first half) and the idempotency key (second half); a retry that no longer knows the
ETag (the upload is gone) lists under the first half. So a process killed anywhere in the
pipeline ends, after a retry, with exactly one stored copy of the object, the stored copy's key
never depends on what a retry says (file name, date), and a stored copy is never written over.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .naming import (
    etag_value,
    extension,
    idempotency_key,
    render_storage_key,
    safe_filename,
    stable_prefix,
    storage_uuid,
    storage_uuid_prefix,
)

if TYPE_CHECKING:
    from .checks import check_upload
    from .interfaces import (
        CompletionRequest,
        CompletionResult,
        CompletionStorage,
        CompletionUpstream,
    )
    from .pipeline import (
        ID_PURPOSE,
        META_ETAG,
        META_FILENAME,
        META_ID,
        META_SOURCE,
        META_STORED_AT,
        Completion,
        check_own_key,
    )

# The pipeline's names load on first use, so that importing the pure ``completion.naming``
# does not import S3's client and the config models through this package.
_LAZY = {
    "check_upload": "checks",
    "CompletionRequest": "interfaces",
    "CompletionResult": "interfaces",
    "CompletionStorage": "interfaces",
    "CompletionUpstream": "interfaces",
    "ID_PURPOSE": "pipeline",
    "META_ETAG": "pipeline",
    "META_FILENAME": "pipeline",
    "META_ID": "pipeline",
    "META_SOURCE": "pipeline",
    "META_STORED_AT": "pipeline",
    "Completion": "pipeline",
    "check_own_key": "pipeline",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ID_PURPOSE",
    "META_ETAG",
    "META_FILENAME",
    "META_ID",
    "META_SOURCE",
    "META_STORED_AT",
    "Completion",
    "CompletionRequest",
    "CompletionResult",
    "CompletionStorage",
    "CompletionUpstream",
    "check_own_key",
    "check_upload",
    "etag_value",
    "extension",
    "idempotency_key",
    "render_storage_key",
    "safe_filename",
    "stable_prefix",
    "storage_uuid",
    "storage_uuid_prefix",
]
