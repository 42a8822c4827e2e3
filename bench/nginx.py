"""nginx for the bench: a static upstream (the cheapest upstream there is) and a reverse proxy.

Both run with one worker process, so the nginx proxy is compared core for core with one gateway
process. Configs are written under the run's work directory; nothing of the system's nginx
configuration is read or changed.
"""

from __future__ import annotations

import getpass
import os
import shutil
from pathlib import Path

from bench import procs
from bench.upstream import LOGIN_USER, ONE_KIB, SIXTY_FOUR_KIB


def available() -> str | None:
    """The nginx binary, or None when nginx is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def _main_block(prefix: Path, name: str) -> str:
    # As root nginx drops its workers to "nobody", who could not read the run's private temp
    # directory: the workers keep the bench's own user instead.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    temp = prefix / f"{name}-temp"
    temp.mkdir(parents=True, exist_ok=True)
    return (
        f"{user}daemon off;\nworker_processes 1;\nworker_rlimit_nofile 16384;\n"
        f"pid {prefix / (name + '.pid')};\nerror_log {prefix / (name + '-error.log')} warn;\n"
        "events { worker_connections 8192; }\n"
        "http {\n"
        "  access_log off;\n"
        f"  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n"
        "  keepalive_requests 1000000;\n  keepalive_timeout 75s;\n"
        "  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n"
        "  default_type application/octet-stream;\n"
    )


def static_config(prefix: Path, port: int) -> Path:
    """The static upstream: /1k, /64k, /login (sets X-Upload-User) and the completion webhook."""
    root = prefix / "www"
    root.mkdir(parents=True, exist_ok=True)
    (root / "1k").write_bytes(ONE_KIB)
    (root / "64k").write_bytes(SIXTY_FOUR_KIB)
    text = _main_block(prefix, "nginx-upstream") + (
        "  server {\n"
        f"    listen 127.0.0.1:{port} backlog=4096;\n"
        f"    root {root};\n"
        f"    location = /login {{\n      add_header X-Upload-User {LOGIN_USER};\n"
        "      return 200 'logged in\\n';\n    }\n"
        "    location /internal/ {\n      default_type application/json;\n"
        "      return 200 '{\"stored\":true}';\n    }\n"
        "    location / { }\n"
        "  }\n}\n"
    )
    path = prefix / "nginx-upstream.conf"
    path.write_text(text)
    return path


def proxy_config(
    prefix: Path, port: int, upstream: str, *, name: str = "nginx-proxy", streaming: bool = False
) -> Path:
    """A keep-alive reverse proxy to ``upstream`` (HTTP/1.1 pool, buffers that hold 64 KiB).

    ``streaming``: set up for large bodies: uploads pass through unbuffered (nginx would
    otherwise spool a 1 GiB upload to a temporary file first), downloads through 2 MiB of
    memory buffers and never a temporary file; reads of 256 KiB.
    """
    host, upstream_port = procs.host_port(upstream)
    buffering = (
        "      proxy_request_buffering off;\n      client_body_buffer_size 256k;\n"
        "      proxy_buffer_size 64k;\n      proxy_buffers 8 256k;\n"
        "      proxy_busy_buffers_size 512k;\n      proxy_max_temp_file_size 0;\n"
        "      proxy_read_timeout 300s;\n      proxy_send_timeout 300s;\n"
        if streaming
        else "      proxy_buffer_size 16k;\n      proxy_buffers 16 16k;\n"
    )
    text = _main_block(prefix, name) + (
        f"  upstream app {{ server {host}:{upstream_port}; keepalive 128; }}\n"
        "  server {\n"
        f"    listen 127.0.0.1:{port} backlog=4096;\n"
        "    client_max_body_size 0;\n"
        "    location / {\n"
        "      proxy_pass http://app;\n"
        "      proxy_http_version 1.1;\n"
        '      proxy_set_header Connection "";\n'
        "      proxy_set_header Host $http_host;\n"
        "      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
        f"{buffering}"
        "    }\n  }\n}\n"
    )
    path = prefix / f"{name}.conf"
    path.write_text(text)
    return path


def start(binary: str, name: str, config: Path, port: int, logs: Path) -> procs.Server:
    """Run nginx in the foreground on ``config``; polled on ``/1k`` until it answers."""
    return procs.start(
        name,
        [binary, "-e", "stderr", "-p", str(config.parent), "-c", str(config)],
        url=f"http://127.0.0.1:{port}",
        logs=logs,
        ready_path="/1k",
        ready_status=200,
    )
