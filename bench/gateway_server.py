"""The gateway under test, as it runs in production: ``python -m gateway serve -c <config>``.

The config has every feature on: three upload routes (Fine Uploader, Uppy, API), sessions,
trusted proxies, metrics and JSON access logs. Secrets are throwaway literals in a YAML file in
the run's private work directory.
"""

from __future__ import annotations

import http.client
import secrets
import sys
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from cryptography.fernet import Fernet

from bench import procs

ACCESS_KEY_ID = "AKIDBENCHGATEWAY"
SECRET_ACCESS_KEY = "bench-secret-access-key-not-a-real-one"  # noqa: S105 - throwaway
REGION = "us-east-1"
UPLOADS_BUCKET = "bench-uploads"
STORAGE_BUCKET = "bench-storage"
FINEUPLOADER_PATH = "/uploads/photos"
UPPY_PATH = "/uploads/uppy"
API_PATH = "/uploads/api"


def config_tree(*, port: int, upstream: str, s3_endpoint: str) -> dict[str, Any]:
    """A valid gateway config for the bench's servers, with literal throwaway secrets.

    Browsers are told a virtual-host bucket URL (``public_endpoint_url`` on a name, not an IP),
    which Fine Uploader's v4 chunked uploads need; the gateway itself reaches moto by IP.
    """
    s3_port = procs.host_port(s3_endpoint)[1]
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "trusted_proxies": ["127.0.0.0/8"],
        "upstream": {"url": upstream, "connect_timeout": 5, "read_timeout": 120},
        "session": {"keys": [Fernet.generate_key().decode()], "secure": False},
        "identity": {},
        "s3": {
            "region": REGION,
            "endpoint_url": s3_endpoint,
            "public_endpoint_url": f"http://s3.localhost:{s3_port}",
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "uploads_bucket": UPLOADS_BUCKET,
            "storage_bucket": STORAGE_BUCKET,
        },
        "webhook": {"secret": secrets.token_urlsafe(32), "timeout": 30},
        # The sweep on, as in production, but its passes (a LIST every ~30 s by default) an hour
        # apart: the completion case counts the client's fast path alone, and a pass landing in
        # one of its rounds would add S3 calls no upload made.
        "completion": {"interval": 3600},
        "routes": [
            {
                "name": "photos",
                "protocol": "fineuploader",
                "path": FINEUPLOADER_PATH,
                "max_size": "20MiB",
                "content_types": ["image/*"],
                "forward": "/internal/uploads/photos",
            },
            {
                "name": "uppy",
                "protocol": "uppy",
                "path": UPPY_PATH,
                "max_size": "20MiB",
                "content_types": ["image/*"],
                "forward": "/internal/uploads/uppy",
            },
            {
                "name": "files",
                "protocol": "api",
                "path": API_PATH,
                "max_size": "5GiB",
                "forward": "/internal/uploads/files",
            },
        ],
    }


def start(
    name: str,
    *,
    workdir: Path,
    logs: Path,
    upstream: str,
    s3_endpoint: str,
    workers: int = 1,
    wrapper: tuple[str, ...] = (),
) -> procs.Server:
    """Write the config and run ``python -m gateway serve``; polled on ``/-/healthz``."""
    port = procs.free_port()
    config_path = workdir / f"{name}.yaml"
    tree = config_tree(port=port, upstream=upstream, s3_endpoint=s3_endpoint)
    config_path.write_text(yaml.safe_dump(tree, sort_keys=False))
    config_path.chmod(0o600)
    argv = [*wrapper, sys.executable, "-m", "gateway", "serve", "-c", str(config_path)]
    if workers != 1:
        argv += ["--workers", str(workers)]
    return procs.start(
        name,
        argv,
        url=f"http://127.0.0.1:{port}",
        logs=logs,
        env=procs.bench_env(),
        ready_path="/-/healthz",
        ready_status=200,
    )


@dataclass(frozen=True)
class Login:
    """A logged-in browser's cookies: the gateway's session and the key-prefix cookie."""

    cookie_header: str
    key_prefix: str


def login(url: str, user: str | None = None) -> Login:
    """Log in through the gateway: the upstream's ``/login`` answers ``X-Upload-User: bench``
    (or ``user``, which only bench/upstream.py honours, not the nginx upstream)."""
    host, port = procs.host_port(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", "/login" if user is None else f"/login?user={user}")
    response = conn.getresponse()
    response.read()
    conn.close()
    jar: SimpleCookie = SimpleCookie()
    for value in response.headers.get_all("Set-Cookie") or []:
        jar.load(value)
    if response.status != 200 or "upload_prefix" not in jar:
        raise RuntimeError(f"login through the gateway failed: {response.status}, {dict(jar)}")
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in jar.items())
    return Login(cookie_header=cookie, key_prefix=unquote(jar["upload_prefix"].value))
