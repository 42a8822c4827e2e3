"""``upload-gateway upload`` as a person runs it: a subprocess against a live gateway and S3.

The gateway and an S3 front (a loopback stand-in for the bucket's public address, forwarding to
moto, or to radosgw in the tests that take ``s3_server``) run in the test's event loop, so the
subprocess is driven with asyncio's subprocess API and never blocks them. The front counts parts
in flight, fails chosen parts once, or holds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pty
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from gateway.buckets import BucketNames
from gateway.config import Config
from tests.support.faults import Fault, FaultProxy, Match, fault_proxy
from tests.support.gateway import build_config
from tests.support.processes import ServeGateway, free_port
from tests.support.s3 import S3Server
from tests.support.upstream import Recorded

MiB = 1024 * 1024
RUN_TIMEOUT = 120.0
BEARER = ["-H", "Authorization: Bearer alice"]

# The default threshold (64 MiB) and part size (8 MiB): a 70 MiB file takes nine parts.
FILES = {
    "name": "files",
    "protocol": "api",
    "path": "/api/files",
    "max_size": "100MiB",
    "content_types": ["text/plain", "application/octet-stream"],
    "forward": "/internal/uploads/files",
}
# The smallest parts a route allows (issue 4: 8 MiB), so 17 MiB takes three parts.
SMALL = {
    "name": "small",
    "protocol": "api",
    "path": "/api/small",
    "max_size": "20MiB",
    "content_types": ["application/octet-stream"],
    "forward": "/internal/uploads/small",
    "multipart_threshold": "5MiB",
    "part_size": "8MiB",
}

# What the front passes on to S3; everything else (cookies, credentials) would be a leak. Host
# is the front's own, which the presigned URLs signed: radosgw checks it, moto ignores it.
_FORWARDED = ("host", "content-length", "content-type", "content-md5")


@dataclass
class S3Front:
    """The bucket's public address in these tests: forwards to moto and watches what comes."""

    target: str
    session: aiohttp.ClientSession
    in_flight: int = 0
    max_in_flight: int = 0
    attempts: Counter[int] = field(default_factory=Counter)
    fail_once: set[int] = field(default_factory=set)
    fail_always: set[int] = field(default_factory=set)
    refuse: set[int] = field(default_factory=set)
    hold: bool = False
    holding: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    headers: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        part = int(request.query.get("partNumber", "0"))
        self.attempts[part] += 1
        self.headers.append({k.lower(): v for k, v in request.headers.items()})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.hold:
                # The body is never read: the client's sending stalls, as on a slow link.
                self.holding.set()
                await self.release.wait()
                return web.Response(status=503)
            if part in self.refuse:
                await request.read()
                return web.Response(
                    status=403,
                    content_type="application/xml",
                    text="<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
                )
            if part in self.fail_always or (part in self.fail_once and self.attempts[part] == 1):
                await request.read()
                return web.Response(
                    status=503,
                    content_type="application/xml",
                    text="<Error><Code>SlowDown</Code><Message>Reduce your rate.</Message></Error>",
                )
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() in _FORWARDED or k.lower().startswith("x-amz-")
            }
            async with self.session.request(
                request.method,
                URL(self.target + request.raw_path, encoded=True),
                data=request.content,
                headers=headers,
            ) as resp:
                body = await resp.read()
                kept = {
                    k: v for k, v in resp.headers.items() if k.lower() in ("etag", "content-type")
                }
                return web.Response(status=resp.status, body=body, headers=kept)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def s3_front(aiohttp_server: Any, s3_endpoint: str) -> AsyncIterator[tuple[S3Front, str]]:
    """The front and its URL (the ``public_endpoint_url`` the gateway signs URLs for)."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        front = S3Front(s3_endpoint, session)
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", front.handle)
        server: TestServer = await aiohttp_server(app)
        try:
            yield front, str(server.make_url("")).rstrip("/")
        finally:
            front.release.set()


@pytest.fixture
def front(s3_front: tuple[S3Front, str]) -> S3Front:
    return s3_front[0]


def gateway_config(tree: dict[str, Any], public: str, **overrides: Any) -> Config:
    """The gateway's config over ``tree`` (``s3_tree``): the two api routes, callers identified
    by auth_request, URLs signed for ``public``."""
    return build_config(
        tree,
        s3={"public_endpoint_url": public},
        routes=[FILES, SMALL],
        identity={"auth_request": {"path": "/api/me"}},
        **overrides,
    )


@pytest.fixture
async def gateway_url(
    serve_gateway: ServeGateway, s3_tree: dict[str, Any], s3_front: tuple[S3Front, str]
) -> str:
    """The live gateway's base URL; callers are identified by auth_request (bearer tokens)."""
    server = await serve_gateway(gateway_config(s3_tree, s3_front[1]))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def in_front(gateway_url: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy between the CLI and the gateway: the test picks what each call gets."""
    async with fault_proxy(gateway_url) as proxy:
        yield proxy


@dataclass
class Run:
    code: int
    out: str
    err: str


async def start(*args: str, **kwargs: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "upload",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=kwargs.pop("stdout", asyncio.subprocess.PIPE),
        stderr=asyncio.subprocess.PIPE,
        **kwargs,
    )


async def finish(proc: asyncio.subprocess.Process) -> Run:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, (out or b"").decode(), err.decode())


async def upload(*args: str) -> Run:
    return await finish(await start(*args))


def assert_one_line(run: Run, code: int, start: str) -> None:
    """The CLI's contract for an expected failure: exit ``code``, and one line on stderr that
    starts with ``start``, no traceback."""
    assert run.code == code, run.err
    assert "Traceback" not in run.err, run.err
    assert run.err.count("\n") == 1, run.err
    assert run.err.startswith(start), run.err


def write_file(path: Path, size: int) -> str:
    """A file of ``size`` bytes that sniffs as nothing in particular; its sha256."""
    digest = hashlib.sha256()
    head = b"upload-gateway test payload\n"
    with path.open("wb") as f:
        block = head + os.urandom(MiB - len(head))
        written = 0
        while written < size:
            piece = block[: min(len(block), size - written)]
            f.write(piece)
            digest.update(piece)
            written += len(piece)
            block = os.urandom(MiB)
    return digest.hexdigest()


class Bucket:
    def __init__(self, client: Any, names: BucketNames) -> None:
        self.client = client
        self.names = names

    async def keys(self, bucket: str) -> list[str]:
        answer = await self.client.list_objects_v2(Bucket=bucket)
        # Not the gateway's own records (owner records, leases: gateway/completion/sweep.py).
        keys = [item["Key"] for item in answer.get("Contents", [])]
        return [key for key in keys if not key.startswith(".gateway/")]

    async def sha256(self, bucket: str, key: str) -> str:
        digest = hashlib.sha256()
        answer = await self.client.get_object(Bucket=bucket, Key=key)
        async with answer["Body"] as body:
            async for chunk in body.iter_chunks(MiB):
                digest.update(chunk)
        return digest.hexdigest()

    async def open_uploads(self) -> list[str]:
        answer = await self.client.list_multipart_uploads(Bucket=self.names.uploads)
        return [item["Key"] for item in answer.get("Uploads", [])]


@pytest.fixture
def s3(s3_client: Any, buckets: BucketNames) -> Bucket:
    return Bucket(s3_client, buckets)


def assert_no_gateway_credentials_reached_s3(front: S3Front) -> None:
    assert front.headers, "nothing reached the S3 front"
    for headers in front.headers:
        assert "authorization" not in headers
        assert "cookie" not in headers


# --- whole uploads -------------------------------------------------------------------------------


async def test_70_mib_file_goes_up_in_parallel_parts_and_is_stored_once(
    gateway_url: str,
    front: S3Front,
    s3: Bucket,
    recorded: Recorded,
    tmp_path: Path,
    s3_server: S3Server,
) -> None:
    """A 70 MiB file: nine parts, four at a time, one stored copy with the same bytes."""
    path = tmp_path / "big.bin"
    digest = write_file(path, 70 * MiB)
    run = await upload(str(path), "--to", f"{gateway_url}/api/files", *BEARER, "--parallel", "4")
    assert run.code == 0, run.err

    assert sorted(front.attempts) == list(range(1, 10))
    assert 2 <= front.max_in_flight <= 4
    [stored_key] = await s3.keys(s3.names.storage)
    assert await s3.sha256(s3.names.storage, stored_key) == digest
    assert await s3.keys(s3.names.uploads) == []
    assert await s3.open_uploads() == []
    [completion] = recorded.completions
    assert completion["message"]["object"]["size"] == 70 * MiB
    assert_no_gateway_credentials_reached_s3(front)

    # Not a terminal: plain progress lines (no carriage returns), then the upstream's answer.
    assert "\r" not in run.out
    lines = run.out.splitlines()
    progress = [line for line in lines if line.startswith("[")]
    assert len(progress) >= 5
    assert "100.0%" in progress[-1] and "70.0MiB/70.0MiB" in progress[-1]
    assert all("/s" in line and "left" in line for line in progress)
    at = lines.index("uploaded big.bin (70.0MiB)")
    assert json.loads("\n".join(lines[at + 1 :])) == {"stored": True, "key": stored_key}


async def test_small_file_is_one_put_and_json_prints_only_the_answer(
    gateway_url: str,
    front: S3Front,
    s3: Bucket,
    tmp_path: Path,
    s3_server: S3Server,
) -> None:
    """Below the threshold: one PUT; with --json stdout holds the upstream's answer alone."""
    path = tmp_path / "notes.txt"
    path.write_text("hello, gateway\n")
    run = await upload(str(path), "--to", f"{gateway_url}/api/files", *BEARER, "--json")
    assert run.code == 0, run.err
    [stored_key] = await s3.keys(s3.names.storage)
    assert json.loads(run.out) == {"stored": True, "key": stored_key}
    assert len(run.out.splitlines()) == 1
    assert list(front.attempts) == [0]  # a single PUT, no part number
    assert front.headers[0]["content-type"] == "text/plain"
    assert "x-amz-checksum-sha256" in front.headers[0]
    assert_no_gateway_credentials_reached_s3(front)


async def test_failed_part_is_retried_with_back_off(
    gateway_url: str, front: S3Front, s3: Bucket, tmp_path: Path
) -> None:
    """A part S3 answers 503 is sent again, and the upload completes with the right bytes."""
    front.fail_once = {2}
    path = tmp_path / "data.bin"
    digest = write_file(path, 17 * MiB)
    run = await upload(str(path), "--to", f"{gateway_url}/api/small", *BEARER)
    assert run.code == 0, run.err
    assert front.attempts == Counter({1: 1, 2: 2, 3: 1})
    [stored_key] = await s3.keys(s3.names.storage)
    assert await s3.sha256(s3.names.storage, stored_key) == digest


async def test_progress_is_a_live_bar_on_a_terminal(
    gateway_url: str, s3: Bucket, tmp_path: Path
) -> None:
    """On a terminal the bar is redrawn in place (carriage returns), not printed line by line."""
    path = tmp_path / "data.bin"
    write_file(path, 3 * MiB)
    leader, follower = pty.openpty()
    try:
        proc = await start(str(path), "--to", f"{gateway_url}/api/files", *BEARER, stdout=follower)
    finally:
        os.close(follower)

    def drain() -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        out, run = await asyncio.gather(asyncio.to_thread(drain), finish(proc))
    finally:
        os.close(leader)
    assert run.code == 0, run.err
    text = out.decode()
    assert "\r[" in text and "100.0%" in text
    assert '"stored": true' in text


async def test_upstream_failure_at_completion_is_retried(
    gateway_url: str, s3: Bucket, recorded: Recorded, tmp_path: Path
) -> None:
    """A 502 from the completion (upstream down) is asked again; the file is stored once."""
    recorded.completion_status = 500

    async def recover() -> None:
        while not recorded.completions:
            await asyncio.sleep(0.01)
        recorded.completion_status = 200

    path = tmp_path / "data.bin"
    digest = write_file(path, 17 * MiB)
    run, _ = await asyncio.gather(
        upload(str(path), "--to", f"{gateway_url}/api/small", *BEARER, "--json"),
        asyncio.wait_for(recover(), RUN_TIMEOUT),
    )
    assert run.code == 0, run.err
    first, second = recorded.completions
    assert (first["status"], second["status"]) == (500, 200)
    assert first["idempotency_key"] == second["idempotency_key"]
    [stored_key] = await s3.keys(s3.names.storage)
    assert await s3.sha256(s3.names.storage, stored_key) == digest
    assert json.loads(run.out)["key"] == stored_key


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size", "expected"),
    [
        ("big.bin", 101 * MiB, "error: 413 Payload too large: The file is larger than"),
        ("page.html", 100, "error: 415 Unsupported media type: 'text/html' is not allowed"),
    ],
    ids=["too-large", "wrong-type"],
)
async def test_refused_file_is_one_readable_line_and_exit_1(
    gateway_url: str,
    front: S3Front,
    s3: Bucket,
    tmp_path: Path,
    name: str,
    size: int,
    expected: str,
) -> None:
    """The gateway's problem comes out as its title and detail on one line; nothing is sent."""
    path = tmp_path / name
    with path.open("wb") as f:
        f.truncate(size)
    run = await upload(str(path), "--to", f"{gateway_url}/api/files", *BEARER)
    assert run.code == 1
    assert run.err.startswith(expected), run.err
    assert run.err.count("\n") == 1
    assert run.out == ""
    assert front.attempts == Counter()
    assert await s3.keys(s3.names.uploads) == []


async def test_upstream_refusal_is_printed_and_nothing_is_left(
    gateway_url: str, s3: Bucket, recorded: Recorded, tmp_path: Path
) -> None:
    """The app refusing the file (4xx) is exit 1 with its message; no object stays anywhere."""
    recorded.completion_status = 422
    path = tmp_path / "data.bin"
    write_file(path, 17 * MiB)
    run = await upload(str(path), "--to", f"{gateway_url}/api/small", *BEARER)
    assert run.code == 1
    assert run.err == "error: 422 upstream refused\n"
    assert len(recorded.completions) == 1
    assert await s3.keys(s3.names.storage) == []
    assert await s3.keys(s3.names.uploads) == []
    assert await s3.open_uploads() == []


async def test_part_refused_by_s3_stops_the_upload_and_aborts_it(
    gateway_url: str, front: S3Front, s3: Bucket, recorded: Recorded, tmp_path: Path
) -> None:
    """A 4xx from S3 is not retried: the other parts stop, the upload is aborted, exit 1."""
    front.refuse = {2}
    path = tmp_path / "data.bin"
    write_file(path, 17 * MiB)
    run = await upload(str(path), "--to", f"{gateway_url}/api/small", *BEARER, "--parallel", "1")
    assert run.code == 1
    assert run.err.startswith("error: S3 refused the upload (403): AccessDenied: Access Denied")
    assert run.err.count("\n") == 1
    assert front.attempts[2] == 1
    assert 3 not in front.attempts  # parallel 1: part 3 waited, and never started
    assert await s3.open_uploads() == []
    assert recorded.completions == []


async def test_caller_without_identity_is_told_so(gateway_url: str, tmp_path: Path) -> None:
    """Without credentials the gateway's 401 is printed as one line, exit 1."""
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", f"{gateway_url}/api/files")
    assert run.code == 1
    assert run.err.startswith("error: 401 Not authenticated: ")
    assert run.err.count("\n") == 1


async def test_unreachable_gateway_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """No gateway listening: a short error, not a traceback."""
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", f"http://127.0.0.1:{free_port()}/api/files", *BEARER)
    assert run.code == 1
    assert run.err.startswith("error: cannot reach ")
    assert run.err.count("\n") == 1
    assert "Traceback" not in run.err


async def test_url_that_is_not_an_api_route_is_told_so(gateway_url: str, tmp_path: Path) -> None:
    """A --to that the gateway proxies (the app answers something else) is exit 1, no traceback."""
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", f"{gateway_url}/echo/upload", *BEARER)
    assert run.code == 1
    assert run.err.startswith(
        f"error: {gateway_url}/echo/upload is not an api route (it answered without an upload): "
        "--to must be the URL of a route with protocol: api"
    )
    assert run.err.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.bin", "--to", "http://127.0.0.1:1/x"], "error: MISSING: no such file"),
        (["DIR", "--to", "http://127.0.0.1:1/x"], "error: DIR: is a directory, not a file"),
        (["FIFO", "--to", "http://127.0.0.1:1/x"], "error: FIFO: not a regular file"),
        (["EXISTING", "--to", "http://127.0.0.1:1/x", "-H", "no colon"], "error: bad header"),
        (["EXISTING", "--to", "127.0.0.1:8080/api/files"], "error: --to 127.0.0.1:8080/api"),
        (["EXISTING", "--to", "http://127.0.0.1:1/x", "--parallel", "0"], "upload-gateway upload"),
        (["EXISTING"], "upload-gateway upload: error: the following arguments are required: --to"),
    ],
    ids=["no-file", "directory", "fifo", "bad-header", "not-a-url", "parallel-0", "no-to"],
)
async def test_bad_usage_exits_2(tmp_path: Path, args: list[str], expected: str) -> None:
    """Usage mistakes (the file, the URL, an option) are one line and exit 2, before anything
    is sent; a pipe is refused rather than opened (which would block)."""
    existing = tmp_path / "a.txt"
    existing.write_text("x")
    os.mkfifo(tmp_path / "fifo")
    names = {
        "EXISTING": str(existing),
        "MISSING": str(tmp_path / "missing.bin"),
        "DIR": str(tmp_path),
        "FIFO": str(tmp_path / "fifo"),
    }
    argv = [names.get(a, names["MISSING"] if a == "missing.bin" else a) for a in args]
    for name, value in names.items():
        expected = expected.replace(name, value)
    assert_one_line(await upload(*argv), 2, expected)


# --- failures of each call -----------------------------------------------------------------------


async def test_app_down_at_the_first_call_is_one_line(
    serve_gateway: ServeGateway, s3_tree: dict[str, Any], s3_endpoint: str, tmp_path: Path
) -> None:
    """README's own example with the app down: the gateway's 502 to the first call (asking the
    app who the caller is) is one line saying to try again, not a traceback (issue 18)."""
    dead = {"url": f"http://127.0.0.1:{free_port()}"}
    server = await serve_gateway(gateway_config(s3_tree, s3_endpoint, upstream=dead))
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", str(server.make_url("/api/files")), *BEARER)
    assert_one_line(run, 1, "error: 502 Upstream unavailable: ")
    assert run.err.rstrip().endswith("try again once it is up")


@pytest.mark.parametrize(
    ("status", "advice"),
    [
        (500, "the server failed; try again later"),
        (502, "try again once it is up"),
        (503, "S3 or the gateway is unavailable; try again later"),
        (504, "did not answer in time; try again later"),
    ],
)
async def test_5xx_to_the_first_call_is_one_line(
    in_front: FaultProxy, s3: Bucket, tmp_path: Path, status: int, advice: str
) -> None:
    """Each server error to the call that creates the upload is one line with what to do and
    exit 1; nothing was started, so nothing is asked again or left behind."""
    create = Match(method="POST", path="/api/files")
    in_front.inject(create, Fault("status", status=status))
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", f"{in_front.url}/api/files", *BEARER)
    assert_one_line(run, 1, f"error: {status} ")
    assert run.err.rstrip().endswith(advice)
    assert in_front.count(create) == 1
    assert await s3.keys(s3.names.uploads) == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault("close"), "error: http://127.0.0.1:PORT: the connection failed: "),
        (Fault("hold"), "error: http://127.0.0.1:PORT: no answer in 0.5 s: is the gateway"),
    ],
    ids=["closed", "silent"],
)
async def test_first_call_unanswered_is_one_line(
    in_front: FaultProxy, tmp_path: Path, fault: Fault, expected: str
) -> None:
    """A connection closed without an answer, or a server silent past --timeout, is one line
    naming the server (never the whole URL) and exit 1."""
    in_front.inject(Match(method="POST", path="/api/files"), fault)
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", f"{in_front.url}/api/files", *BEARER, "--timeout", "0.5")
    assert_one_line(run, 1, expected.replace("PORT", str(URL(in_front.url).port)))


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/status/404", "404 Not Found"),
        ("/status/405", "405 Method Not Allowed"),
        ("/api/files/extra", "404 Not Found"),
    ],
    ids=["app-404", "app-405", "under-an-api-route"],
)
async def test_404_from_a_route_that_is_not_an_api_route_says_so(
    gateway_url: str, tmp_path: Path, path: str, answer: str
) -> None:
    """A --to the app answers 404 or 405 (or the gateway, under an api route's path) is told
    it is not an api route, with what --to must be, instead of "404 Not Found: 404: Not Found"."""
    file = tmp_path / "a.txt"
    file.write_text("x")
    run = await upload(str(file), "--to", gateway_url + path, *BEARER)
    assert_one_line(
        run,
        1,
        f"error: {gateway_url}{path} is not an api route (it answered {answer}): "
        "--to must be the URL of a route with protocol: api in the gateway's config",
    )


async def test_completion_failing_for_good_is_one_line_and_keeps_the_upload(
    in_front: FaultProxy, s3: Bucket, tmp_path: Path
) -> None:
    """A completion answered 503 every time is asked five times, then one line says the file was
    sent and to run the upload again; it is not aborted (the gateway keeps it for a retry)."""
    complete = Match(method="POST", path_prefix="/api/files/")
    in_front.inject(complete, Fault("status", status=503))
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", f"{in_front.url}/api/files", *BEARER)
    assert_one_line(run, 1, "error: the file was sent, but completing it failed 5 times (503 ")
    assert run.err.rstrip().endswith("run the upload again later")
    assert in_front.count(complete) == 5
    assert in_front.count(Match(method="DELETE")) == 0
    assert len(await s3.keys(s3.names.uploads)) == 1


async def test_s3_failing_for_good_is_one_line_and_aborts(
    gateway_url: str, front: S3Front, s3: Bucket, tmp_path: Path
) -> None:
    """A PUT that S3 answers 503 every time is sent five times, then one line with S3's own
    error and exit 1; the upload is aborted at the gateway."""
    front.fail_always = {0}
    path = tmp_path / "a.txt"
    path.write_text("x")
    run = await upload(str(path), "--to", f"{gateway_url}/api/files", *BEARER)
    assert_one_line(run, 1, "error: S3 failed 5 times (503): SlowDown: Reduce your rate.")
    assert front.attempts[0] == 5
    assert await s3.keys(s3.names.uploads) == []


# --- Ctrl-C --------------------------------------------------------------------------------------


async def test_ctrl_c_aborts_the_multipart_upload(
    gateway_url: str, front: S3Front, s3: Bucket, recorded: Recorded, tmp_path: Path
) -> None:
    """SIGINT mid-upload aborts the multipart upload at the gateway, then exits 130."""
    front.hold = True
    path = tmp_path / "data.bin"
    write_file(path, 17 * MiB)
    proc = await start(str(path), "--to", f"{gateway_url}/api/small", *BEARER)
    try:
        await asyncio.wait_for(front.holding.wait(), RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        raise
    [open_key] = await s3.open_uploads()
    assert open_key.endswith(".bin")

    proc.send_signal(signal.SIGINT)
    run = await finish(proc)
    assert run.code == 130, run.err
    assert "interrupted: the upload was aborted" in run.err
    assert "Traceback" not in run.err
    assert await s3.open_uploads() == []
    assert await s3.keys(s3.names.uploads) == []
    assert recorded.completions == []


async def test_ctrl_c_before_the_upload_started(in_front: FaultProxy, tmp_path: Path) -> None:
    """SIGINT while the first call waits for its answer: one line saying nothing was uploaded,
    exit 130, no traceback."""
    held = in_front.inject(Match(method="POST", path="/api/files"), Fault("hold"))
    path = tmp_path / "a.txt"
    path.write_text("x")
    proc = await start(str(path), "--to", f"{in_front.url}/api/files", *BEARER)
    try:
        await asyncio.wait_for(held.arrived.wait(), RUN_TIMEOUT)
    except TimeoutError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGINT)
    assert_one_line(await finish(proc), 130, "interrupted: nothing was uploaded")
