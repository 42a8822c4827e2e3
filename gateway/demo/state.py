"""What the demo app's handlers share: its settings, the keys of its state, who is signed in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import S3Config
from .assets import Assets
from .library import Library
from .pages import Html, Templates

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

COOKIE = "demo_session"
CLIENT_NAMES = {"fineuploader": "Fine Uploader", "uppy": "Uppy", "api": "upload-gateway upload"}


@dataclass(frozen=True)
class UploadRoute:
    """What the app knows of one of the gateway's upload routes (the runner builds the
    gateway's route config from the same values, so the page states the limits it enforces)."""

    name: str
    protocol: str
    path: str
    forward: str
    title: str
    max_size: int
    content_types: tuple[str, ...]


@dataclass(frozen=True)
class DemoSettings:
    """The app's configuration: it shares the webhook secret with the gateway, nothing else."""

    webhook_secret: str
    downloads: S3Config  # credentials and the S3 URL browsers download from
    routes: tuple[UploadRoute, ...]
    assets: Assets
    api_token_key: bytes  # signs the bearer tokens the app gives its users for the CLI
    gateway_url: str  # where users reach the app, through the gateway
    program: str  # how this installation's CLI is run, for the printed upload command


SETTINGS = web.AppKey("settings", DemoSettings)
LIBRARY = web.AppKey("library", Library)
TEMPLATES = web.AppKey("templates", Templates)
# The file page's stylesheets (head) and scripts (end of body), built once from the assets.
CLIENT_TAGS: web.AppKey[tuple[Html, Html]] = web.AppKey("client_tags")
PRESIGNER: web.AppKey[S3Client] = web.AppKey("presigner")


def current_user(request: web.Request) -> str | None:
    """The user the app's own session cookie names, if any."""
    return request.app[LIBRARY].user_of(request.cookies.get(COOKIE))
