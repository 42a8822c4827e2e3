"""Real completion and deletion messages, verified by the maintained Standard Webhooks libraries.

The messages are the gateway's own: an upload in moto's S3, completed and deleted by the real
completion pipeline, POSTed over a socket. They are checked with the ``standardwebhooks`` package
from PyPI in this process and with the ``standardwebhooks`` package from npm run by Node, inside
the very handlers docs/webhooks.md shows (docs/examples/receive_node.mjs and receive_aiohttp.py),
started as real servers that the gateway forwards to. Both forms of ``webhook.secret`` are used:
a plain one, and ``whsec_<base64>``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gateway import keys, webhook
from gateway.buckets import BucketNames
from gateway.completion import ID_PURPOSE, Completion, CompletionRequest
from gateway.config import RouteConfig, UpstreamConfig
from gateway.identity import Identity
from gateway.storage import Storage
from gateway.upstream import Upstream, UpstreamAnswer
from tests.support.gateway import SESSION_KEY, build_config, config_dict
from tests.support.upstream import WEBHOOK_SECRET, Delivery, Recorded

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
DOCS = ROOT / "docs" / "webhooks.md"
ID_KEY = keys.derive(SESSION_KEY, ID_PURPOSE)
START_TIMEOUT = 30.0
# 32 fixed bytes, as an operator would generate them, in the form the libraries take.
WHSEC = "whsec_" + base64.b64encode(bytes(range(100, 132))).decode()
OTHER_WHSEC = "whsec_" + base64.b64encode(bytes(range(32))).decode()
# Past the five minutes every Standard Webhooks library tolerates.
OLD = timedelta(minutes=6)


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


PNG = _png()


def app_secret(gateway_secret: str) -> str:
    """What the app gives its library, by docs/webhooks.md's rule (written out, not imported)."""
    if gateway_secret.startswith("whsec_"):
        return gateway_secret
    return "whsec_" + base64.b64encode(gateway_secret.encode("utf-8")).decode()


@pytest.fixture(params=["plain", "whsec"])
def secret(request: pytest.FixtureRequest) -> str:
    """webhook.secret in each form the gateway accepts."""
    return WEBHOOK_SECRET if request.param == "plain" else WHSEC


@pytest.fixture
def route(upstream_url: str) -> RouteConfig:
    return build_config(config_dict(upstream_url)).routes[0]


@pytest.fixture
def alice() -> Identity:
    digest = keys.user_hash(SESSION_KEY, "alice")
    return Identity("alice", digest, f"{digest}/")


@dataclass
class Recording:
    """A real Upstream that also keeps what was sent through it and what came back."""

    inner: Upstream
    sent: list[Delivery] = field(default_factory=list)
    answers: list[UpstreamAnswer] = field(default_factory=list)

    async def call(
        self,
        method: str,
        raw_path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> UpstreamAnswer:
        self.sent.append(Delivery(raw_path, dict(headers or {}), body or b""))
        answer = await self.inner.call(
            method, raw_path, headers=headers, body=body, timeout=timeout
        )
        self.answers.append(answer)
        return answer


@contextlib.asynccontextmanager
async def completion_to(
    storage: Storage, url: str, secret: str
) -> AsyncIterator[tuple[Completion, Recording]]:
    """The completion pipeline sending to ``url``, signing with ``secret``."""
    async with Upstream.open(UpstreamConfig(url=url, connect_timeout=2, read_timeout=5)) as up:
        recording = Recording(up)
        yield (
            Completion(storage, recording, webhook_secret=secret, id_key=ID_KEY, webhook_timeout=5),
            recording,
        )


async def complete_and_delete(
    completion: Completion, route: RouteConfig, who: Identity, s3_client: Any, bucket: str
) -> str:
    """Upload, complete and delete one file; the stored copy's key."""
    key = f"{who.key_prefix}{os.urandom(4).hex()}.png"
    await s3_client.put_object(Bucket=bucket, Key=key, Body=PNG, ContentType="image/png")
    done = await completion.complete(CompletionRequest(route, who, key, "cat.png"))
    assert done.status == 200 and done.stored is not None, done.body
    assert await completion.delete_upload(route, who, key, {}) is True
    return done.stored.key


def signature_t(headers: Mapping[str, str]) -> str:
    match = re.fullmatch(r"t=(\d+),v1=[0-9a-f]{64}", headers[webhook.HEADER])
    assert match, headers[webhook.HEADER]
    return match[1]


def resigned(delivery: Delivery, secret: str, when: datetime) -> dict[str, str]:
    """The delivery's headers signed again by the PyPI library, with ``secret``, at ``when``."""
    message_id = delivery.headers["webhook-id"]
    return {
        **delivery.headers,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, when, delivery.body),
    }


# ----------------------------------------------------------------------------- the PyPI library


async def test_real_messages_verify_with_the_python_library(
    secret: str,
    route: RouteConfig,
    alice: Identity,
    storage: Storage,
    s3_client: Any,
    buckets: BucketNames,
    upstream_url: str,
    recorded: Recorded,
) -> None:
    """A completion and a deletion, as the test upstream received them, verify with the PyPI
    ``standardwebhooks`` package given the secret's whsec_ form (a plain secret's UTF-8 bytes in
    base64); webhook-id is the Idempotency-Key and the timestamp X-Upload-Signature's. The same
    messages with a changed body, checked with another secret, or signed over six minutes ago
    are refused."""
    recorded.secret = secret
    async with completion_to(storage, upstream_url, secret) as (completion, _):
        stored_key = await complete_and_delete(completion, route, alice, s3_client, buckets.uploads)

    completed, deleted = recorded.deliveries
    assert [e["status"] for e in recorded.completions] == [200, 200]  # the upstream verified both
    verifier = Webhook(app_secret(secret))
    messages = [verifier.verify(d.body, d.headers) for d in (completed, deleted)]
    assert [m["event"] for m in messages] == ["upload.completed", "upload.deleted"]
    assert all(m["object"]["key"] == stored_key for m in messages)
    for delivery in (completed, deleted):
        assert delivery.headers["webhook-id"] == delivery.headers["Idempotency-Key"]
        assert delivery.headers["webhook-timestamp"] == signature_t(delivery.headers)
        assert abs(int(delivery.headers["webhook-timestamp"]) - time.time()) < 60
    assert completed.headers["webhook-id"] == messages[0]["id"]
    # The deletion is a message of its own: an app deduplicating by id must not drop it.
    assert deleted.headers["webhook-id"] != completed.headers["webhook-id"]

    now = datetime.now(UTC)
    for delivery in (completed, deleted):
        tampered = delivery.body.replace(b'"alice"', b'"mallory"')
        assert tampered != delivery.body
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            verifier.verify(tampered, delivery.headers)
        with pytest.raises(WebhookVerificationError, match="No matching signature"):
            Webhook(OTHER_WHSEC).verify(delivery.body, delivery.headers)
        with pytest.raises(WebhookVerificationError, match="too old"):
            verifier.verify(delivery.body, resigned(delivery, app_secret(secret), now - OLD))
        # The re-signing is right: at the current time the same headers pass.
        verifier.verify(delivery.body, resigned(delivery, app_secret(secret), now))


# ----------------------------------------------------------------------------- the docs' handlers


@dataclass
class Served:
    url: str
    process: asyncio.subprocess.Process
    output: list[str]


@contextlib.asynccontextmanager
async def serve_example(command: list[str], secret: str) -> AsyncIterator[Served]:
    """Run a docs example as its readers would, on a free loopback port, until the test ends."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "UPLOAD_WEBHOOK_SECRET": secret,
        "HOST": "127.0.0.1",
        "PORT": "0",
        "PYTHONUNBUFFERED": "1",
    }
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"{command} exited: {''.join(output)}")
                output.append(line)
                if found := re.search(r"http://127\.0\.0\.1:\d+", line):
                    break

        async def keep_reading() -> None:
            assert process.stdout is not None
            while line := await process.stdout.readline():
                output.append(line.decode())

        drain = asyncio.create_task(keep_reading())
        yield Served(found[0], process, output)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if drain is not None:
            await drain


def _node() -> list[str]:
    node = shutil.which("node")
    assert node, "node is needed (scripts/setup.sh installs the npm packages it runs)"
    return [node, str(EXAMPLES / "receive_node.mjs")]


HANDLERS = {
    "node-http": _node,
    "aiohttp": lambda: [sys.executable, str(EXAMPLES / "receive_aiohttp.py")],
}


async def post(url: str, delivery: Delivery, headers: Mapping[str, str] | None = None) -> Any:
    """POST a delivery (with other headers, if given) to a handler: (status, JSON answer)."""
    hop = ("host", "content-length")
    sent = {k: v for k, v in (headers or delivery.headers).items() if k.lower() not in hop}
    async with (
        aiohttp.ClientSession() as client,
        client.post(url + delivery.path, data=delivery.body, headers=sent) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize("handler", sorted(HANDLERS))
async def test_the_docs_handlers_verify_what_the_gateway_sends(
    handler: str,
    secret: str,
    route: RouteConfig,
    alice: Identity,
    storage: Storage,
    s3_client: Any,
    buckets: BucketNames,
) -> None:
    """The handler docs/webhooks.md shows (Node's http with the npm ``standardwebhooks``, aiohttp
    with the PyPI one), run as a server: the gateway's real completion and deletion are accepted,
    a retried completion (same webhook-id, fresh signature) and each message delivered again get
    their first answer, and the completion re-sent with a changed body, signed with another
    secret, or signed six minutes ago is refused with 401."""
    async with (
        serve_example(HANDLERS[handler](), app_secret(secret)) as served,
        completion_to(storage, served.url, secret) as (completion, sent),
    ):
        key = f"{alice.key_prefix}{os.urandom(4).hex()}.png"
        await s3_client.put_object(
            Bucket=buckets.uploads, Key=key, Body=PNG, ContentType="image/png"
        )
        first = await completion.complete(CompletionRequest(route, alice, key, "cat.png"))
        assert first.stored is not None
        assert (first.status, first.body) == (200, {"recorded": first.stored.key}), served.output
        retry = await completion.complete(CompletionRequest(route, alice, key, "cat.png"))
        assert (retry.status, retry.body) == (200, first.body)
        assert await completion.delete_upload(route, alice, key, {}) is True
        assert [a.status for a in sent.answers] == [200, 200, 200]
        assert json.loads(sent.answers[2].body) == {"deleted": first.stored.key}
        genuine, again, deletion = sent.sent
        assert again.headers["webhook-id"] == genuine.headers["webhook-id"]

        now = datetime.now(UTC)
        refused = {
            "changed body": (genuine.body.replace(b'"alice"', b'"mallory"'), genuine.headers),
            "another secret": (genuine.body, resigned(genuine, OTHER_WHSEC, now)),
            "six minutes old": (genuine.body, resigned(genuine, app_secret(secret), now - OLD)),
        }
        for why, (body, headers) in refused.items():
            status, answer = await post(served.url, Delivery(genuine.path, {}, body), headers)
            expected = "Message timestamp too old" if why == "six minutes old" else None
            assert status == 401, (why, answer)
            assert answer["error"] == (expected or "No matching signature found"), why
        # Delivered again, each genuine message is a repeat: its first answer, nothing done twice
        # (the deletion finds no file gone, the completion does not bring the file back).
        assert await post(served.url, deletion) == (200, {"deleted": first.stored.key})
        assert await post(served.url, genuine) == (200, first.body)
    assert "Error" not in "".join(served.output), served.output


def test_the_docs_commands_make_secrets_both_sides_take() -> None:
    """docs/webhooks.md's one-liners: the first prints a plain secret's whsec_ form, which the
    PyPI library verifies the gateway's headers with; the second makes a 32-byte whsec_ secret
    the gateway takes."""
    convert, generate = re.findall(
        r"^```sh\n(.*?)^```", DOCS.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL
    )
    plain = "sécret-clé-0123456789"
    env = {**os.environ, "GATEWAY_WEBHOOK_SECRET": plain}
    run = {"capture_output": True, "text": True, "check": True, "timeout": 30}
    converted = subprocess.run(["sh", "-c", convert], env=env, **run).stdout.strip()
    assert converted == "whsec_" + base64.b64encode(plain.encode("utf-8")).decode()
    body = b'{"event":"upload.completed"}'
    Webhook(converted).verify(body, webhook.standard_headers(plain, "m1", body))
    generated = subprocess.run(["sh", "-c", generate], env=env, **run).stdout.strip()
    webhook.check_secret(generated)
    assert len(webhook.secret_key(generated)) == 32


async def test_a_malformed_whsec_secret_stops_the_completion_from_being_built(
    storage: Storage,
) -> None:
    """The gateway refuses a whsec_ secret no library could use when it starts, not when a
    message is sent."""
    with pytest.raises(ValueError, match="decodes to 16 bytes"):
        Completion(
            storage,
            Recording(None),  # type: ignore[arg-type]  # never called
            webhook_secret="whsec_" + base64.b64encode(b"0123456789abcdef").decode(),
            id_key=ID_KEY,
            webhook_timeout=5,
        )
