"""Uppy Companion (``@uppy/companion`` from npm, installed into bench/node_modules) as the signing
comparison: its standalone server with dummy credentials. ``GET /s3/params`` builds a presigned
POST (``createPresignedPost`` of the AWS SDK), which needs no network.
"""

from __future__ import annotations

import http.client
import json
import shutil
from pathlib import Path

from bench import procs

BENCH_DIR = Path(__file__).resolve().parent
ENTRY = BENCH_DIR / "node_modules" / "@uppy" / "companion" / "bin" / "companion"
PARAMS_PATH = "/s3/params?filename=photo.jpg&type=image%2Fjpeg"


def available() -> str | None:
    """Why Companion cannot run here, or None when it can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not ENTRY.exists():
        return "bench/node_modules has no @uppy/companion (run bench/run.sh, which runs npm ci)"
    return None


def version() -> str:
    package = ENTRY.parent.parent / "package.json"
    return str(json.loads(package.read_text())["version"])


def start(workdir: Path, logs: Path) -> procs.Server:
    """Companion's standalone server on a free loopback port, with throwaway secrets."""
    port = procs.free_port()
    datadir = workdir / "companion-data"
    datadir.mkdir(exist_ok=True)
    env = procs.bench_env(
        {
            "NODE_ENV": "production",
            "COMPANION_PORT": str(port),
            "COMPANION_DOMAIN": f"127.0.0.1:{port}",
            "COMPANION_PROTOCOL": "http",
            "COMPANION_DATADIR": str(datadir),
            "COMPANION_SECRET": "bench-companion-secret",
            "COMPANION_PREAUTH_SECRET": "bench-companion-preauth-secret",
            # Required by its config check; never contacted (no remote-URL uploads here).
            "COMPANION_UPLOAD_URLS": "http://127.0.0.1:1/",
            "COMPANION_CLIENT_ORIGINS": "true",
            "COMPANION_AWS_KEY": "AKIDBENCHCOMPANION",
            "COMPANION_AWS_SECRET": "bench-companion-secret-access-key",
            "COMPANION_AWS_BUCKET": "bench-uploads",
            "COMPANION_AWS_REGION": "us-east-1",
        }
    )
    return procs.start(
        "companion",
        ["node", str(ENTRY)],
        url=f"http://127.0.0.1:{port}",
        logs=logs,
        env=env,
        cwd=workdir,
        ready_path=PARAMS_PATH,
        ready_status=200,
    )


def session_cookie(url: str) -> str:
    """Companion's own session cookie, which a browser would send back on every request."""
    host, port = procs.host_port(url)
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", PARAMS_PATH)
    response = conn.getresponse()
    response.read()
    conn.close()
    cookies = [c.split(";", 1)[0] for c in response.headers.get_all("Set-Cookie") or []]
    return "; ".join(cookies)
