"""The demo app's pages: the sign-in form, and the uploaders above the user's file list."""

from __future__ import annotations

from aiohttp import web

from .assets import INSTALL_HINT, Assets
from .pages import Html, human_size
from .state import (
    CLIENT_NAMES,
    CLIENT_TAGS,
    LIBRARY,
    SETTINGS,
    TEMPLATES,
    UploadRoute,
    current_user,
)


def _page(
    request: web.Request,
    title: str,
    body: Html,
    *,
    head: Html | None = None,
    scripts: Html | None = None,
) -> web.Response:
    templates = request.app[TEMPLATES]
    user = current_user(request)
    text = templates.render(
        "page",
        title=title,
        head=head or Html(""),
        account=templates.render("account", user=user) if user else Html(""),
        body=body,
        scripts=scripts or Html(""),
    )
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


def login_form(request: web.Request, *, name: str = "alice", error: str = "") -> web.Response:
    templates = request.app[TEMPLATES]
    message = templates.render("error", message=error) if error else Html("")
    response = _page(request, "Sign in", templates.render("login", name=name, error=message))
    if error:
        response.set_status(400)
    return response


async def index(request: web.Request) -> web.StreamResponse:
    """The sign-in form, or the file page for a signed-in user."""
    if current_user(request) is not None:
        raise web.HTTPSeeOther("/files")
    return login_form(request)


def _rows(request: web.Request, user: str) -> Html:
    templates = request.app[TEMPLATES]
    titles = {
        r.name: CLIENT_NAMES.get(r.protocol, r.protocol) for r in request.app[SETTINGS].routes
    }
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


def client_tags(assets: Assets) -> tuple[Html, Html]:
    """The page's stylesheets and scripts: the npm packages' builds, then demo.js."""
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
    user = current_user(request)
    if user is None:
        raise web.HTTPSeeOther("/")
    templates = request.app[TEMPLATES]
    uploaders = [_uploader(request, r) for r in request.app[SETTINGS].routes]
    body = templates.render("files", uploaders=templates.join(uploaders), rows=_rows(request, user))
    head, scripts = request.app[CLIENT_TAGS]
    return _page(request, "Your files", body, head=head, scripts=scripts)


async def file_rows(request: web.Request) -> web.Response:
    """The table's rows alone, which the page fetches again after each upload."""
    user = current_user(request)
    if user is None:
        raise web.HTTPUnauthorized(text="sign in first")
    return web.Response(
        text=_rows(request, user), content_type="text/html", headers={"Cache-Control": "no-store"}
    )
