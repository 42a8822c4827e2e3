"""What the gateway may sign: POST policies, REST strings of chunked uploads, declared files.

Pure functions over plain values; the clock comes in as ``now``. Each refusal raises
``PolicyRefused`` (400) with its own kebab-case reason. docs/protocols/fineuploader.md states
them, as checked against the payloads Fine Uploader 5.16 sends.
Decisions the issue left open:

- Active content types (HTML, MHTML, XHTML, SVG, any XML, JavaScript, CSS, XSL, Flash, and the
  types browsers sniff, such as ``application/unknown``: ``media``) are allowed only when the
  route lists them literally: ``*/*``, ``text/*`` and ``image/*`` never reach them.
- A policy may carry ``success_action_status`` (``"200"``) or ``success_action_redirect``
  (the route's blank page) or neither (S3 answers 204), but never both.
- A missing ``Content-Type`` (the browser knew no type) is allowed: S3 stores an inert
  ``binary/octet-stream``, and the completion checks the stored object's type anyway.
- Storage classes: STANDARD and REDUCED_REDUNDANCY only (what Fine Uploader sends); the
  infrequent-access classes bill 30-day minimums for objects the uploads bucket keeps a day.
"""

from __future__ import annotations

from .context import MAX_PARTS, SigningContext
from .media import ACTIVE_TYPES, check_declared_file, content_type_allowed
from .object_keys import check_key
from .policy import MAX_HEADER_VALUE_BYTES, tighten_policy
from .rest import (
    COMPLETE_CONTENT_TYPES,
    MAX_REST_LENGTH,
    Operation,
    check_rest_v2,
    check_rest_v4,
    escape_key,
)
from .values import ALGORITHM, MAX_SKEW, SSE_VALUES, STORAGE_CLASSES

__all__ = [
    "ACTIVE_TYPES",
    "ALGORITHM",
    "COMPLETE_CONTENT_TYPES",
    "MAX_HEADER_VALUE_BYTES",
    "MAX_PARTS",
    "MAX_REST_LENGTH",
    "MAX_SKEW",
    "SSE_VALUES",
    "STORAGE_CLASSES",
    "Operation",
    "SigningContext",
    "check_declared_file",
    "check_key",
    "check_rest_v2",
    "check_rest_v4",
    "content_type_allowed",
    "escape_key",
    "tighten_policy",
]
