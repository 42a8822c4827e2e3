"""The demo's upstream app: what an existing app adds to work behind upload-gateway.

Three things, each a few lines: it names the signed-in user in an ``X-Upload-User`` response
header (``X-Upload-Logout`` on sign-out); it receives the gateway's completion messages at each
route's ``forward`` path, verifies their signature and records each file once (by its id, the
``Idempotency-Key``); it lets users download their files through short-lived presigned GETs.
Everything else here (the sign-in form, the file list) is an ordinary app.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from .. import webhook
from ..config import S3Config
from ..storage import open_s3_client
from .assets import INSTALL_HINT, Assets
from .library import Library, StoredFile
from .pages import Html, Templates, human_size

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
else:
    S3Client = Any

log = logging.getLogger(__name__)

COOKIE = "demo_session"
DOWNLOAD_TTL = 300  # seconds a download link's presigned GET lives
MAX_MESSAGE = 64 * 1024
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}")
_CLIENTS = {"fineuploader": "Fine Uploader", "uppy": "Uppy"}


@dataclass(frozen=True)
class UploadRoute:
    """What the app knows of one of the gateway's upload routes."""

    name: str
    protocol: str
    path: str
    forward: str
    title: str


@dataclass(frozen=True)
class DemoSettings:
    """The app's configuration: it shares the webhook secret with the gateway, nothing else."""

    webhook_secret: str
    downloads: S3Config  # credentials and the S3 URL browsers download from
    routes: tuple[UploadRoute, ...]
    assets: Assets


SETTINGS = web.AppKey("settings", DemoSettings)
LIBRARY = web.AppKey("library", Library)
TEMPLATES = web.AppKey("templates", Templates)
PRESIGNER: web.AppKey[S3Client] = web.AppKey("presigner")


# --------------------------------------------------------------------------- signing in and out


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def _user(request: web.Request) -> str | None:
    return request.app[LIBRARY].user_of(request.cookies.get(COOKIE))


def _page(
    request: web.Request,
    title: str,
    body: Html,
    *,
    head: Html | None = None,
    scripts: Html | None = None,
) -> web.Response:
    templates = request.app[TEMPLATES]
    user = _user(request)
    text = templates.render(
        "page",
        title=title,
        head=head or Html(""),
        account=templates.render("account", user=user) if user else Html(""),
        body=body,
        scripts=scripts or Html(""),
    )
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


def _login_form(request: web.Request, *, name: str = "alice", error: str = "") -> web.Response:
    templates = request.app[TEMPLATES]
    message = templates.render("error", message=error) if error else Html("")
    response = _page(request, "Sign in", templates.render("login", name=name, error=message))
    if error:
        response.set_status(400)
    return response


async def index(request: web.Request) -> web.StreamResponse:
    """The sign-in form, or the file page for a signed-in user."""
    if _user(request) is not None:
        raise web.HTTPSeeOther("/files")
    return _login_form(request)


async def login(request: web.Request) -> web.StreamResponse:
    """Sign in under any name; the X-Upload-User header tells the gateway who this is."""
    form = await request.post()
    name = str(form.get("name", "")).strip()
    if not _NAME_RE.fullmatch(name):
        error = "Use 1 to 64 letters, digits, spaces or . _ @ - (starting with a letter or digit)."
        return _login_form(request, name=name, error=error)
    library = request.app[LIBRARY]
    library.sign_out(request.cookies.get(COOKIE))
    response = _see_other("/files")
    response.set_cookie(COOKIE, library.sign_in(name), httponly=True, samesite="Lax", path="/")
    # The whole integration on the app's side of a login: the gateway strips this header.
    response.headers["X-Upload-User"] = name
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[LIBRARY].sign_out(request.cookies.get(COOKIE))
    response = _see_other("/")
    response.del_cookie(COOKIE, path="/")
    response.headers["X-Upload-Logout"] = "1"
    return response


# --------------------------------------------------------------------------- the file page


def _rows(request: web.Request, user: str) -> Html:
    templates = request.app[TEMPLATES]
    titles = {r.name: _CLIENTS.get(r.protocol, r.protocol) for r in request.app[SETTINGS].routes}
    rows = [
        templates.render(
            "row",
            id=f.id,
            name=f.filename,
            client=titles.get(f.route, f.route),
            size=human_size(f.size),
            type=f.content_type,
            stored_at=f.stored_at.strftime("%H:%M:%S UTC"),
        )
        for f in request.app[LIBRARY].of(user)
    ]
    return templates.join(rows) if rows else templates.render("no-rows")


def _uploader(request: web.Request, route: UploadRoute) -> Html:
    templates, assets = request.app[TEMPLATES], request.app[SETTINGS].assets
    if route.protocol == "fineuploader" and assets.fine_uploader is None:
        problem = f"Fine Uploader is not installed: {INSTALL_HINT} to install Fine Uploader."
        return templates.render("missing", title=route.title, path=route.path, problem=problem)
    if route.protocol == "uppy" and assets.uppy_bundle is None:
        problem = assets.uppy_problem or f"Uppy is not installed: {INSTALL_HINT}."
        return templates.render("missing", title=route.title, path=route.path, problem=problem)
    return templates.render(route.protocol, title=route.title, path=route.path)


def _scripts(request: web.Request) -> tuple[Html, Html]:
    """The page's stylesheets and scripts: the npm packages' builds, then demo.js."""
    assets = request.app[SETTINGS].assets
    head, tags = [], []
    if assets.fine_uploader is not None:
        head.append(
            '<link rel="stylesheet" href="/static/fine-uploader/fine-uploader-gallery.css">'
        )
        # Fine Uploader UI's own template (from the npm package), which qq.s3.FineUploader fills.
        gallery = assets.fine_uploader / "templates" / "gallery.html"
        tags += [
            gallery.read_text(encoding="utf-8"),
            '<script src="/static/fine-uploader/s3.fine-uploader.js"></script>',
        ]
    if assets.uppy_bundle is not None:
        tags.append('<script src="/static/uppy/uppy.js"></script>')
    tags.append('<script src="/static/demo/demo.js"></script>')
    return Html("\n".join(head)), Html("\n".join(tags))


async def files_page(request: web.Request) -> web.StreamResponse:
    """The uploaders and the signed-in user's files."""
    user = _user(request)
    if user is None:
        raise web.HTTPSeeOther("/")
    templates = request.app[TEMPLATES]
    uploaders = [_uploader(request, r) for r in request.app[SETTINGS].routes]
    body = templates.render("files", uploaders=templates.join(uploaders), rows=_rows(request, user))
    head, scripts = _scripts(request)
    return _page(request, "Your files", body, head=head, scripts=scripts)


async def file_rows(request: web.Request) -> web.Response:
    """The table's rows alone, which the page fetches again after each upload."""
    user = _user(request)
    if user is None:
        raise web.HTTPUnauthorized(text="sign in first")
    return web.Response(
        text=_rows(request, user), content_type="text/html", headers={"Cache-Control": "no-store"}
    )


async def download(request: web.Request) -> web.StreamResponse:
    """Redirect the owner to a presigned GET of the stored object, valid for five minutes."""
    user = _user(request)
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
        return web.json_response({"deleted": removed is not None}, status=200 if removed else 404)
    if message["event"] != "upload.completed":
        return web.json_response({"error": "unknown event"}, status=400)
    stored = library.record(
        StoredFile(
            id=message["id"],
            user=message["user"],
            route=message["route"],
            filename=message["filename"],
            size=int(obj["size"]),
            content_type=obj["content_type"],
            bucket=obj["bucket"],
            key=obj["key"],
            stored_at=datetime.now(UTC),
        )
    )
    # Relayed by the gateway to the page (Fine Uploader merges it into its success response).
    return web.json_response({"file": {"id": stored.id, "download": f"/download/{stored.id}"}})


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


def make_demo_app(settings: DemoSettings) -> web.Application:
    """The demo app for these routes and assets."""
    app = web.Application()
    app[SETTINGS] = settings
    app[LIBRARY] = Library()
    app[TEMPLATES] = Templates()
    app.cleanup_ctx.append(_presigner)
    app.router.add_get("/", index)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/files", files_page)
    app.router.add_get("/files/rows", file_rows)
    app.router.add_get("/download/{file_id}", download)
    for route in settings.routes:
        app.router.add_post(route.forward, completion)
    static = Path(__file__).resolve().parent / "static"
    app.router.add_static("/static/demo/", static)
    if settings.assets.fine_uploader is not None:
        app.router.add_static("/static/fine-uploader/", settings.assets.fine_uploader)
    app.router.add_get("/static/uppy/uppy.js", _uppy_bundle)
    return app
