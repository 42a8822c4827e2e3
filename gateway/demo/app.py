"""The demo's upstream app: what an existing app adds to work behind upload-gateway.

A few things, each a few lines: it names the signed-in user in an ``X-Upload-User`` response
header (``X-Upload-Logout`` on sign-out), and answers ``auth_request`` for API clients; it
receives the gateway's completion messages at each route's ``forward`` path, verifies their
signature and records each file once (by its id, the ``Idempotency-Key``), and forgets a file
when told it was deleted; it lets users download their files through short-lived presigned GETs.
Everything else here (the sign-in form, the file list) is an ordinary app.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from .. import webhook
from ..storage import open_s3_client
from .library import Library, StoredFile
from .pages import Templates, human_size
from .state import (
    CLIENT_NAMES,
    CLIENT_TAGS,
    COOKIE,
    LIBRARY,
    PRESIGNER,
    SETTINGS,
    TEMPLATES,
    DemoSettings,
    current_user,
)
from .tokens import token_user
from .views import client_tags, file_rows, files_page, index, login_form

log = logging.getLogger(__name__)
# What a user did, for the demo's terminal (gateway/demo/console.py); not the JSON log.
activity = logging.getLogger("gateway.demo.activity")

DOWNLOAD_TTL = 300  # seconds a download link's presigned GET lives
AUTH_PATH = "/auth/whoami"  # the gateway's identity.auth_request.path
STATIC = Path(__file__).resolve().parent / "static"
MAX_MESSAGE = 64 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")


# --------------------------------------------------------------------------- signing in and out


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


async def login(request: web.Request) -> web.StreamResponse:
    """Sign in under any name; the X-Upload-User header tells the gateway who this is."""
    form = await request.post()
    name = str(form.get("name", "")).strip()
    if not _NAME_RE.fullmatch(name):
        error = "Use 1 to 64 letters, digits, spaces or . _ @ - (starting with a letter or digit)."
        return login_form(request, name=name, error=error)
    library = request.app[LIBRARY]
    library.sign_out(request.cookies.get(COOKIE))
    response = _see_other("/files")
    response.set_cookie(COOKIE, library.sign_in(name), httponly=True, samesite="Lax", path="/")
    # The whole integration on the app's side of a login: the gateway strips this header.
    response.headers["X-Upload-User"] = name
    activity.info("%s signed in", name)
    return response


async def whoami(request: web.Request) -> web.Response:
    """The gateway's ``auth_request``: who sends this Authorization (or the app's cookie)?

    API clients have no session: the gateway asks here with their Authorization header, and
    remembers the answer in its own session for ``cache_seconds``.
    """
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token:
        user = token_user(request.app[SETTINGS].api_token_key, token.strip())
    else:
        user = current_user(request)
    if user is None:
        return web.json_response({"error": "unknown token"}, status=401)
    return web.json_response({"username": user}, headers={"Cache-Control": "no-store"})


async def logout(request: web.Request) -> web.StreamResponse:
    """Sign out here, and at the gateway through the X-Upload-Logout header."""
    request.app[LIBRARY].sign_out(request.cookies.get(COOKIE))
    response = _see_other("/")
    response.del_cookie(COOKIE, path="/")
    response.headers["X-Upload-Logout"] = "1"
    return response


# --------------------------------------------------------------------------- downloads


async def download(request: web.Request) -> web.StreamResponse:
    """Redirect the owner to a presigned GET of the stored object, valid for five minutes."""
    user = current_user(request)
    if user is None:
        raise web.HTTPSeeOther("/")
    stored = request.app[LIBRARY].get(user, request.match_info["file_id"])
    if stored is None:
        raise web.HTTPNotFound(text="no such file")
    url = await request.app[PRESIGNER].generate_presigned_url(
        "get_object",
        Params={
            "Bucket": stored.bucket,
            "Key": stored.key,
            "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(stored.filename)}",
        },
        ExpiresIn=DOWNLOAD_TTL,
    )
    raise web.HTTPFound(url, headers={"Cache-Control": "no-store"})


# --------------------------------------------------------------------------- completions


async def completion(request: web.Request) -> web.Response:
    """The gateway's completion message: verify its signature, then record the file once."""
    body = await request.content.read(MAX_MESSAGE + 1)
    if len(body) > MAX_MESSAGE:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_MESSAGE, actual_size=len(body))
    secret = request.app[SETTINGS].webhook_secret
    try:
        # Over the raw bytes, before parsing: only the gateway knows the secret.
        webhook.verify(secret, request.headers.get(webhook.HEADER, ""), body)
    except webhook.InvalidSignature as exc:
        log.warning("demo_completion_refused", extra={"reason": str(exc)})
        return web.json_response({"error": "bad signature"}, status=401)
    message: dict[str, Any] = json.loads(body)
    library = request.app[LIBRARY]
    obj = message["object"]
    if message["event"] == "upload.deleted":
        removed = library.remove(message["user"], obj["key"])
        if removed is not None:
            activity.info("%s deleted %s", removed.user, removed.filename)
        return web.json_response({"deleted": removed is not None}, status=200 if removed else 404)
    if message["event"] != "upload.completed":
        return web.json_response({"error": "unknown event"}, status=400)
    candidate = StoredFile(
        id=message["id"],
        user=message["user"],
        route=message["route"],
        filename=message["filename"],
        size=int(obj["size"]),
        content_type=obj["content_type"],
        bucket=obj["bucket"],
        key=obj["key"],
        stored_at=datetime.now(UTC),
        upload_key=str(message.get("upload_key") or ""),
    )
    stored = library.record(candidate)
    if stored is candidate:  # not a retry of a completion already recorded
        activity.info(
            "%s stored %s (%s, %s) with %s",
            stored.user,
            stored.filename,
            human_size(stored.size),
            stored.content_type,
            _client_of(request, stored.route),
        )
    # Relayed by the gateway to the page (Fine Uploader merges it into its success response).
    return web.json_response({"file": {"id": stored.id, "download": f"/download/{stored.id}"}})


def _client_of(request: web.Request, route_name: str) -> str:
    for route in request.app[SETTINGS].routes:
        if route.name == route_name:
            return CLIENT_NAMES.get(route.protocol, route.protocol)
    return route_name


# --------------------------------------------------------------------------- the app


async def _presigner(app: web.Application) -> AsyncIterator[None]:
    async with open_s3_client(app[SETTINGS].downloads) as client:
        app[PRESIGNER] = client
        yield


async def _uppy_bundle(request: web.Request) -> web.FileResponse:
    bundle = request.app[SETTINGS].assets.uppy_bundle
    if bundle is None:
        raise web.HTTPNotFound()
    return web.FileResponse(bundle, headers={"Content-Type": "text/javascript"})


async def favicon(request: web.Request) -> web.FileResponse:
    """Browsers ask every site for /favicon.ico; the pages also link the same icon."""
    return web.FileResponse(
        STATIC / "favicon.svg",
        headers={"Content-Type": "image/svg+xml", "Cache-Control": "max-age=86400"},
    )


def make_demo_app(settings: DemoSettings) -> web.Application:
    """The demo app for these routes and assets."""
    app = web.Application()
    app[SETTINGS] = settings
    app[LIBRARY] = Library()
    app[TEMPLATES] = Templates()
    app[CLIENT_TAGS] = client_tags(settings.assets, app[TEMPLATES])
    app.cleanup_ctx.append(_presigner)
    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/files", files_page)
    app.router.add_get("/files/rows", file_rows)
    app.router.add_get("/download/{file_id}", download)
    app.router.add_get(AUTH_PATH, whoami)
    app.router.add_get("/favicon.ico", favicon)
    for route in settings.routes:
        app.router.add_post(route.forward, completion)
    app.router.add_static("/static/demo/", STATIC)
    if settings.assets.fine_uploader is not None:
        app.router.add_static("/static/fine-uploader/", settings.assets.fine_uploader)
    app.router.add_get("/static/uppy/uppy.js", _uppy_bundle)
    return app
