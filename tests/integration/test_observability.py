"""Operations endpoints, metrics, logs and request ids (gateway/ops.py, docs/ops.md).

Readiness is probed against real dependencies that are up, down (a closed loopback port) or
hanging (a fault proxy holding every request). Metrics are scraped and parsed with
prometheus-client's own parser. Logs are read from a real ``python -m gateway serve`` process's
output after a full round of traffic, and searched for every secret that traffic carried.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from gateway.buckets import BucketNames
from gateway.ops import READY_TIMEOUT
from tests.support.faults import Fault, Match, fault_proxy
from tests.support.gateway import (
    SECRET_ACCESS_KEY,
    SESSION_KEY,
    build_config,
    config_dict,
    gateway_app,
)
from tests.support.processes import GatewayProcess, StartProcess, free_port, served, serving
from tests.support.upstream import WEBHOOK_SECRET, Recorded

PHOTOS = "/uploads/photos"
FILES_PATH = "/api/files"
FILES = {
    "name": "files",
    "protocol": "api",
    "path": FILES_PATH,
    "max_size": "1MiB",
    "content_types": ["text/plain", "application/octet-stream"],
    "forward": "/internal/uploads/files",
}
ALICE = {"Authorization": "Bearer alice"}
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
LOG_TIMEOUT = 5.0


def tree_for(upstream_url: str, s3_endpoint: str, buckets: BucketNames) -> dict[str, Any]:
    """A Fine Uploader route (photos) and an api route (files) on moto; auth_request identity."""
    tree = config_dict(
        upstream_url,
        s3_endpoint=s3_endpoint,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )
    tree["routes"] = [*tree["routes"], FILES]
    tree["identity"] = {"auth_request": {"path": "/api/me"}}
    return tree


# --------------------------------------------------------------------------- helpers


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(text: str, sample: str, **labels: str) -> float:
    """The value of the sample named ``sample`` with exactly ``labels`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and s.labels == labels:
                return float(s.value)
    return 0.0


async def scrape(base: str) -> str:
    async with aiohttp.ClientSession() as client, client.get(base + "/-/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=")
        return await resp.text()


async def readyz(base: str) -> tuple[int, dict[str, Any], float]:
    """Status, JSON body and seconds taken of one ``GET /-/readyz``."""
    started = time.monotonic()
    async with aiohttp.ClientSession() as client, client.get(base + "/-/readyz") as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body, time.monotonic() - started


def json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects of a log; anything else (a traceback, a warning) is skipped."""
    lines = []
    for line in text.splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            lines.append(parsed)
    return lines


def access_lines(text: str) -> dict[str, dict[str, Any]]:
    """The access lines of a log, by request id."""
    return {
        line["request_id"]: line
        for line in json_lines(text)
        if line.get("event") == "request" and "request_id" in line
    }


async def until_logged(gateway: GatewayProcess, ids: list[str]) -> dict[str, dict[str, Any]]:
    """Poll the process's log until an access line of every id is there (lines are batched)."""
    async with asyncio.timeout(LOG_TIMEOUT):
        while True:
            lines = access_lines(gateway.log())
            if all(i in lines for i in ids):
                return lines
            await asyncio.sleep(0.02)


def v2_policy(bucket: str, key: str) -> dict[str, Any]:
    """A Fine Uploader v2 POST policy for one JPEG (the gateway sets its own expiration)."""
    return {
        "expiration": "2030-01-01T00:00:00.000Z",
        "conditions": [
            {"acl": "private"},
            {"bucket": bucket},
            {"Content-Type": "image/jpeg"},
            {"success_action_status": "200"},
            {"key": key},
            {"x-amz-meta-qqfilename": "cat.jpg"},
            ["content-length-range", "0", "1000000"],
        ],
    }


@dataclass
class Traffic:
    """What one round of traffic sent and got: the request ids and every secret it carried."""

    ids: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    refusal_reason: str = ""
    upstream_seen_id: str = ""


async def run_traffic(base: str, buckets: BucketNames) -> Traffic:
    """Log in, a proxied request with a secret query, an api upload (grant, PUT, completion),
    a refused and an issued Fine Uploader signature; each request with its own X-Request-ID."""
    out = Traffic()
    tag = uuid.uuid4().hex[:8]

    def rid(name: str) -> dict[str, str]:
        out.ids[name] = f"{name}-{tag}"
        return {"X-Request-ID": out.ids[name]}

    origin = {"Origin": base}
    jar = aiohttp.CookieJar(unsafe=True)  # the default jar ignores cookies of IP hosts
    async with (
        aiohttp.ClientSession(cookie_jar=jar) as browser,
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
    ):
        async with browser.get(base + "/login?user=alice", headers=rid("login")) as resp:
            assert resp.status == 200
        session_cookie = jar.filter_cookies(URL(base))["gateway_session"].value
        out.secrets["session cookie"] = session_cookie

        query = "X-Amz-Signature=proxiedquerysecret0123&token=t0psecret"
        async with browser.get(f"{base}/echo/page?{query}", headers=rid("proxied")) as resp:
            assert resp.status == 200
            echoed = await resp.json()
        out.secrets["proxied query"] = query
        out.upstream_seen_id = dict(echoed["headers"]).get("X-Request-ID", "")

        data = b"observability test file\n" * 40
        grant = {
            "filename": "notes.txt",
            "content_type": "application/octet-stream",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        async with http.post(base + FILES_PATH, json=grant, headers={**ALICE, **rid("grant")}) as r:
            assert r.status == 201, await r.text()
            granted = await r.json()
        presigned = urlsplit(granted["url"])
        out.secrets["presigned query"] = presigned.query
        out.secrets["presigned signature"] = re.search(
            r"X-Amz-Signature=([0-9a-f]+)", presigned.query
        ).group(1)  # type: ignore[union-attr]
        async with http.put(granted["url"], data=data, headers=granted["headers"]) as resp:
            assert resp.status == 200, await resp.text()
        async with http.post(
            f"{base}{FILES_PATH}/{granted['upload_id']}/complete",
            json={"parts": []},
            headers={**ALICE, **rid("complete")},
        ) as resp:
            assert resp.status == 200, await resp.text()

        async with browser.get(base + f"{PHOTOS}/config", headers=rid("config")) as resp:
            assert resp.status == 200, await resp.text()
            prefix = (await resp.json())["keyPrefix"]
        outside = v2_policy(buckets.uploads, f"someone-else/{uuid.uuid4()}.jpg")
        async with browser.post(
            f"{base}{PHOTOS}/signature", json=outside, headers={**origin, **rid("refused")}
        ) as resp:
            assert resp.status == 400
            refused = await resp.json(content_type=None)
        assert refused["invalid"] is True and "signature" not in refused
        out.refusal_reason = refused["reason"]
        inside = v2_policy(buckets.uploads, f"{prefix}{uuid.uuid4()}.jpg")
        async with browser.post(
            f"{base}{PHOTOS}/signature", json=inside, headers={**origin, **rid("signed")}
        ) as resp:
            assert resp.status == 200, await resp.text()
            signed = await resp.json()
        out.secrets["policy signature"] = signed["signature"]
        out.secrets["signed policy"] = signed["policy"]
    out.secrets["authorization"] = ALICE["Authorization"]
    out.secrets["webhook secret"] = WEBHOOK_SECRET
    out.secrets["S3 secret"] = SECRET_ACCESS_KEY
    out.secrets["session key"] = SESSION_KEY
    return out


# --------------------------------------------------------------------------- /-/readyz


@pytest.fixture
async def serve_tree() -> AsyncIterator[Callable[[dict[str, Any]], Any]]:
    """``await serve_tree(tree)``: the gateway for ``tree`` served in process; its base URL."""
    async with AsyncExitStack() as stack:

        async def start(tree: dict[str, Any]) -> str:
            url: str = await stack.enter_async_context(served(gateway_app(build_config(tree))))
            return url

        yield start


async def test_readyz_is_ready_when_upstream_and_s3_answer(
    serve_tree: Any, upstream_url: str, s3_endpoint: str, buckets: BucketNames
) -> None:
    """With both dependencies answering, readyz says 200 and every check is ok."""
    base = await serve_tree(tree_for(upstream_url, s3_endpoint, buckets))
    status, body, _ = await readyz(base)
    assert (status, body) == (
        200,
        {"status": "ready", "checks": {"upstream": "ok", "s3": "ok"}, "down": []},
    )


@pytest.mark.parametrize(
    "down", [["upstream"], ["s3"], ["upstream", "s3"]], ids=["upstream", "s3", "both"]
)
async def test_readyz_names_what_is_down(
    serve_tree: Any, upstream_url: str, s3_endpoint: str, buckets: BucketNames, down: list[str]
) -> None:
    """A dependency on a closed port makes readyz 503, naming exactly that one, quickly."""
    dead = f"http://127.0.0.1:{free_port()}"
    tree = tree_for(
        dead if "upstream" in down else upstream_url,
        dead if "s3" in down else s3_endpoint,
        buckets,
    )
    base = await serve_tree(tree)
    status, body, took = await readyz(base)
    assert status == 503
    assert body["status"] == "not-ready"
    assert body["down"] == down
    for name in ("upstream", "s3"):
        assert (body["checks"][name] == "ok") == (name not in down), body
    assert took < READY_TIMEOUT + 1.5


async def test_readyz_names_a_missing_bucket(
    serve_tree: Any, upstream_url: str, s3_endpoint: str, buckets: BucketNames
) -> None:
    """S3 answering is not enough: a configured bucket that does not exist is S3 not ready."""
    gone = BucketNames(buckets.uploads, f"missing-{uuid.uuid4().hex[:12]}")
    base = await serve_tree(tree_for(upstream_url, s3_endpoint, gone))
    status, body, _ = await readyz(base)
    assert status == 503
    assert body["down"] == ["s3"]
    assert body["checks"]["s3"] == "no-such-bucket"


@pytest.mark.parametrize("hung", ["upstream", "s3"])
async def test_readyz_answers_within_its_timeout_when_a_dependency_hangs(
    serve_tree: Any, upstream_url: str, s3_endpoint: str, buckets: BucketNames, hung: str
) -> None:
    """A dependency that accepts the connection and never answers is reported down after the
    short readiness timeout, not after the upstream's or S3's long read timeouts."""
    target = upstream_url if hung == "upstream" else s3_endpoint
    async with fault_proxy(target) as proxy:
        rule = proxy.inject(Match(), Fault("hold"))
        tree = tree_for(
            proxy.url if hung == "upstream" else upstream_url,
            proxy.url if hung == "s3" else s3_endpoint,
            buckets,
        )
        base = await serve_tree(tree)
        status, body, took = await readyz(base)
        assert rule.hits >= 1  # the probe really reached the hanging dependency
    assert status == 503
    assert body["down"] == [hung]
    assert READY_TIMEOUT - 0.2 < took < READY_TIMEOUT + 1.5


async def test_concurrent_readyz_probes_share_one_round_of_checks(
    serve_tree: Any, upstream_url: str, s3_endpoint: str, buckets: BucketNames
) -> None:
    """Probes arriving together cost the upstream one request, not one each (no amplification
    of a burst of probes into a burst of upstream and S3 calls)."""
    async with fault_proxy(upstream_url) as proxy:
        proxy.inject(Match(method="HEAD"), Fault("delay", seconds=0.3))
        base = await serve_tree(tree_for(proxy.url, s3_endpoint, buckets))
        answers = await asyncio.gather(*(readyz(base) for _ in range(10)))
        assert [status for status, _, _ in answers] == [200] * 10
        assert proxy.count(Match(method="HEAD")) == 1
        # A later probe is a new round: results are not cached past the round in flight.
        await readyz(base)
        assert proxy.count(Match(method="HEAD")) == 2


# --------------------------------------------------------------------------- /-/metrics

SPEC_METRICS = {
    "gateway_requests": ("counter", {"route", "status"}),
    "gateway_signatures": ("counter", {"route", "outcome", "reason"}),
    "gateway_completions": ("counter", {"route", "outcome", "trigger"}),
    "gateway_upstream_latency_seconds": ("histogram", set()),
}


async def test_metrics_expose_every_spec_metric(
    serve_tree: Any, upstream_url: str, s3_endpoint: str, buckets: BucketNames
) -> None:
    """The scrape parses as Prometheus text and holds every metric docs/ops.md lists, typed, with
    the labels it names (requests by route and status, signatures by outcome and reason...)."""
    base = await serve_tree(tree_for(upstream_url, s3_endpoint, buckets))
    await run_traffic(base, buckets)
    found = families(await scrape(base))
    for name, (kind, labels) in SPEC_METRICS.items():
        assert name in found, sorted(found)
        assert found[name].type == kind
        assert found[name].samples, name
        for sample in found[name].samples:
            assert set(sample.labels) - {"le"} == labels, sample


async def test_metrics_move_with_traffic(
    serve_tree: Any, upstream_url: str, s3_endpoint: str, buckets: BucketNames
) -> None:
    """Each kind of traffic moves its own counter by exactly what was sent: proxied requests,
    an issued and a refused signature (with its reason), a completion, upstream latency."""
    base = await serve_tree(tree_for(upstream_url, s3_endpoint, buckets))
    before = await scrape(base)
    traffic = await run_traffic(base, buckets)
    after = await scrape(base)

    def delta(sample: str, **labels: str) -> float:
        return value(after, sample, **labels) - value(before, sample, **labels)

    requests = "gateway_requests_total"
    assert delta(requests, route="proxy", status="200") == 2  # /login, /echo/page
    assert delta(requests, route="files", status="201") == 1
    assert delta(requests, route="files", status="200") == 1
    assert delta(requests, route="photos", status="200") == 2  # config, signature
    assert delta(requests, route="photos", status="400") == 1
    assert delta(requests, route="ops", status="200") == 1  # the first scrape
    signatures = "gateway_signatures_total"
    assert delta(signatures, route="files", outcome="issued", reason="") == 1
    assert delta(signatures, route="photos", outcome="issued", reason="") == 1
    refused = dict(route="photos", outcome="refused", reason=traffic.refusal_reason)
    assert traffic.refusal_reason and delta(signatures, **refused) == 1
    completed = dict(route="files", outcome="stored", trigger="client")
    assert delta("gateway_completions_total", **completed) == 1
    # The proxy times each proxied request (/login, /echo/page).
    assert delta("gateway_upstream_latency_seconds_count") >= 2
    assert delta("gateway_upstream_latency_seconds_sum") > 0


# --------------------------------------------------------------------------- ops_listen


async def test_ops_listen_keeps_readyz_and_metrics_off_the_public_port(
    upstream_url: str, s3_endpoint: str, buckets: BucketNames, recorded: Recorded
) -> None:
    """With ``ops_listen`` set, readyz and metrics answer only there; the public port keeps
    healthz (for load balancers) and answers 404 for the others, however spelt, proxying
    nothing; the ops address serves nothing but ``ops_prefix`` (it proxies nothing either)."""
    tree = {**tree_for(upstream_url, s3_endpoint, buckets), "ops_listen": {"port": 0}}
    async with serving(gateway_app(build_config(tree))) as urls, aiohttp.ClientSession() as client:
        assert urls.ops_url is not None

        async def status(url: str) -> tuple[int, str]:
            async with client.get(url) as resp:
                await resp.read()
                return resp.status, resp.content_type

        assert await status(urls.url + "/-/healthz") == (200, "application/json")
        for path in ("/-/readyz", "/-/metrics", "/%2D/metrics", "/-/metrics?x", "/-/readyz/"):
            assert await status(urls.url + path) == (404, "application/problem+json"), path
        assert await status(urls.ops_url + "/-/healthz") == (200, "application/json")
        assert (await readyz(urls.ops_url))[:2] == (
            200,
            {"status": "ready", "checks": {"upstream": "ok", "s3": "ok"}, "down": []},
        )
        text = await scrape(urls.ops_url)
        # The refusals on the public port were counted, by the same metrics.
        assert value(text, "gateway_requests_total", route="ops", status="404") == 5
        for path in ("/echo/x", "/", "/internal/uploads/photos"):
            assert await status(urls.ops_url + path) == (404, "application/problem+json"), path
    # Only readyz's probe (HEAD /) reached the upstream.
    assert [r["method"] for r in recorded.requests] == ["HEAD"]


# --------------------------------------------------------------------------- logs


@pytest.fixture
async def real_gateway(
    gateway_process: StartProcess, s3_endpoint: str, buckets: BucketNames, upstream_url: str
) -> GatewayProcess:
    """``python -m gateway serve`` with both routes on moto, secrets from the environment."""
    tree = tree_for(upstream_url, s3_endpoint, buckets)
    gateway: GatewayProcess = await gateway_process(
        s3=tree["s3"], routes=tree["routes"], identity=tree["identity"]
    )
    return gateway


async def test_process_logs_one_json_line_per_request_and_no_secret(
    real_gateway: GatewayProcess, buckets: BucketNames
) -> None:
    """The real process writes one JSON access line per request with the documented fields,
    a refusal line with its reason, and nowhere a cookie, signature, presigned query, the
    Authorization header or a configured secret."""
    traffic = await run_traffic(real_gateway.url, buckets)
    lines = await until_logged(real_gateway, list(traffic.ids.values()))
    for name, request_id in traffic.ids.items():
        line = lines[request_id]
        assert {
            "time",
            "request_id",
            "method",
            "path",
            "route",
            "status",
            "bytes",
            "duration_ms",
            "user_hash",
        } <= set(line), (name, line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
        assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
        assert "?" not in line["path"]
    ids = traffic.ids
    assert (lines[ids["proxied"]]["method"], lines[ids["proxied"]]["path"]) == ("GET", "/echo/page")
    assert (lines[ids["proxied"]]["route"], lines[ids["proxied"]]["status"]) == ("proxy", 200)
    assert lines[ids["proxied"]]["bytes"] > 0
    grant = lines[ids["grant"]]
    assert (grant["method"], grant["path"], grant["route"], grant["status"]) == (
        "POST",
        FILES_PATH,
        "files",
        201,
    )
    assert re.fullmatch(r"[0-9a-f]{16}", grant["user_hash"])
    assert lines[ids["complete"]]["user_hash"] == grant["user_hash"]
    assert (lines[ids["refused"]]["route"], lines[ids["refused"]]["status"]) == ("photos", 400)

    every = json_lines(real_gateway.log())
    refusals = [
        line
        for line in every
        if line.get("request_id") == ids["refused"] and line.get("event") != "request"
    ]
    assert refusals, "no refusal line"
    assert all(line["reason"] == traffic.refusal_reason for line in refusals), refusals

    # The whole output, not only the parsed lines: nothing may leak in any form.
    text = real_gateway.log()
    for what, secret in traffic.secrets.items():
        assert secret not in text, f"the {what} is in the log"
    assert "t0psecret" not in text and "proxiedquerysecret" not in text


def _parser_vectors() -> dict[str, tuple[str, bytes, str]]:
    """Requests aiohttp's parser refuses, each carrying a secret in what it quotes: name ->
    (secret, raw request, the refusal's reason)."""
    vectors: dict[str, tuple[str, bytes, str]] = {}

    def add(name: str, reason: str, build: Callable[[str], bytes]) -> None:
        secret = f"{name}-secret-{uuid.uuid4().hex}"
        vectors[name] = (secret, build(secret), reason)

    head = "GET /echo/p HTTP/1.1\r\nHost: gw\r\n"
    add("cookie-ctl", "bad-header", lambda s: f"{head}Cookie: sid={s}\x01\r\n\r\n".encode())
    add("bearer-ctl", "bad-header", lambda s: f"{head}Authorization: {s}\x01\r\n\r\n".encode())
    add(
        "cookie-long",
        "line-too-long",
        lambda s: f"{head}Cookie: gateway_session={s}{'y' * 2000}\r\n\r\n".encode(),
    )
    add(
        "query-long",
        "line-too-long",
        lambda s: f"GET /echo/p?X-Amz-Signature={s}{'z' * 2000} HTTP/1.1\r\n\r\n".encode(),
    )
    add(
        "url-ctl",
        "bad-target",
        lambda s: f"GET /echo/p?X-Amz-Signature={s}\x01 HTTP/1.1\r\nHost: gw\r\n\r\n".encode(),
    )
    add("header-name", "bad-header", lambda s: f"{head}X-{s}(: v\r\n\r\n".encode())
    add(
        "bad-chunk",
        "bad-framing",
        lambda s: (
            f"POST /echo/p HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {s}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\nzz{s}\r\n0\r\n\r\n"
        ).encode(),
    )
    add(
        "two-hosts",
        "duplicate-header",
        lambda s: f"{head}Cookie: gateway_session={s}\r\nHost: other\r\n\r\n".encode(),
    )
    return vectors


async def _exchange(url: str, data: bytes) -> bytes:
    """Send raw bytes to the gateway; everything it answers until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", URL(url).port)
    try:
        writer.write(data)
        async with asyncio.timeout(LOG_TIMEOUT):
            return await reader.read()
    finally:
        writer.close()


async def test_parser_refusals_log_one_line_and_no_request_text(
    gateway_process: StartProcess,
) -> None:
    """What aiohttp's parser refuses (a control byte in a Cookie or Authorization line, a Cookie
    line or a presigned query past the size limits, bad chunked framing...) gets a 400 problem
    quoting none of it, and one info line each with the status and reason: in the whole log no
    traceback, no error, none of the secrets those requests carried (aiohttp quotes the line)."""
    gateway = await gateway_process(limits={"max_field_size": 1024, "max_line_size": 1024})
    vectors = _parser_vectors()
    for name, (secret, data, reason) in vectors.items():
        answer = await _exchange(gateway.url, data)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 400") or head.startswith(b"HTTP/1.1 400"), (name, head)
        assert b"application/problem+json" in head, name
        problem = json.loads(body)
        assert (problem["status"], problem["reason"]) == (400, reason), name
        assert secret.encode() not in answer, name

    refused = "request_refused"

    def refusals() -> list[dict[str, Any]]:
        return [line for line in json_lines(gateway.log()) if line.get("event") == refused]

    async with asyncio.timeout(LOG_TIMEOUT):
        while len(refusals()) < len(vectors):
            await asyncio.sleep(0.02)
    expected = sorted(reason for _, _, reason in vectors.values())
    assert sorted(line["reason"] for line in refusals()) == expected
    for line in refusals():
        assert (line["level"], line["status"]) == ("info", 400), line
    text = gateway.log()
    assert "Traceback" not in text and '"traceback"' not in text
    assert all(line["level"] != "error" for line in json_lines(text))
    for name, (secret, _, _) in vectors.items():
        assert secret not in text, f"{name}: its secret is in the log"


# --------------------------------------------------------------------------- X-Request-ID


async def test_request_ids_are_kept_when_valid_and_replaced_otherwise(
    gateway_process: StartProcess,
) -> None:
    """A sane X-Request-ID is kept, passed upstream once and returned; a missing, empty, too
    long or badly made one is replaced by a fresh one, which the upstream and log get too."""
    gateway = await gateway_process()
    kept = ["req-1.A:b_c", "x" * 128]
    replaced: list[str | None] = [None, "", "x" * 129, "has space", "<script>", "a;b", "a/b"]
    returned: dict[str, str] = {}
    async with aiohttp.ClientSession() as client:
        for sent in [*kept, *replaced]:
            headers = {} if sent is None else {"X-Request-ID": sent}
            async with client.get(gateway.url + "/echo/rid", headers=headers) as resp:
                assert resp.status == 200
                echoed = await resp.json()
                got = resp.headers.getall("X-Request-ID")
            upstream_got = [v for k, v in echoed["headers"] if k.lower() == "x-request-id"]
            assert len(got) == 1 and upstream_got == got, (sent, got, upstream_got)
            if sent in kept:
                assert got[0] == sent
            else:
                assert got[0] != sent and REQUEST_ID_RE.match(got[0]), (sent, got)
            returned[repr(sent)] = got[0]
        # Answers the gateway makes itself carry the id too.
        async with client.get(gateway.url + "/-/healthz", headers={"X-Request-ID": "ops-1"}) as r:
            assert r.headers["X-Request-ID"] == "ops-1"
        async with client.get(
            gateway.url + "/-/nothing-here", headers={"X-Request-ID": "bad id"}
        ) as r:
            assert r.status == 404 and REQUEST_ID_RE.match(r.headers["X-Request-ID"])
    generated = [returned[repr(s)] for s in replaced]
    assert len(set(generated)) == len(generated)  # fresh each time
    logged = await until_logged(gateway, list(returned.values()))
    assert {logged[i]["path"] for i in returned.values()} == {"/echo/rid"}
