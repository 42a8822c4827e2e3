"""``upload-gateway demo``: moto's S3, the demo app and the gateway in one process, on loopback.

No cloud account, no Docker, no environment: the session key and webhook secret are made fresh
in memory, the buckets are created by the code behind ``s3 setup``, and everything stops on
Ctrl-C. The config is built as an object, exactly as ``serve`` would load it from YAML. The
terminal gets a banner and a few readable lines (gateway/demo/console.py); the JSON log goes to
a file the banner names.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography.fernet import Fernet

from ..app import create_app
from ..buckets import BucketNames, setup_buckets
from ..config import Config, MiB, S3Config
from ..logs import AccessLogger, configure, flush_access_log
from ..protocols import ADAPTERS
from ..server import start_runner
from ..storage import open_s3_client
from . import console
from .app import AUTH_PATH, make_demo_app
from .assets import INSTALL_HINT, Assets, locate
from .pages import describe_limits
from .s3 import LOOPBACK, MotoMissing, embedded_s3
from .state import CLIENT_NAMES, DemoSettings, UploadRoute
from .views import upload_command

# moto checks no signatures, but the gateway signs with these as it would with real ones.
ACCESS_KEY_ID = "demo-access-key-id"
SECRET_ACCESS_KEY = "demo-secret-access-key"  # noqa: S105 - a dummy for the in-memory S3
BUCKETS = BucketNames(uploads="demo-uploads", storage="demo-storage")
REGION = "us-east-1"
# Requests still running when Ctrl-C comes get this long to finish.
SHUTDOWN_TIMEOUT = 2.0

PHOTOS = UploadRoute(
    name="photos",
    protocol="fineuploader",
    path="/uploads/photos",
    forward="/internal/uploads/photos",
    title="Photos",
    max_size=20 * MiB,
    content_types=("image/*",),
)
FILES = UploadRoute(
    name="files",
    protocol="uppy",
    path="/uploads/files",
    forward="/internal/uploads/files",
    title="Files",
    max_size=100 * MiB,
    content_types=("*/*",),
)
# The README's `upload` example names an api route at /api/uploads.
API = UploadRoute(
    name="api",
    protocol="api",
    path="/api/uploads",
    forward="/internal/uploads/api",
    title="From a terminal",
    max_size=100 * MiB,
    content_types=("*/*",),
)
# The user the banner's upload command is for (the sign-in form suggests the same name).
EXAMPLE_USER = "alice"


@dataclass(frozen=True)
class DemoSecrets:
    """Made fresh for each run; the demo prints none of them (the banner's API token is an HMAC
    of a user's name under ``api_token_key``)."""

    session_key: str
    webhook_secret: str
    api_token_key: bytes

    @classmethod
    def generate(cls) -> DemoSecrets:
        return cls(
            Fernet.generate_key().decode(), secrets.token_urlsafe(32), secrets.token_bytes(32)
        )


def has_adapter(protocol: str) -> bool:
    """Whether this installation has the gateway adapter for ``protocol``."""
    return protocol in ADAPTERS


def demo_routes() -> tuple[UploadRoute, ...]:
    """Fine Uploader's route, Uppy's and the API's, each when the gateway has its adapter."""
    return tuple(r for r in (PHOTOS, FILES, API) if has_adapter(r.protocol))


def cli_program(argv0: str, executable: str) -> str:
    """How a shell runs this installation's ``upload-gateway``, from any folder.

    ``upload-gateway`` when the script the demo was started with is the one on PATH, else that
    script's absolute path (scripts/demo.sh runs .venv/bin/upload-gateway), else
    ``<python> -m gateway``.
    """
    if os.path.basename(argv0) == "upload-gateway" and os.path.isfile(argv0):
        on_path = shutil.which("upload-gateway")
        if on_path is not None and os.path.samefile(on_path, argv0):
            return "upload-gateway"
        return shlex.quote(os.path.abspath(argv0))
    return f"{shlex.quote(executable)} -m gateway"


def public_origins(host: str, port: int) -> list[str]:
    """The origins a browser may load the demo from: the listen address, and localhost."""
    names = ["127.0.0.1", "localhost"]
    if host not in ("0.0.0.0", "::", "") and host not in names:  # noqa: S104 - names, not binds
        names.append(f"[{host}]" if _is_ipv6(host) else host)
    return [f"http://{name}:{port}" for name in names]


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def s3_config(s3_port: int) -> S3Config:
    """The gateway's S3: moto on 127.0.0.1 for its own calls, ``localhost`` for browsers.

    addressing_style auto gives the gateway's client paths (a custom endpoint) and browsers
    ``http://<bucket>.localhost:<port>``: Fine Uploader's chunked v4 uploads need a bucket host,
    and browsers send every ``*.localhost`` name to loopback.
    """
    return S3Config.model_validate(
        {
            "region": REGION,
            "endpoint_url": f"http://{LOOPBACK}:{s3_port}",
            "public_endpoint_url": f"http://localhost:{s3_port}",
            "addressing_style": "auto",
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "uploads_bucket": BUCKETS.uploads,
            "storage_bucket": BUCKETS.storage,
        }
    )


def build_config(
    *,
    app_url: str,
    s3: S3Config,
    origins: Sequence[str],
    routes: Sequence[UploadRoute],
    secret: DemoSecrets,
    host: str,
    port: int,
) -> Config:
    """The gateway's config for the demo, as an object (what ``serve`` would load from YAML)."""
    return Config.model_validate(
        {
            "listen": {"host": host, "port": port},
            "public_origins": list(origins),
            "upstream": {"url": app_url},
            # Plain http on loopback: a Secure cookie would never come back.
            "session": {"keys": [secret.session_key], "secure": False},
            # API clients have no session: the gateway asks the app who their token names.
            "identity": {"auth_request": {"path": AUTH_PATH}},
            "s3": s3,
            "webhook": {"secret": secret.webhook_secret},
            "routes": [
                {
                    "name": route.name,
                    "protocol": route.protocol,
                    "path": route.path,
                    "forward": route.forward,
                    "max_size": route.max_size,
                    "content_types": list(route.content_types),
                }
                for route in routes
            ],
        }
    )


def _bind(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound before anything else starts (fails fast)."""
    family = socket.AF_INET6 if _is_ipv6(host) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _banner(
    config: Config,
    settings: DemoSettings,
    app_url: str,
    s3_port: int,
    log_path: str,
) -> str:
    url = settings.gateway_url + "/"
    lines = [
        "upload-gateway demo: S3, an app and the gateway, all on this machine and in memory.",
        "",
        f"  Open {url} and sign in with any name, e.g. {EXAMPLE_USER} (there is no password).",
    ]
    api = next((r for r in settings.routes if r.protocol == "api"), None)
    if api is not None:
        lines += [
            f"  Or upload FILE from a terminal, as {EXAMPLE_USER}:",
            f"    {upload_command(settings, api, EXAMPLE_USER)}",
        ]
    width = max(len(r.path) for r in settings.routes)
    routes = [
        f"{r.path:<{width}}  {CLIENT_NAMES[r.protocol]}: "
        + describe_limits(r.max_size, r.content_types).removeprefix("Accepts ")
        for r in settings.routes
    ]
    lines += [
        "",
        f"  gateway   {url}",
        f"  routes    {routes[0]}",
        *(f"            {line}" for line in routes[1:]),
        f"  demo app  {app_url}  (behind the gateway; receives the signed completions)",
        f"  S3        http://{LOOPBACK}:{s3_port}  (moto; buckets {BUCKETS.uploads}, "
        f"{BUCKETS.storage})",
        f"  log       {log_path}  (JSON: every request and event)",
    ]
    assets = settings.assets
    if config.listen.host not in (LOOPBACK, "localhost", "::1"):
        lines.append(
            f"  note: S3 listens on {LOOPBACK} only, and the page sends files to localhost: "
            "browsers on other machines cannot upload"
        )
    if assets.fine_uploader is None:
        lines.append(f"  note: Fine Uploader is not installed: {INSTALL_HINT}")
    if assets.uppy_problem is not None and any(r.protocol == "uppy" for r in config.routes):
        lines.append(f"  note: {assets.uppy_problem}")
    lines += ["", "Press Ctrl-C to stop. What happens is shown below."]
    return "\n".join(lines)


async def _serve(
    sock: socket.socket, s3_port: int, assets: Assets, secret: DemoSecrets, log_path: str
) -> int:
    """Start the app, set up the buckets, start the gateway on ``sock``; serve until stopped."""
    host, port = sock.getsockname()[:2]
    routes = demo_routes()
    s3 = s3_config(s3_port)
    # The app presigns downloads for browsers, which reach S3 as localhost (path style).
    downloads = s3.model_copy(
        update={"endpoint_url": s3.public_endpoint_url, "addressing_style": "path"}
    )
    settings = DemoSettings(
        webhook_secret=secret.webhook_secret,
        downloads=downloads,
        routes=routes,
        assets=assets,
        api_token_key=secret.api_token_key,
        gateway_url=f"http://localhost:{port}",
        program=cli_program(sys.argv[0], sys.executable),
    )
    app_runner = web.AppRunner(
        make_demo_app(settings), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT
    )
    await app_runner.setup()
    try:
        await web.TCPSite(app_runner, LOOPBACK, 0).start()
        app_url = f"http://{LOOPBACK}:{app_runner.addresses[0][1]}"
        origins = public_origins(host, port)
        config = build_config(
            app_url=app_url,
            s3=s3,
            origins=origins,
            routes=routes,
            secret=secret,
            host=host,
            port=port,
        )
        async with open_s3_client(config.s3) as client:
            await setup_buckets(client, BUCKETS, origins=origins, region=REGION)
        gateway = await start_runner(
            create_app(config),
            access_log_class=AccessLogger,
            handler_cancellation=False,
            keepalive_timeout=75,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        try:
            await web.SockSite(gateway, sock, shutdown_timeout=SHUTDOWN_TIMEOUT).start()
            print(_banner(config, settings, app_url, s3_port, log_path), flush=True)
            await _until_stopped()
        finally:
            await gateway.cleanup()
    finally:
        await app_runner.cleanup()
        flush_access_log()
    print("upload-gateway demo: stopped", flush=True)
    return 0


async def _until_stopped() -> None:
    """Wait for SIGINT (Ctrl-C) or SIGTERM, so that shutdown runs in order, not as a traceback."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run(*, host: str, port: int) -> int:
    """Run the demo until SIGINT or SIGTERM; 0 after a clean stop, 1 if it cannot start."""
    try:
        sock = _bind(host, port)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    # Kept after the demo stops, for a look at what happened; the banner names it.
    fd, log_path = tempfile.mkstemp(prefix="upload-gateway-demo-", suffix=".log")
    with (
        contextlib.closing(sock),
        open(fd, "w", encoding="utf-8") as log_file,
        tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp,
    ):
        configure(stream=log_file)
        console.attach(sys.stdout)
        want_uppy = any(r.protocol == "uppy" for r in demo_routes())
        assets = locate(Path.cwd(), Path(tmp), want_uppy=want_uppy)
        try:
            with embedded_s3() as s3_port:
                secret = DemoSecrets.generate()
                return asyncio.run(_serve(sock, s3_port, assets, secret, log_path))
        except MotoMissing as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
