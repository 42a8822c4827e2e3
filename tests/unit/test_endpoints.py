"""The bucket URL and signed host browsers use, for each endpoint and addressing style."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import S3Config
from gateway.endpoints import BucketEndpoint, browser_bucket


def _s3(**overrides: Any) -> S3Config:
    base: dict[str, Any] = {
        "access_key_id": "AK",
        "secret_access_key": "secret",
        "uploads_bucket": "my-uploads",
        "storage_bucket": "my-storage",
    }
    return S3Config.model_validate({**base, **overrides})


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {},
            BucketEndpoint("https://my-uploads.s3.amazonaws.com", "my-uploads.s3.amazonaws.com"),
        ),
        (
            {"region": "eu-west-1"},
            BucketEndpoint(
                "https://my-uploads.s3.eu-west-1.amazonaws.com",
                "my-uploads.s3.eu-west-1.amazonaws.com",
            ),
        ),
        (
            {"region": "eu-west-1", "addressing_style": "path"},
            BucketEndpoint(
                "https://s3.eu-west-1.amazonaws.com/my-uploads", "s3.eu-west-1.amazonaws.com"
            ),
        ),
        (
            {"endpoint_url": "http://localhost:9000"},
            BucketEndpoint("http://my-uploads.localhost:9000", "my-uploads.localhost:9000"),
        ),
        (
            {"endpoint_url": "http://127.0.0.1:9000", "addressing_style": "path"},
            BucketEndpoint("http://127.0.0.1:9000/my-uploads", "127.0.0.1:9000"),
        ),
        (
            # auto: an IP literal cannot carry the bucket as a label.
            {"endpoint_url": "http://127.0.0.1:9000"},
            BucketEndpoint("http://127.0.0.1:9000/my-uploads", "127.0.0.1:9000"),
        ),
        (
            # Browsers use the public URL; the gateway's own client keeps endpoint_url.
            {
                "endpoint_url": "http://127.0.0.1:9000",
                "public_endpoint_url": "https://files.example.com",
            },
            BucketEndpoint("https://my-uploads.files.example.com", "my-uploads.files.example.com"),
        ),
        (
            # Default ports are not part of the Host header the browser sends.
            {"endpoint_url": "https://minio.example.com:443", "addressing_style": "virtual"},
            BucketEndpoint("https://my-uploads.minio.example.com", "my-uploads.minio.example.com"),
        ),
    ],
)
def test_browser_bucket(overrides: dict[str, Any], expected: BucketEndpoint) -> None:
    """The URL and Host the page gets match what the browser will really send."""
    assert browser_bucket(_s3(**overrides), "my-uploads") == expected


def test_dotted_bucket_over_https_uses_path_style_on_auto() -> None:
    """A dotted bucket name would break the TLS name of <bucket>.<host>: auto picks path style."""
    s3 = _s3(uploads_bucket="my.uploads")
    assert browser_bucket(s3, "my.uploads") == BucketEndpoint(
        "https://s3.amazonaws.com/my.uploads", "s3.amazonaws.com"
    )


def test_virtual_forced_on_dotted_bucket() -> None:
    """An explicit virtual style is obeyed (the operator owns a matching certificate)."""
    s3 = _s3(uploads_bucket="my.uploads", addressing_style="virtual")
    assert browser_bucket(s3, "my.uploads").url == "https://my.uploads.s3.amazonaws.com"
