"""The pure parts of Uppy's route: reading the metadata stored on an object
(gateway/protocols/uppy_metadata.py); the route itself is tested through the real gateway in
tests/integration/test_uppy.py."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from gateway.protocols.uppy_metadata import read_object_metadata


@pytest.mark.parametrize("depth", [7, 1000])
def test_params_stored_on_an_object_are_read_through_the_bounded_reader(depth: int) -> None:
    """Whoever wrote the object (another route's policy lets a user set any x-amz-meta-*) may
    have put nested JSON in uppy-params: it is read as no params, never a RecursionError (a
    500); 1,000 levels fit in S3's 2 KB of metadata."""
    stored = {"uppy-params": quote("[" * depth + "]" * depth, safe=""), "gateway-filename": "a"}
    assert read_object_metadata(stored, "prefix/key.bin") == ("a", {})
