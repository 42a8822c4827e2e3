"""The bucket URL browsers upload to, and the ``host`` their SigV4 canonical requests name.

Pure: derived from ``S3Config`` alone. Browsers use ``public_endpoint_url`` when it is set (the
gateway's own client may reach S3 by another name), else ``endpoint_url``, else AWS's host.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import S3Config

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class BucketEndpoint:
    """``url``: where the browser sends its form POST and REST calls (no trailing slash).

    ``host``: the Host header those calls carry, which Fine Uploader signs as
    ``objectProperties.host`` in a v4 canonical request (``SigningContext.bucket_host``).
    """

    url: str
    host: str


def _aws_host(region: str) -> str:
    # us-east-1 keeps the legacy global name; Fine Uploader's bucket parser knows both forms.
    return "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def _virtual_host(style: str, scheme: str, hostname: str, bucket: str) -> bool:
    if style == "path":
        return False
    if style == "virtual":
        return True
    # auto, as botocore decides: an IP literal cannot carry a bucket label, and a dotted bucket
    # name breaks the certificate match of <bucket>.<host> over https.
    return not _is_ip(hostname) and not (scheme == "https" and "." in bucket)


def browser_bucket(s3: S3Config, bucket: str) -> BucketEndpoint:
    """The URL and host of ``bucket`` as browsers reach it.

    Virtual-host style (``scheme://<bucket>.<host>[:port]``) unless ``addressing_style`` says
    path (or auto finds virtual impossible): Fine Uploader's v4 chunked uploads need it, since
    their canonical URI never names the bucket.
    """
    base = s3.public_endpoint_url or s3.endpoint_url
    if base is None:
        scheme, hostname, port, path = "https", _aws_host(s3.region), None, ""
    else:
        parts = urlsplit(str(base))
        scheme, hostname, port = parts.scheme, parts.hostname or "", parts.port
        path = parts.path.rstrip("/")
    if not hostname:
        raise ValueError(f"the S3 endpoint {base!s} names no host")
    authority = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        authority = f"{authority}:{port}"
    if _virtual_host(s3.addressing_style, scheme, hostname, bucket):
        host = f"{bucket}.{authority}"
        return BucketEndpoint(url=f"{scheme}://{host}{path}", host=host)
    return BucketEndpoint(url=f"{scheme}://{authority}{path}/{bucket}", host=authority)
