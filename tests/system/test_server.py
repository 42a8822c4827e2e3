"""``serve --workers N`` (gateway/server.py): processes sharing the port and their metrics.

Each test runs the real ``python -m gateway serve --workers 2`` and tells the workers apart by
the ``pid`` of their log lines. Requests go over fresh connections, so the kernel spreads them
over the workers' SO_REUSEPORT sockets.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import GatewayProcess, StartProcess, free_port

WORKERS = 2
REQUESTS = 40
DEADLINE = 15.0


def access_pids(gateway: GatewayProcess) -> dict[str, int]:
    """The pid that answered each request id, from the access lines written so far."""
    pids = {}
    for text in gateway.log().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("event") == "request" and "request_id" in line:
            pids[line["request_id"]] = line["pid"]
    return pids


async def get(url: str, request_id: str) -> str:
    """One GET on a connection of its own (a new source port: any worker may take it)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as client,
        client.get(url, headers={"X-Request-ID": request_id}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Request-ID"] == request_id
        return await resp.text()


async def answered_by(gateway: GatewayProcess, ids: list[str]) -> dict[str, int]:
    """Poll the log (lines are batched) until every id's access line is there."""
    async with asyncio.timeout(5):
        while True:
            pids = access_pids(gateway)
            if all(i in pids for i in ids):
                return {i: pids[i] for i in ids}
            await asyncio.sleep(0.02)


async def worker_pids(gateway: GatewayProcess) -> set[int]:
    """Health checks over fresh connections until every worker has answered one (bounded)."""
    seen: set[int] = set()
    batch = 0
    async with asyncio.timeout(DEADLINE):
        while len(seen) < WORKERS:
            ids = [f"warm-{batch}-{n}" for n in range(8)]
            batch += 1
            await asyncio.gather(*(get(gateway.url + "/-/healthz", i) for i in ids))
            seen |= set((await answered_by(gateway, ids)).values())
    assert gateway.pid not in seen  # the parent only supervises
    return seen


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def proxied_ok(text: str) -> float:
    return sample(text, "gateway_requests_total", route="proxy", status="200")


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


def metric_dirs(tmp: Path) -> list[Path]:
    return sorted(tmp.glob("upload-gateway-metrics-*"))


async def start(
    gateway_process: StartProcess, tmp_path: Path, **overrides: Any
) -> tuple[GatewayProcess, Path]:
    """The gateway with two workers; its temporary files (the metrics directory) under tmp."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    gateway: GatewayProcess = await gateway_process(
        workers=WORKERS, env={"TMPDIR": str(tmp)}, **overrides
    )
    return gateway, tmp


def running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pids: set[int]) -> None:
    """Wait (bounded) until none of ``pids`` runs; any left then is killed and the test fails."""
    try:
        async with asyncio.timeout(5):
            while any(running(pid) for pid in pids):
                await asyncio.sleep(0.02)
    except TimeoutError:
        left = {pid for pid in pids if running(pid)}
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        raise AssertionError(f"workers {sorted(left)} outlived their parent") from None


@pytest.mark.parametrize("ops_apart", [False, True], ids=["public-port", "ops-listen"])
async def test_workers_share_the_port_and_every_scrape_counts_all_of_them(
    gateway_process: StartProcess, tmp_path: Path, ops_apart: bool
) -> None:
    """Two worker processes answer on one port, and a scrape answered by either reports every
    request either answered: the request counter equals what was sent on every scrape. With
    ``ops_listen`` every worker serves that address too, and the public port has no metrics."""
    ops_port = free_port()
    ops = {"ops_listen": {"host": "127.0.0.1", "port": ops_port}} if ops_apart else {}
    gateway, tmp = await start(gateway_process, tmp_path, **ops)
    metrics_url = (f"http://127.0.0.1:{ops_port}" if ops_apart else gateway.url) + "/-/metrics"
    if ops_apart:
        async with aiohttp.ClientSession() as client, client.get(gateway.url + "/-/metrics") as r:
            assert r.status == 404
    workers = await worker_pids(gateway)
    assert len(workers) == WORKERS
    assert {parent_of(pid) for pid in workers} == {gateway.pid}

    ids = [f"req-{n}" for n in range(REQUESTS)]
    await asyncio.gather(*(get(gateway.url + "/echo/w", i) for i in ids))
    by_pid = await answered_by(gateway, ids)
    assert set(by_pid.values()) == workers  # both workers took some of them

    # Scrape until each worker has answered at least two scrapes (bounded), checking each.
    scraped_by: list[int] = []
    ops_counts: list[float] = []
    async with asyncio.timeout(DEADLINE):
        while min(scraped_by.count(pid) for pid in workers) < 2:
            scrape_id = f"scrape-{len(scraped_by)}"
            text = await get(metrics_url, scrape_id)
            assert proxied_ok(text) == REQUESTS, text
            ops_counts.append(sample(text, "gateway_requests_total", route="ops", status="200"))
            scraped_by.append((await answered_by(gateway, [scrape_id]))[scrape_id])
    # Each scrape sees every earlier one, whichever worker answered it.
    assert all(b == a + 1 for a, b in itertools.pairwise(ops_counts)), ops_counts

    [shared] = metric_dirs(tmp)
    assert {p.name for p in shared.glob("*.db")} >= {f"counter_{pid}.db" for pid in workers}


async def test_sigterm_to_the_parent_stops_every_worker_and_cleans_up(
    gateway_process: StartProcess, tmp_path: Path
) -> None:
    """SIGTERM to the parent stops each worker gracefully (their last access lines are
    written), the parent exits 0, and the shared metrics directory is removed."""
    gateway, tmp = await start(gateway_process, tmp_path)
    workers = await worker_pids(gateway)
    assert len(metric_dirs(tmp)) == 1
    # Lines still waiting in the workers' buffers when the signal comes.
    await asyncio.gather(*(get(gateway.url + "/echo/last", f"last-{n}") for n in range(6)))

    os.kill(gateway.pid, signal.SIGTERM)
    assert await asyncio.to_thread(gateway.proc.wait, 10) == 0
    gateway.stopped = True
    await wait_gone(workers)
    assert all(f"last-{n}" in access_pids(gateway) for n in range(6))
    assert metric_dirs(tmp) == []


async def test_a_worker_that_dies_stops_the_others(
    gateway_process: StartProcess, tmp_path: Path
) -> None:
    """A worker killed from outside makes the parent stop the rest and exit 1 (so a service
    manager restarts the whole), instead of serving on with fewer workers unnoticed."""
    gateway, tmp = await start(gateway_process, tmp_path)
    victim, *others = sorted(await worker_pids(gateway))
    os.kill(victim, signal.SIGKILL)
    try:
        code = await asyncio.to_thread(gateway.proc.wait, 10)
    except subprocess.TimeoutExpired:
        raise AssertionError("the parent kept running after a worker died") from None
    gateway.stopped = True
    assert code == 1
    await wait_gone(set(others))
    events: list[dict[str, Any]] = []
    for text in gateway.log().splitlines():
        try:
            events.append(json.loads(text))
        except ValueError:
            continue
    assert any(e.get("event") == "worker_exited" and str(victim) in e["detail"] for e in events)
    assert metric_dirs(tmp) == []


async def test_workers_stop_when_the_parent_is_killed(
    gateway_process: StartProcess, tmp_path: Path
) -> None:
    """A parent killed with SIGKILL cannot stop its workers; they notice it is gone and stop by
    themselves rather than hold the port unsupervised."""
    gateway, _ = await start(gateway_process, tmp_path)
    workers = await worker_pids(gateway)
    os.kill(gateway.pid, signal.SIGKILL)
    await asyncio.to_thread(gateway.proc.wait, 10)
    gateway.stopped = True
    await wait_gone(workers)
