"""Object keys: under the user's prefix, a plain path of bounded length."""

from __future__ import annotations

import re

from .context import refuse

# Control characters (Cc), surrogates (Cs, not encodable) and the line and paragraph separators
# (Zl, Zp) break logs and headers; a backslash becomes a path separator on the Windows side of
# some consumers. Unicode's stability policy fixes these categories' members, so one C-level
# search replaces a per-character lookup (tests/unit/test_rules.py compares the two over every code
# point).
_BAD_KEY_CHARS = re.compile(r"[\\\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def check_key(key: str, prefix: str, *, max_bytes: int = 1024) -> None:
    """Refuse an object key outside ``prefix`` (which ends with ``/``) or not a plain path."""
    if not prefix.endswith("/"):
        raise ValueError("a key prefix must end with '/'")
    if _BAD_KEY_CHARS.search(key) is not None:
        refuse("key-bad-character", "The key contains a control character or a backslash.")
    if len(key.encode("utf-8")) > max_bytes:
        refuse("key-too-long", f"The key is longer than {max_bytes} bytes.")
    # The prefix ends with "/", so user "admin" can never write under "admin2/".
    if not key.startswith(prefix):
        refuse("key-outside-prefix", "The key is outside this user's prefix.")
    for segment in key[len(prefix) :].split("/"):
        if segment == "":
            refuse("key-empty-segment", "The key has an empty path segment.")
        if segment in (".", ".."):
            refuse("key-dot-segment", "The key has a '.' or '..' segment.")
