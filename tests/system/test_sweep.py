"""Issue 16, "no upload is lost": the sweep completes what no client completed, retries what the
app failed, gives up into dead letters an operator sees and retries, and several instances
share the work through S3 leases. Real moto, the real test upstream, ``python -m gateway
serve`` processes with sub-second sweep settings (never minutes of waiting).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway import keys
from gateway.buckets import BucketNames, doctor, lifecycle_days, setup_buckets
from gateway.completion import ID_PURPOSE, idempotency_key
from gateway.completion.sweep import DEAD_PREFIX, LEASES_PREFIX
from gateway.config import ConfigError, parse
from tests.support.faults import Fault, FaultProxy, Match, fault_proxy
from tests.support.gateway import SESSION_KEY, config_dict
from tests.support.processes import (
    GatewayProcess,
    _environment,
    start_gateway_process,
)
from tests.support.upstream import Recorded

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
    b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
BOUND = 30.0  # seconds any one wait may take before the test fails
ID_KEY = keys.derive(SESSION_KEY, ID_PURPOSE)
ROUTES = [
    {
        "name": "photos",
        "protocol": "fineuploader",
        "path": "/uploads/photos",
        "max_size": "20MiB",
        "content_types": ["image/*"],
        "forward": "/internal/uploads/photos",
    },
    {
        "name": "files",
        "protocol": "api",
        "path": "/api/files",
        "max_size": "20MiB",
        "content_types": ["image/*", "application/octet-stream"],
        "forward": "/internal/uploads/files",
    },
    {
        "name": "docs",
        "protocol": "uppy",
        "path": "/uploads/docs",
        "max_size": "64MiB",
        "content_types": ["image/*", "application/octet-stream"],
        "forward": "/internal/uploads/docs",
    },
]


def tree_for(
    upstream_url: str, s3_endpoint: str, buckets: BucketNames, **completion: Any
) -> dict[str, Any]:
    tree = config_dict(
        upstream_url,
        s3_endpoint=s3_endpoint,
        uploads_bucket=buckets.uploads,
        storage_bucket=buckets.storage,
    )
    tree["identity"] = {"auth_request": {"path": "/api/me"}}
    tree["routes"] = ROUTES
    tree["webhook"]["timeout"] = 2
    tree["completion"] = {
        "sweep_after": 0.5,
        "interval": 0.2,
        "retry_base": 0.2,
        "retry_max": 0.4,
        # Far above one delivery (eight S3 requests and the forward) on a loaded machine: a
        # lease running out mid-delivery lets another instance deliver the upload again, the
        # at-least-once the design allows, which tests of "announced once" must not meet by
        # chance. The test of a killed instance sets a short one.
        "lease": 20,
        **completion,
    }
    return tree


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await start(tree)``: a ``serve`` process; every one started is stopped after the test."""
    started: list[GatewayProcess] = []
    count = iter(range(1000))

    async def run(tree: dict[str, Any]) -> GatewayProcess:
        workdir = tmp_path / f"gateway-{next(count)}"
        workdir.mkdir()
        gateway = await start_gateway_process(tree, workdir)
        started.append(gateway)
        return gateway

    yield run
    for gateway in started:
        gateway.stop()


@pytest.fixture
async def s3_proxy(s3_endpoint: str) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of moto (tests/support/faults.py); asked for before ``start``,
    so it outlives the gateways pointed at it."""
    async with fault_proxy(s3_endpoint) as proxy:
        yield proxy


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {user}"}


async def api_upload(
    base: str, user: str, data: bytes = PNG, name: str = "cat.png"
) -> tuple[str, str]:
    """Grant and PUT an api upload, never calling complete (the script crashed); its key and
    the ETag S3 answered the PUT with (read there: the sweep may take the upload any moment)."""
    async with aiohttp.ClientSession() as http:
        declared = {"filename": name, "content_type": "image/png", "size": len(data)}
        async with http.post(f"{base}/api/files", json=declared, headers=bearer(user)) as resp:
            assert resp.status == 201, await resp.text()
            grant = await resp.json()
        async with http.put(grant["url"], data=data, headers=grant["headers"]) as resp:
            assert resp.status == 200, await resp.text()
            etag = resp.headers["ETag"]
    key: str = grant["key"]
    return key, etag


async def fineuploader_upload(
    base: str, s3_client: Any, buckets: BucketNames, user: str
) -> tuple[str, str]:
    """Fine Uploader's signing request, then the object S3 would hold after the POST, with
    qqfilename as Fine Uploader sends it; the success call never comes (page closed). Its key
    and the ETag of the PUT's answer."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/uploads/photos/config", headers=bearer(user)) as resp:
            assert resp.status == 200, await resp.text()
            prefix = (await resp.json())["keyPrefix"]
        key = f"{prefix}0b7c1f5e-3d0a-4d5e-9c1e-6a1c2b3d4e5f.png"
        policy = {
            "expiration": "2099-01-01T00:00:00.000Z",
            "conditions": [
                {"acl": "private"},
                {"bucket": buckets.uploads},
                {"Content-Type": "image/png"},
                {"success_action_status": "200"},
                {"key": key},
                {"x-amz-meta-qqfilename": "my%20cat.png"},
                ["content-length-range", "0", "1000000"],
            ],
        }
        async with http.post(
            f"{base}/uploads/photos/signature", json=policy, headers=bearer(user)
        ) as resp:
            assert resp.status == 200, await resp.text()
    put = await s3_client.put_object(
        Bucket=buckets.uploads,
        Key=key,
        Body=PNG,
        ContentType="image/png",
        Metadata={"qqfilename": "my%20cat.png"},
    )
    return key, str(put["ETag"])


async def uppy_multipart_completed_at_s3(
    base: str, s3_client: Any, buckets: BucketNames
) -> tuple[str, str]:
    """An Uppy multipart upload the client completed at S3 but never reported to the gateway;
    its key and the ETag CompleteMultipartUpload answered."""
    async with aiohttp.ClientSession() as http:
        body = {"filename": "scan.png", "type": "image/png", "metadata": {"album": "x"}}
        async with http.post(
            f"{base}/uploads/docs/s3/multipart", json=body, headers=bearer("carol")
        ) as resp:
            assert resp.status == 200, await resp.text()
            key: str = (await resp.json())["key"]
    listed = await s3_client.list_multipart_uploads(Bucket=buckets.uploads, Prefix=key)
    multipart_id = listed["Uploads"][0]["UploadId"]
    part = await s3_client.upload_part(
        Bucket=buckets.uploads, Key=key, UploadId=multipart_id, PartNumber=1, Body=PNG
    )
    completed = await s3_client.complete_multipart_upload(
        Bucket=buckets.uploads,
        Key=key,
        UploadId=multipart_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    return key, str(completed["ETag"])


async def keys_in(s3_client: Any, bucket: str, prefix: str = "") -> list[str]:
    answer = await s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in answer.get("Contents", [])]


async def uploads_left(s3_client: Any, buckets: BucketNames) -> list[str]:
    """What is in the uploads bucket besides the gateway's records."""
    found = await keys_in(s3_client, buckets.uploads)
    return [key for key in found if not key.startswith(".gateway/")]


async def stored(s3_client: Any, buckets: BucketNames) -> list[str]:
    found = await keys_in(s3_client, buckets.storage)
    return [key for key in found if not key.startswith(".gateway/")]


async def until(check: Callable[[], Any], what: str, bound: float = BOUND) -> None:
    deadline = time.monotonic() + bound
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound}s: {what}")
        await asyncio.sleep(0.05)


def delivered(recorded: Recorded, status: int = 200) -> list[dict[str, Any]]:
    return [c for c in recorded.completions if c["status"] == status]


async def settle(seconds: float = 1.5) -> None:
    """Several sweep intervals (0.2 s each) pass: time for any duplicate to show."""
    await asyncio.sleep(seconds)


# ----------------------------------------------------------------------------- never reported


async def test_uploads_whose_clients_went_away_are_stored_and_announced_once_by_the_sweep(
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """A Fine Uploader upload whose success call never came, an Uppy multipart upload completed
    at S3 but never reported and an api upload never completed: each is stored once and
    announced once, by the sweep, with the id a client's completion would have had, the
    trigger "sweep", and the file name the client left in S3."""
    gateway = await start(tree_for(upstream_url, s3_endpoint, buckets))
    # Each ETag is the one S3 answered the upload's own write with: S3's LastModified has
    # whole seconds, so an upload can be due (sweep_after 0.5 s) the moment it is written, and
    # the sweep may have stored and removed it before the test could ask S3 for it.
    fine, fine_etag = await fineuploader_upload(gateway.url, s3_client, buckets, "bob")
    uppy, uppy_etag = await uppy_multipart_completed_at_s3(gateway.url, s3_client, buckets)
    api, api_etag = await api_upload(gateway.url, "alice")
    expected = {
        fine: ("photos", "bob", "my cat.png", {}, fine_etag),
        uppy: ("docs", "carol", "scan.png", {"album": "x"}, uppy_etag),
        api: ("files", "alice", api.rsplit("/", 1)[-1], {}, api_etag),
    }
    ids = {
        key: idempotency_key(ID_KEY, route, user, key, etag)
        for key, (route, user, _, _, etag) in expected.items()
    }

    async def all_delivered() -> bool:
        return len(delivered(recorded)) >= 3 and not await uploads_left(s3_client, buckets)

    await until(all_delivered, "three sweep deliveries")
    await settle()

    assert len(recorded.completions) == 3
    assert len(await stored(s3_client, buckets)) == 3
    by_id = {c["message"]["id"]: c for c in recorded.completions}
    for key, (route, user, filename, params, _) in expected.items():
        entry = by_id[ids[key]]
        assert entry["idempotency_key"] == ids[key]
        message = entry["message"]
        assert (message["route"], message["user"], message["trigger"]) == (route, user, "sweep")
        assert (message["filename"], message["params"]) == (filename, params)
        assert entry["user"] == user
    assert await keys_in(s3_client, buckets.uploads, ".gateway/") == []  # no lease left


async def test_an_object_whose_owner_is_unknown_is_left_alone_and_counted(
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """An object under a user hash no owner record names (the gateway never signed for it) is
    never guessed: it stays for the lifecycle rule, nothing is delivered, and the metrics count
    it under route "unknown"."""
    gateway = await start(tree_for(upstream_url, s3_endpoint, buckets))
    key = "0123456789abcdef/stray.png"
    await s3_client.put_object(Bucket=buckets.uploads, Key=key, Body=PNG)

    async def counted() -> bool:
        async with aiohttp.ClientSession() as http, http.get(f"{gateway.url}/-/metrics") as resp:
            text = await resp.text()
        return (
            'gateway_completions_total{outcome="unowned",route="unknown",trigger="sweep"}' in text
            and 'gateway_completions_pending{route="unknown"} 1.0' in text
        )

    await until(counted, "the stray object counted")
    assert await uploads_left(s3_client, buckets) == [key]
    assert recorded.completions == []
    assert await stored(s3_client, buckets) == []


# ----------------------------------------------------------------------------- the app failing


async def test_an_app_failing_at_completion_gets_the_upload_once_it_is_back(
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """The app answers 503 to the client's completion (502 to the client, which never retries):
    the stored copy and the upload stay, the sweep retries with backoff, and once the app is
    back it gets the upload, with the same id; stored once, nothing left behind."""
    gateway = await start(tree_for(upstream_url, s3_endpoint, buckets))
    recorded.completion_status = 503
    async with aiohttp.ClientSession() as http:
        body = {"filename": "dog.png", "content_type": "image/png", "size": len(PNG)}
        async with http.post(f"{gateway.url}/api/files", json=body, headers=bearer("alice")) as r:
            grant = await r.json()
        async with http.put(grant["url"], data=PNG, headers=grant["headers"]):
            pass
        complete = f"{gateway.url}/api/files/{grant['upload_id']}/complete"
        async with http.post(complete, json={}, headers=bearer("alice")) as resp:
            assert resp.status == 502
    assert await uploads_left(s3_client, buckets) == [grant["key"]]  # pending and visible
    assert len(await stored(s3_client, buckets)) == 1

    async def failing_again() -> bool:
        return len(recorded.completions) >= 4  # the client's, then the sweep's retries

    await until(failing_again, "the sweep retrying")
    recorded.completion_status = 200
    await until(lambda: _gone(s3_client, buckets), "the upload delivered")
    await settle()

    ok = delivered(recorded)
    assert len(ok) == 1
    assert ok[0]["message"]["trigger"] == "sweep"
    assert {c["idempotency_key"] for c in recorded.completions} == {ok[0]["idempotency_key"]}
    assert await stored(s3_client, buckets) == [ok[0]["message"]["object"]["key"]]


async def test_an_app_refusing_the_sweeps_completion_gets_object_and_copy_removed(
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """A 4xx to the sweep's delivery is final: the upload and the stored copy are removed, and
    it is never delivered again."""
    gateway = await start(tree_for(upstream_url, s3_endpoint, buckets))
    recorded.completion_status = 422
    await api_upload(gateway.url, "alice")

    async def gone() -> bool:
        return bool(recorded.completions) and not await uploads_left(s3_client, buckets)

    await until(gone, "the refusal")
    await settle()
    assert len(recorded.completions) == 1
    assert recorded.completions[0]["message"]["trigger"] == "sweep"
    assert await stored(s3_client, buckets) == []


@pytest.mark.parametrize("first", ["client", "sweep"])
async def test_a_client_completion_racing_the_sweep_is_stored_once_under_one_id(
    first: str,
    s3_proxy: FaultProxy,
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """The client's completion and the sweep's delivery of the same upload both reach the app
    while it has answered neither (the test holds its answers): ``first`` the client's (the
    sweep finds the upload still pending, as it must, and delivers too), or first the sweep's
    (the client completes meanwhile). Exactly two messages, one of each trigger, with one id
    and one Idempotency-Key; the client gets 200; one stored copy, nothing left in the uploads
    bucket, no lease, and no third message once the app has answered."""
    # The gateway reaches S3 through a proxy that can hold the sweep's listing of the uploads
    # bucket: an upload is due 0.1 s after it was written (and S3's LastModified has whole
    # seconds, so no sweep_after could keep the sweep off it while the client's completion
    # runs); holding the listing is what keeps the sweep from finding it before the client's
    # message reached the app. The client's own S3 requests go to moto directly.
    tree = tree_for(upstream_url, s3_proxy.url, buckets, sweep_after=0.1)
    tree["s3"]["public_endpoint_url"] = s3_endpoint
    listing = Match("GET", path_prefix=f"/{buckets.uploads}", query="list-type")
    held = s3_proxy.inject(listing, Fault("hold")) if first == "client" else None
    gateway = await start(tree)
    gate = asyncio.Event()
    recorded.completion_gate = gate

    def triggers() -> list[str]:
        return [json.loads(d.body)["trigger"] for d in recorded.deliveries]

    async with aiohttp.ClientSession() as http:
        body = {"filename": "cat.png", "content_type": "image/png", "size": len(PNG)}
        async with http.post(f"{gateway.url}/api/files", json=body, headers=bearer("alice")) as r:
            grant = await r.json()
        async with http.put(grant["url"], data=PNG, headers=grant["headers"]):
            pass
        complete = f"{gateway.url}/api/files/{grant['upload_id']}/complete"

        async def client_completes() -> tuple[int, str]:
            async with http.post(complete, json={}, headers=bearer("alice")) as resp:
                return resp.status, await resp.text()

        if held is not None:
            async with asyncio.timeout(BOUND):  # a pass waits on its listing: the sweep is off it
                await held.arrived.wait()
            client = asyncio.create_task(client_completes())
            await until(lambda: _true(triggers() == ["client"]), "the client's message held")
            # The app has not answered: the upload is pending, where the sweep finds it once
            # it may list the bucket again.
            assert await uploads_left(s3_client, buckets) == [grant["key"]]
            s3_proxy.clear()
        else:
            await until(lambda: _true(triggers() == ["sweep"]), "the sweep's message held")
            client = asyncio.create_task(client_completes())
        await until(lambda: _true(len(triggers()) == 2), "the other message held too")
        assert sorted(triggers()) == ["client", "sweep"]
        gate.set()
        status, text = await client
        assert status == 200, text

    await until(lambda: _gone(s3_client, buckets), "the upload finished")
    await settle()
    assert len(await stored(s3_client, buckets)) == 1
    assert len(recorded.completions) == 2
    assert len({c["idempotency_key"] for c in recorded.completions}) == 1
    assert len({c["message"]["id"] for c in recorded.completions}) == 1
    assert await keys_in(s3_client, buckets.uploads, ".gateway/") == []  # no lease left


async def _true(value: bool) -> bool:
    return value


async def _gone(s3_client: Any, buckets: BucketNames) -> bool:
    return not await uploads_left(s3_client, buckets)


# ----------------------------------------------------------------------------- several instances


async def test_two_instances_sweeping_one_bucket_deliver_each_upload_once(
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Two serve processes sweep the same bucket: the S3 lease (a conditional write) lets one
    deliver each upload; every upload is stored once and announced once."""
    tree = tree_for(upstream_url, s3_endpoint, buckets, sweep_after=1.0, interval=0.1)
    a, _ = await asyncio.gather(start(tree), start(tree))
    keys_ = [(await api_upload(a.url, "alice", PNG + bytes([n])))[0] for n in range(8)]

    await until(lambda: _gone(s3_client, buckets), "all eight delivered")
    await settle()
    ids = [c["idempotency_key"] for c in recorded.completions]
    assert len(ids) == len(set(ids)) == len(keys_)
    assert len(await stored(s3_client, buckets)) == len(keys_)


async def test_an_instance_killed_mid_delivery_leaves_the_upload_to_the_other(
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Instance A is killed -9 while the app is answering its delivery; once A's lease runs
    out, B delivers the upload: at most twice, stored once, nothing left behind."""
    tree = tree_for(upstream_url, s3_endpoint, buckets, lease=2.5)
    a = await start(tree)
    recorded.completion_delay = 1.0
    await api_upload(a.url, "alice")
    await until(lambda: _true(bool(recorded.deliveries)), "A delivering")
    os.kill(a.pid, signal.SIGKILL)
    a.proc.wait(timeout=10)
    a.stopped = True
    recorded.completion_delay = 0.0
    await start(tree)

    await until(lambda: _gone(s3_client, buckets), "B delivering")
    await settle()
    assert 1 <= len(recorded.completions) <= 2
    assert len({c["idempotency_key"] for c in recorded.completions}) == 1
    assert len(await stored(s3_client, buckets)) == 1


# ----------------------------------------------------------------------------- giving up


async def cli(gateway: GatewayProcess, *args: str) -> str:
    """``upload-gateway completions ...`` with the gateway's own config file and secrets (run
    without blocking: the test upstream answers in this process's loop)."""
    config = gateway.log_path.parent / "gateway.yaml"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "completions",
        *args,
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_environment(),
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_delivery_given_up_is_a_dead_letter_listed_and_retried(
    start: Callable[..., Any],
    upstream_url: str,
    s3_endpoint: str,
    s3_client: Any,
    buckets: BucketNames,
    recorded: Recorded,
) -> None:
    """Past give_up_after the upload becomes a dead letter: recorded beside its stored copy
    (the upload removed only then), listed by ``completions status`` with its key and user
    hash (no user id), and delivered by ``completions retry --dead`` once the app is back."""
    gateway = await start(tree_for(upstream_url, s3_endpoint, buckets, give_up_after=1.5))
    recorded.completion_status = 500
    key, _ = await api_upload(gateway.url, "alice")
    user_hash = key.split("/", 1)[0]

    async def buried() -> bool:
        # The dead letter's record is written first, then the upload removed, then its lease:
        # the record alone would let the test stop the gateway mid-burial (its sweep cancelled
        # before the upload's DELETE), and the upload would still be there below.
        return bool(await keys_in(s3_client, buckets.storage, DEAD_PREFIX)) and not (
            await keys_in(s3_client, buckets.uploads, LEASES_PREFIX)
        )

    await until(buried, "a dead letter, its burial finished")
    gateway.stop()  # the operator steers from here
    assert await uploads_left(s3_client, buckets) == []
    assert len(await stored(s3_client, buckets)) == 1

    status = await cli(gateway, "status")
    assert "dead letters: 1" in status
    assert f"dead {key} user {user_hash} route files" in status
    assert "alice" not in status

    recorded.completion_status = 200
    failed = len(recorded.completions)
    out = await cli(gateway, "retry", "--dead")
    assert "dead letters: delivered 1" in out
    assert len(recorded.completions) == failed + 1
    last = recorded.completions[-1]
    assert last["message"]["trigger"] == "sweep"
    assert last["idempotency_key"] == recorded.completions[0]["idempotency_key"]
    assert await keys_in(s3_client, buckets.storage, DEAD_PREFIX) == []
    assert "dead letters: 0" in await cli(gateway, "status")


# ------------------ config and setup (backoff and hash pattern: tests/unit/test_sweep.py)


@pytest.mark.parametrize(
    ("section", "value"),
    [("identity", {"key_prefix": ".gateway/{user_hash}/"}), ("storage_key", ".gateway/{uuid}")],
)
def test_no_user_prefix_or_storage_key_may_reach_the_gateways_records(
    section: str, value: Any, upstream_url: str
) -> None:
    """``.gateway/`` (owner records, leases, dead letters) is outside every user's prefix and
    every storage key: a config putting either there is refused, so nothing signed writes it."""
    tree = config_dict(upstream_url)
    if section == "identity":
        tree["identity"] = value
    else:
        tree["routes"][0]["storage_key"] = value
    with pytest.raises(ConfigError, match=r"\.gateway/"):
        parse(json.dumps(tree), {})


def test_the_lease_must_outlive_a_delivery(upstream_url: str) -> None:
    """A lease shorter than webhook.timeout would let another instance deliver again while the
    app is still answering: refused."""
    tree = config_dict(upstream_url)
    tree["completion"] = {"lease": 3}
    with pytest.raises(ConfigError, match="lease"):
        parse(json.dumps(tree), {})


async def test_setup_and_doctor_keep_the_lifecycle_longer_than_give_up_after(
    s3_client: Any, buckets: BucketNames
) -> None:
    """A one-day lifecycle would remove uploads the sweep still retries for three days: doctor
    reports it, setup sets a day past give_up_after, and doctor is then content."""
    three_days = 3 * 86400.0
    assert lifecycle_days(three_days) == 4
    drifts = await doctor(s3_client, buckets, origins=[], give_up_after=three_days)
    assert any("lifecycle" in line and "4 days" in line for line in drifts), drifts
    await setup_buckets(
        s3_client, buckets, origins=[], region="us-east-1", give_up_after=three_days
    )
    rules = (await s3_client.get_bucket_lifecycle_configuration(Bucket=buckets.uploads))["Rules"]
    assert [r["Expiration"]["Days"] for r in rules] == [4]
    drifts = await doctor(s3_client, buckets, origins=[], give_up_after=three_days)
    assert not [line for line in drifts if "lifecycle" in line]
