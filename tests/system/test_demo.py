"""``upload-gateway demo`` run as a real process: S3 (moto, in process), the demo app and the
gateway come up on loopback with nothing configured; a user signs in, gets a signed upload,
completes it, sees it listed and downloads it; Ctrl-C stops everything with exit code 0.

The upload is sent as Fine Uploader's non-chunked v4 path sends it (a form POST signed by the
gateway); tests/system/e2e/test_demo_browser.py drives the real page in Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiohttp
import pytest
from yarl import URL

from gateway import webhook
from gateway.demo.app import make_demo_app
from gateway.demo.assets import Assets
from gateway.demo.runner import (
    ACCESS_KEY_ID,
    API,
    BUCKETS,
    FILES,
    PHOTOS,
    SECRET_ACCESS_KEY,
    s3_config,
)
from gateway.demo.state import DemoSettings
from tests.support.demo import STOP_TIMEOUT, DemoProcess, demo_environment, start_demo

P = "/uploads/photos"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 8


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoProcess]:
    """One demo for the module's flow tests, run from an empty folder (no config, no env)."""
    started = start_demo(tmp_path_factory.mktemp("demo"))
    try:
        yield started
    finally:
        started.stop()


class Browserish:
    """A client with its own cookie jar (127.0.0.1 cookies kept) that sends the page's Origin."""

    def __init__(self, demo: DemoProcess) -> None:
        self.demo = demo
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=20),
        )

    def cookie(self, name: str) -> str | None:
        morsel = self.session.cookie_jar.filter_cookies(URL(self.demo.url)).get(name)
        return None if morsel is None else morsel.value

    async def sign_in(self, name: str) -> aiohttp.ClientResponse:
        async with self.session.post(
            f"{self.demo.url}/login", data={"name": name}, allow_redirects=False
        ) as answer:
            await answer.read()
            return answer

    async def json(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        headers = {"Origin": self.demo.url, **kwargs.pop("headers", {})}
        async with self.session.request(
            method, self.demo.url + path, headers=headers, **kwargs
        ) as answer:
            return answer.status, await answer.json(content_type=None)

    async def text(self, path: str) -> tuple[int, str]:
        async with self.session.get(self.demo.url + path) as answer:
            return answer.status, await answer.text()

    async def close(self) -> None:
        await self.session.close()


@pytest.fixture
async def alice(demo: DemoProcess) -> Any:
    client = Browserish(demo)
    answer = await client.sign_in(f"alice-{uuid.uuid4().hex[:6]}")
    assert answer.status == 303 and answer.headers["Location"] == "/files"
    yield client
    await client.close()


def v4_policy(key: str, now: datetime) -> dict[str, Any]:
    """A policy as Fine Uploader 5.16 sends it for a v4 form POST of ``key``."""
    today = now.strftime("%Y%m%d")
    return {
        "expiration": (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "conditions": [
            {"acl": "private"},
            {"bucket": BUCKETS.uploads},
            {"Content-Type": "image/png"},
            {"success_action_status": "200"},
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"key": key},
            {"x-amz-credential": f"{ACCESS_KEY_ID}/{today}/us-east-1/s3/aws4_request"},
            {"x-amz-date": now.strftime("%Y%m%dT%H%M%SZ")},
            {"x-amz-meta-qqfilename": "cat.png"},
        ],
    }


def v4_signature(policy_b64: str, now: datetime) -> str:
    """SigV4 of a POST policy, computed here with hmac, independently of gateway.signing."""
    key = ("AWS4" + SECRET_ACCESS_KEY).encode()
    for part in (now.strftime("%Y%m%d"), "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()


async def upload_png(client: Browserish, options: dict[str, Any], data: bytes) -> str:
    """Sign through the gateway and POST the form to the demo's S3; returns the key."""
    now = datetime.now(UTC)
    key = f"{options['keyPrefix']}{uuid.uuid4()}.png"
    policy = v4_policy(key, now)
    status, signed = await client.json("POST", f"{P}/signature?v4=true", json=policy)
    assert status == 200, signed
    form = aiohttp.FormData()
    for condition in policy["conditions"]:
        [(name, value)] = condition.items()
        if name != "bucket":
            form.add_field(name, value)
    form.add_field("policy", signed["policy"])
    form.add_field("x-amz-signature", signed["signature"])
    form.add_field("file", data, filename="cat.png", content_type="image/png")
    # Path style on 127.0.0.1: a plain resolver does not know <bucket>.localhost (browsers do).
    s3 = client.demo.banner("S3")
    async with client.session.post(f"{s3}/{BUCKETS.uploads}", data=form) as answer:
        assert answer.status in (200, 204), await answer.text()
    return key


async def test_sign_in_sets_the_gateways_cookies_and_signs_uploads(
    demo: DemoProcess, alice: Browserish
) -> None:
    """The app's X-Upload-User logs the user in at the gateway, which then signs in their prefix."""
    prefix = alice.cookie("upload_prefix")
    assert prefix is not None and alice.cookie("gateway_session") is not None
    assert alice.cookie("demo_session") is not None  # the app's own cookie passed through
    status, options = await alice.json("GET", f"{P}/config")
    assert status == 200
    assert options["keyPrefix"] == unquote(prefix) and prefix.endswith("%2F")
    s3_port = demo.banner("S3").rsplit(":", 1)[1]
    # Browsers get the bucket as a host name on localhost (Fine Uploader's chunked v4 needs it).
    assert options["request"]["endpoint"] == f"http://{BUCKETS.uploads}.localhost:{s3_port}"
    assert options["objectProperties"]["bucket"] == BUCKETS.uploads
    now = datetime.now(UTC)
    policy = v4_policy(f"{options['keyPrefix']}{uuid.uuid4()}.png", now)
    status, signed = await alice.json("POST", f"{P}/signature?v4=true", json=policy)
    assert status == 200, signed
    assert signed["signature"] == v4_signature(signed["policy"], now)
    tightened = json.loads(base64.b64decode(signed["policy"]))
    assert ["content-length-range", 0, 20 * 1024 * 1024] in tightened["conditions"]
    # Another user's prefix is refused: the demo runs the gateway's real rules.
    policy = v4_policy(f"someone-else/{uuid.uuid4()}.png", now)
    status, refused = await alice.json("POST", f"{P}/signature?v4=true", json=policy)
    assert status == 400 and refused["invalid"] is True and "signature" not in refused


async def test_config_needs_a_signed_in_user(demo: DemoProcess) -> None:
    """Without the app's login header first, the gateway hands out no upload options."""
    client = Browserish(demo)
    try:
        status, body = await client.json("GET", f"{P}/config")
    finally:
        await client.close()
    assert status == 401 and body["reason"] == "no-identity"


async def test_upload_is_completed_listed_once_and_downloaded(
    demo: DemoProcess, alice: Browserish
) -> None:
    """Success runs the completion; the app records it once and links a presigned download."""
    _, options = await alice.json("GET", f"{P}/config")
    data = PNG * 40
    key = await upload_png(alice, options, data)
    success = {"key": key, "uuid": key.rsplit("/", 1)[1][:36], "name": "cat.png"}
    success["bucket"] = BUCKETS.uploads
    status, done = await alice.json("POST", f"{P}/success", data=success)
    assert status == 200 and done["success"] is True, done
    download = done["file"]["download"]
    # Fine Uploader may send the same success again: same file, recorded once.
    status, again = await alice.json("POST", f"{P}/success", data=success)
    assert status == 200 and again["file"] == done["file"]
    status, rows = await alice.text("/files/rows")
    assert status == 200 and rows.count(f'href="{download}"') == 1 and "cat.png" in rows
    async with alice.session.get(demo.url + download, allow_redirects=False) as answer:
        assert answer.status == 302
        location = answer.headers["Location"]
    s3_port = demo.banner("S3").rsplit(":", 1)[1]
    assert location.startswith(f"http://localhost:{s3_port}/{BUCKETS.storage}/")
    assert "X-Amz-Expires=300" in location
    async with alice.session.get(location) as answer:
        assert answer.status == 200
        assert await answer.read() == data
        assert answer.headers["Content-Disposition"].startswith("attachment;")


async def test_other_users_neither_see_nor_download_a_file(
    demo: DemoProcess, alice: Browserish
) -> None:
    """The app lists and redirects only the owner's files."""
    _, options = await alice.json("GET", f"{P}/config")
    key = await upload_png(alice, options, PNG)
    form = {"key": key, "uuid": "u", "name": "private.png", "bucket": BUCKETS.uploads}
    status, done = await alice.json("POST", f"{P}/success", data=form)
    assert status == 200, done
    bob = Browserish(demo)
    try:
        await bob.sign_in(f"bob-{uuid.uuid4().hex[:6]}")
        _, rows = await bob.text("/files/rows")
        async with bob.session.get(
            demo.url + done["file"]["download"], allow_redirects=False
        ) as answer:
            status = answer.status
    finally:
        await bob.close()
    assert "private.png" not in rows
    assert status == 404


async def test_deleting_an_upload_removes_it_from_the_list(
    demo: DemoProcess, alice: Browserish
) -> None:
    """Fine Uploader's delete reaches the app as a signed upload.deleted, which unlists the file."""
    _, options = await alice.json("GET", f"{P}/config")
    key = await upload_png(alice, options, PNG)
    form = {"key": key, "uuid": "u", "name": "gone.png", "bucket": BUCKETS.uploads}
    status, done = await alice.json("POST", f"{P}/success", data=form)
    assert status == 200, done
    uuid_part = key.rsplit("/", 1)[1].split(".")[0]
    async with alice.session.delete(
        f"{demo.url}{P}/files/{uuid_part}",
        params={"key": key, "bucket": BUCKETS.uploads},
        headers={"Origin": demo.url},
    ) as answer:
        assert answer.status == 204, await answer.text()
    _, rows = await alice.text("/files/rows")
    assert "gone.png" not in rows


async def test_sign_out_logs_out_of_the_gateway_too(demo: DemoProcess, alice: Browserish) -> None:
    """The app's X-Upload-Logout ends the gateway's session: no more upload options."""
    assert (await alice.json("GET", f"{P}/config"))[0] == 200
    async with alice.session.post(f"{demo.url}/logout", allow_redirects=False) as answer:
        assert answer.status == 303 and "X-Upload-Logout" not in answer.headers
    status, body = await alice.json("GET", f"{P}/config")
    assert status == 401 and body["reason"] == "no-identity"


async def test_completion_with_a_bad_signature_is_refused(
    demo: DemoProcess, alice: Browserish
) -> None:
    """Posted straight to the app, a completion signed with another secret is not recorded."""
    app_url = demo.banner("demo app")
    message = {
        "event": "upload.completed",
        "id": uuid.uuid4().hex,
        "route": "photos",
        "user": "alice",
        "filename": "forged.png",
        "params": {},
        "object": {"bucket": BUCKETS.storage, "key": "x/forged.png", "size": 1, "etag": '"e"',
                   "content_type": "image/png"},
    }  # fmt: skip
    body = json.dumps(message).encode()
    headers = {
        webhook.HEADER: webhook.sign("not-the-demo-secret-0123456789", body),
        "Content-Type": "application/json",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{app_url}/internal/uploads/photos", data=body, headers=headers) as answer,
    ):
        assert answer.status == 401
    # Through the gateway the forward path is not even reachable.
    status, _ = await alice.json("POST", "/internal/uploads/photos", data=body)
    assert status == 404
    _, rows = await alice.text("/files/rows")
    assert "forged.png" not in rows


async def test_the_banners_upload_command_sends_a_file_into_alices_list(
    demo: DemoProcess, tmp_path: Path
) -> None:
    """The README's ``upload`` example works against the demo: the banner prints the exact
    command (an api route at /api/uploads, alice's token), and the file is listed as hers."""
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.txt"
    report.write_bytes(b"quarterly figures\n" * 100)
    argv = [str(report) if a == "FILE" else a for a in demo.upload_command()]
    assert argv[argv.index("--to") + 1] == f"http://localhost:{demo.port}/api/uploads"
    done = subprocess.run(
        argv, cwd=tmp_path, env=demo_environment(tmp_path), capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    alice = Browserish(demo)
    try:
        await alice.sign_in("alice")
        _, rows = await alice.text("/files/rows")
    finally:
        await alice.close()
    [row] = [r for r in rows.splitlines() if report.name in r]
    assert "upload-gateway upload" in row and "1.8 KiB" in row  # 1800 bytes


async def test_api_tokens_name_their_user_and_no_one_else(demo: DemoProcess) -> None:
    """The gateway learns an API caller from the app (auth_request): a token whose HMAC does
    not match its name, or none, gets 401 and signs nothing."""
    argv = demo.upload_command()
    token = argv[argv.index("-H") + 1].split()[-1]
    name, _, mac = token.partition(".")
    forged_name = base64.urlsafe_b64encode(b"mallory").rstrip(b"=").decode()
    body = {"filename": "a.txt", "content_type": "text/plain", "size": 3}
    async with aiohttp.ClientSession() as session:
        for bad in (f"{forged_name}.{mac}", f"{name}.{'0' * len(mac)}", "not-a-token", ""):
            headers = {"Authorization": f"Bearer {bad}"}
            async with session.post(f"{demo.url}/api/uploads", json=body, headers=headers) as a:
                assert a.status == 401, bad
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(f"{demo.url}/api/uploads", json=body, headers=headers) as a:
            assert a.status == 201


def wait_for_line(demo: DemoProcess, pattern: str, timeout: float = 10.0) -> str:
    """The first line of the demo's terminal matching ``pattern``, polled for ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(demo.lines):
            if re.search(pattern, line):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no line matching {pattern!r}:\n{demo.stdout()}")


async def test_terminal_says_what_happens_and_the_json_log_goes_to_a_file(
    demo: DemoProcess,
) -> None:
    """A few readable lines (who signed in, what was refused and why) instead of a JSON line a
    request; the JSON log is in the file the banner names, and stderr stays empty."""
    client = Browserish(demo)
    name = f"carol-{uuid.uuid4().hex[:6]}"
    try:
        await client.sign_in(name)
        _, options = await client.json("GET", f"{P}/config")
        policy = v4_policy(f"{options['keyPrefix']}{uuid.uuid4()}.pdf", datetime.now(UTC))
        policy["conditions"][2] = {"Content-Type": "application/pdf"}
        status, _ = await client.json("POST", f"{P}/signature?v4=true", json=policy)
    finally:
        await client.close()
    assert status == 400
    assert re.fullmatch(rf"\d\d:\d\d:\d\d  {name} signed in", wait_for_line(demo, name))
    wait_for_line(demo, "  refused /uploads/photos/signature: 400 content-type-not-allowed$")
    after_banner = demo.lines[next(i for i, x in enumerate(demo.lines) if "Ctrl-C" in x) + 1 :]
    assert after_banner and all(re.match(r"\d\d:\d\d:\d\d  \S", x) for x in after_banner)
    assert not any("{" in line for line in demo.lines)
    log = demo.json_log()
    assert any(e["event"] == "request" and e["path"] == f"{P}/signature" for e in log)
    assert any(e["event"] == "request_refused" for e in log)
    assert demo.log() == ""


async def test_favicon_is_served(demo: DemoProcess) -> None:
    """No 404 for the icon browsers ask every site for, nor for the one the pages link."""
    async with aiohttp.ClientSession() as session:
        for path in ("/favicon.ico", "/static/demo/favicon.svg"):
            async with session.get(demo.url + path) as answer:
                assert answer.status == 200, path
                assert answer.content_type == "image/svg+xml"
                assert (await answer.read()).startswith(b"<svg")
        async with session.get(demo.url + "/") as answer:
            assert '<link rel="icon" href="/static/demo/favicon.svg"' in await answer.text()


def test_ctrl_c_stops_the_demo_with_exit_code_0(tmp_path: Path) -> None:
    """SIGINT stops the gateway, the app and S3, and the process exits 0 within seconds."""
    demo = start_demo(tmp_path)
    started = time.monotonic()
    assert demo.stop(signal.SIGINT) == 0
    assert time.monotonic() - started < STOP_TIMEOUT
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", demo.port)) != 0  # nothing listens any more
    assert "Traceback" not in demo.log()


def test_busy_port_exits_1_at_once(tmp_path: Path) -> None:
    """A port already taken is reported in one line, before anything else starts."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "demo", "--port", str(port)],
            cwd=tmp_path,
            env=demo_environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


# --------------------------------------------------------------------------- the app in process


SECRET = "in-process-demo-webhook-secret"
MISSING = Assets(None, None, "Uppy is not installed: run scripts/setup.sh (npm ci) first")


def settings(assets: Assets) -> DemoSettings:
    """The demo app's settings; its S3 (port 1) is never called: these tests download nothing."""
    return DemoSettings(
        webhook_secret=SECRET,
        downloads=s3_config(1),
        routes=(PHOTOS, FILES, API),
        assets=assets,
        api_token_key=b"in-process-demo-api-token-key",
        gateway_url="http://localhost:8080",
        program="upload-gateway",
    )


async def signed_in(aiohttp_client: Any, assets: Assets, name: str = "alice") -> Any:
    client = await aiohttp_client(make_demo_app(settings(assets)))
    answer = await client.post("/login", data={"name": name}, allow_redirects=False)
    assert answer.status == 303 and answer.headers["X-Upload-User"] == name
    return client


async def test_page_says_how_to_install_missing_clients(aiohttp_client: Any) -> None:
    """Without the npm packages the page names the command that installs them, and loads none."""
    client = await signed_in(aiohttp_client, MISSING)
    page = await (await client.get("/files")).text()
    assert "Fine Uploader is not installed: run scripts/setup.sh (npm ci)" in page
    assert "Uppy is not installed: run scripts/setup.sh (npm ci)" in page
    assert "s3.fine-uploader.js" not in page and "uppy.js" not in page
    assert 'data-protocol="fineuploader"' not in page
    assert (await client.get("/static/uppy/uppy.js")).status == 404


async def test_file_names_are_escaped_in_the_list(aiohttp_client: Any) -> None:
    """A file name is the uploader's to choose: the page shows it as text, never as markup."""
    client = await signed_in(aiohttp_client, MISSING)
    name = '<img src=x onerror="alert(1)">.png'
    message = {
        "event": "upload.completed", "id": uuid.uuid4().hex, "route": "photos", "user": "alice",
        "filename": name, "params": {},
        "object": {"bucket": "b", "key": "k", "size": 3, "etag": '"e"',
                   "content_type": "image/png"},
    }  # fmt: skip
    body = json.dumps(message).encode()
    answer = await client.post(
        PHOTOS.forward, data=body, headers={webhook.HEADER: webhook.sign(SECRET, body)}
    )
    assert answer.status == 200
    rows = await (await client.get("/files/rows")).text()
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.png" in rows
    assert "<img" not in rows


async def test_sign_in_refuses_names_that_are_not_plain(aiohttp_client: Any) -> None:
    """A name must be safe in a header: no login header is sent for anything else."""
    client = await aiohttp_client(make_demo_app(settings(MISSING)))
    answer = await client.post("/login", data={"name": "eve\r\nX-Upload-User: root"})
    assert answer.status == 400 and "X-Upload-User" not in answer.headers
    assert "Use 1 to 64 letters" in await answer.text()


async def test_each_routes_files_get_a_delete_button_naming_its_delete_path(
    aiohttp_client: Any,
) -> None:
    """Fine Uploader's files delete at P/files/<uuid>?key=&bucket=, Uppy's and the API's at
    P/files?key=, by the key they were uploaded under (the message's upload_key), escaped."""
    client = await signed_in(aiohttp_client, MISSING)
    keys = {}
    for route in (PHOTOS, FILES, API):
        keys[route.name] = f"0123abcd/{uuid.uuid4()}.txt"
        message = {
            "event": "upload.completed", "id": uuid.uuid4().hex, "route": route.name,
            "user": "alice", "filename": f"{route.name}.txt", "params": {},
            "object": {"bucket": "s", "key": f"stored/{route.name}", "size": 1536, "etag": '"e"',
                       "content_type": "text/plain"},
            "upload_key": keys[route.name],
        }  # fmt: skip
        body = json.dumps(message).encode()
        answer = await client.post(
            route.forward, data=body, headers={webhook.HEADER: webhook.sign(SECRET, body)}
        )
        assert answer.status == 200
    rows = await (await client.get("/files/rows")).text()
    photo = keys["photos"]
    uuid_part = photo.rsplit("/", 1)[1].split(".")[0]
    assert (
        f'data-url="/uploads/photos/files/{uuid_part}?key=0123abcd%2F{uuid_part}.txt'
        f'&amp;bucket={BUCKETS.uploads}"'
    ) in rows
    for route in (FILES, API):
        escaped = keys[route.name].replace("/", "%2F")
        assert f'data-url="{route.path}/files?key={escaped}"' in rows
    assert rows.count(">Delete</button>") == 3
    assert rows.count("1.5 KiB") == 3
