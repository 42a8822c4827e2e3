"""What the Uppy adapter stores on an upload (route, file name, Uppy's meta) and reads back."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ..completion import META_FILENAME

# The object metadata written on the upload, and its reader, live with the completion (the sweep
# reads them back without a client): gateway/completion/objectmeta.py.
from ..completion.objectmeta import META_PARAMS, META_ROUTE, read_object_metadata
from ..config import RouteConfig
from ..problems import BadRequest

__all__ = [
    "META_PARAMS",
    "META_ROUTE",
    "object_metadata",
    "query_metadata",
    "read_object_metadata",
    "uppy_params",
]

# Uppy adds these to every file's meta; the completion message carries them as filename and type.
_UPPY_META = frozenset({"name", "type"})
_MAX_META_ENTRIES = 32
_META_QUERY_RE = re.compile(r"metadata\[([^\[\]]{1,128})\]")


def uppy_params(metadata: Mapping[str, Any]) -> dict[str, str]:
    """Uppy's file meta as the completion's params: scalar values as text, Uppy's own dropped."""
    params: dict[str, str] = {}
    for name, value in metadata.items():
        if name in _UPPY_META or value is None:
            continue
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, str | int | float):
            params[name] = str(value)
        else:
            raise BadRequest(f"metadata {name!r} is not a scalar", reason="metadata-invalid")
    if len(params) > _MAX_META_ENTRIES:
        raise BadRequest("too many metadata entries", reason="metadata-invalid")
    return params


def object_metadata(route: RouteConfig, filename: str, params: dict[str, str]) -> dict[str, str]:
    """What the gateway stores on the object, percent-encoded: S3 metadata is ASCII only."""
    meta = {META_ROUTE: route.name, META_FILENAME: quote(filename, safe="")}
    if params:
        encoded = json.dumps(params, separators=(",", ":"), ensure_ascii=False)
        meta[META_PARAMS] = quote(encoded, safe="")
    return meta


def query_metadata(query: Mapping[str, str]) -> dict[str, str]:
    """The ``metadata[name]=value`` pairs of a query, as Companion's ``GET /s3/params`` sends."""
    metadata: dict[str, str] = {}
    for name, value in query.items():
        match = _META_QUERY_RE.fullmatch(name)
        if match:
            metadata[match.group(1)] = value
    return metadata
