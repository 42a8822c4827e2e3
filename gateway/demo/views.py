"""The demo app's pages: the sign-in form, and the uploaders above the user's file list."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from .assets import INSTALL_HINT, Assets
from .library import StoredFile
from .pages import Html, Templates, describe_limits, human_size
from .state import (
    CLIENT_NAMES,
    CLIENT_TAGS,
    LIBRARY,
    SETTINGS,
    TEMPLATES,
    DemoSettings,
    UploadRoute,
    current_user,
)
from .tokens import api_token


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


def delete_url(route: UploadRoute, stored: StoredFile, uploads_bucket: str) -> str:
    """The gateway's delete path for a stored file, by the key it was uploaded under."""
    key = quote(stored.upload_key, safe="")
    if route.protocol == "fineuploader":
        # Fine Uploader's deleteFile request; the gateway ignores the uuid segment.
        uuid = quote(stored.upload_key.rsplit("/", 1)[-1].split(".", 1)[0], safe="")
        return f"{route.path}/files/{uuid}?key={key}&bucket={quote(uploads_bucket, safe='')}"
    return f"{route.path}/files?key={key}"


def _delete_button(templates: Templates, settings: DemoSettings, stored: StoredFile) -> Html:
    route = next((r for r in settings.routes if r.name == stored.route), None)
    if route is None or not stored.upload_key:
        return Html("")
    url = delete_url(route, stored, settings.downloads.uploads_bucket)
    return templates.render("delete", url=url, name=stored.filename, key=stored.upload_key)


def _rows(request: web.Request, user: str) -> Html:
    templates, settings = request.app[TEMPLATES], request.app[SETTINGS]
    titles = {r.name: CLIENT_NAMES.get(r.protocol, r.protocol) for r in settings.routes}
    rows = [
        templates.render(
            "row",
            id=f.id,
            name=f.filename,
            client=titles.get(f.route, f.route),
            size=human_size(f.size),
            type=f.content_type,
            stored_at=f.stored_at.strftime("%H:%M:%S UTC"),
            delete=_delete_button(templates, settings, f),
        )
        for f in request.app[LIBRARY].of(user)
    ]
    return templates.join(rows) if rows else templates.render("no-rows")


def upload_command(settings: DemoSettings, route: UploadRoute, user: str) -> str:
    """The ``upload`` command line that sends FILE to ``route`` as ``user``."""
    token = api_token(settings.api_token_key, user)
    return (
        f"{settings.program} upload FILE --to {settings.gateway_url}{route.path}"
        f" -H 'Authorization: Bearer {token}'"
    )


def _uploader(request: web.Request, route: UploadRoute, user: str) -> Html:
    templates, settings = request.app[TEMPLATES], request.app[SETTINGS]
    assets = settings.assets
    if route.protocol == "fineuploader" and assets.fine_uploader is None:
        problem = f"Fine Uploader is not installed: {INSTALL_HINT} to install Fine Uploader."
        return templates.render("missing", title=route.title, path=route.path, problem=problem)
    if route.protocol == "uppy" and assets.uppy_bundle is None:
        problem = assets.uppy_problem or f"Uppy is not installed: {INSTALL_HINT}."
        return templates.render("missing", title=route.title, path=route.path, problem=problem)
    limits = describe_limits(route.max_size, route.content_types)
    if route.protocol == "api":
        command = upload_command(settings, route, user)
        return templates.render(
            "api", title=route.title, path=route.path, limits=limits, command=command
        )
    return templates.render(route.protocol, title=route.title, path=route.path, limits=limits)


def client_tags(assets: Assets, templates: Templates) -> tuple[Html, Html]:
    """The page's head tags and scripts: the npm packages' builds, then demo.js."""
    tags = []
    if assets.fine_uploader is not None:
        # The demo's own template for qq.s3.FineUploader (a list that grows with its files and
        # labelled buttons), styled by demo.css: the package's gallery tiles cut sentences.
        tags += [
            templates.render("qq-template"),
            '<script src="/static/fine-uploader/s3.fine-uploader.js"></script>',
        ]
    if assets.uppy_bundle is not None:
        tags.append('<script src="/static/uppy/uppy.js"></script>')
    tags.append('<script src="/static/demo/demo.js"></script>')
    return Html(""), Html("\n".join(tags))


async def files_page(request: web.Request) -> web.StreamResponse:
    """The uploaders and the signed-in user's files."""
    user = current_user(request)
    if user is None:
        raise web.HTTPSeeOther("/")
    templates = request.app[TEMPLATES]
    uploaders = [_uploader(request, r, user) for r in request.app[SETTINGS].routes]
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
