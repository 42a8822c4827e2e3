"""What the gateway stores on an upload for its completion to read back without a client.

The Uppy adapter writes these (gateway/protocols/uppy_metadata.py) and its completion reads them;
so does the sweep (gateway/completion/sweep.py), which completes uploads no client reported and
so has only the object to learn the route, file name and params from.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from ..jsonbody import parse_json
from ..problems import BadRequest
from .pipeline import META_FILENAME

# Names are lower case as S3 stores them. The params' name lacks the "gateway-" prefix so the
# completion copies it onto the stored copy, where a retry that finds the upload gone reads it
# again.
META_ROUTE = "gateway-route"
META_PARAMS = "uppy-params"


def read_object_metadata(metadata: Mapping[str, str], key: str) -> tuple[str, dict[str, str]]:
    """The client's file name and params the gateway stored on an object (defaults if absent)."""
    filename = unquote(metadata.get(META_FILENAME, "")) or key.rsplit("/", 1)[-1]
    try:
        # The shared bounded reader: whoever wrote the object may have put anything here.
        params = parse_json(unquote(metadata.get(META_PARAMS, "{}")).encode())
    except BadRequest:
        params = {}
    if not isinstance(params, dict):
        params = {}
    return filename, {str(k): str(v) for k, v in params.items()}
