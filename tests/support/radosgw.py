"""Ceph's radosgw as a throwaway one-node cluster on loopback: an S3 that verifies signatures.

moto stores whatever it is sent; radosgw (Debian's 16.2) checks SigV2 and SigV4 signatures in
headers and query strings, POST policies (signature, expiry, every condition, every form field
covered) and signed lengths and payload hashes. One monitor, one OSD on memstore (objects live
in memory and vanish at stop, so each session starts empty) and one radosgw, all run from a
temporary directory with their own ``ceph.conf``; no systemd, no mgr. Cluster auth is off, S3
requests are still signed and checked.

Each daemon runs in the foreground in a process group of its own; ``stop`` signals exactly
those groups (by the pids this module started), never anything by name.

A pytest plugin (tests/conftest.py lists it): ``radosgw_server`` starts one cluster for the
whole session, on first use only (tests/support/s3.py's ``s3_server`` asks for it), and fails,
never skips, when radosgw is missing or does not start: CI must run these tests.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

# The gateway's test credentials are radosgw's one user: buckets the test client creates
# belong to the user the gateway signs as.
from tests.support.gateway import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from tests.support.s3 import S3Server

__all__ = ["PACKAGES", "Radosgw", "RadosgwError"]

PACKAGES = ("radosgw", "ceph-mon", "ceph-osd", "ceph-common")
START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 60.0


class RadosgwError(RuntimeError):
    """radosgw could not be started; the message names the log to read."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _config(root: Path, fsid: str, mon_host: str, rgw_port: int) -> str:
    # Every path under root: nothing in /var/lib/ceph, /var/run/ceph or /var/log/ceph.
    return f"""[global]
fsid = {fsid}
mon_host = {mon_host}
# Inside the cluster only: S3 requests to radosgw are still signed and checked.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# Without it radosgw asks the monitor for "secure" mode, which auth none cannot give: it loops
# on "get_initial_auth_request returned -13" and exits after 300 s.
ms_mon_client_mode = crc
ms_bind_msgr1 = false
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
keyring = /dev/null
run_dir = {root}/run
admin_socket = {root}/run/$name.asok
pid_file = {root}/run/$name.pid
log_file = {root}/log/$name.log
crash_dir = {root}/crash
log_to_stderr = false
err_to_stderr = false
osd_objectstore = memstore
memstore_device_bytes = 1073741824
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
# The monitor commits a change at most once per interval (1 s by default), and radosgw's start
# makes about ten changes in a row (its pools), so the default costs about 10 s per session.
paxos_propose_interval = 0.05
paxos_min_wait = 0.01

[mon.a]
mon_data = {root}/mon

[osd.0]
osd_data = {root}/osd

[client.rgw.test]
# tcp_nodelay: without it each GET answer waits ~40 ms for a delayed ACK (45 ms -> 4 ms here).
rgw_frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
# <bucket>.localhost:PORT is virtual-host style (Fine Uploader's chunked v4 uploads need it);
# 127.0.0.1:PORT is path style.
rgw_dns_name = localhost
rgw_data = {root}/rgw
# Deleted objects' data is freed at once, not after 2 h: memstore holds it all in memory.
rgw_gc_obj_min_wait = 0
rgw_gc_processor_period = 10
"""


@dataclass
class Radosgw:
    """A running one-node cluster: its S3 endpoint, keys, and the processes to stop."""

    root: Path
    port: int
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started_in: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def log_dir(self) -> Path:
        return self.root / "log"

    @classmethod
    def start(cls, root: Path) -> Radosgw:
        """Build and start the cluster under ``root``; raises RadosgwError naming the log."""
        tools = ("radosgw", "ceph-mon", "ceph-osd", "ceph", "monmaptool", "radosgw-admin")
        missing = [tool for tool in tools if not shutil.which(tool)]
        if missing:
            raise RadosgwError(
                f"{', '.join(missing)} not installed: run scripts/setup.sh test as root, or "
                f"apt-get install --no-install-recommends {' '.join(PACKAGES)}"
            )
        began = time.monotonic()
        for folder in ("run", "log", "crash", "mon", "osd", "rgw"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        cluster = cls(root=root, port=_free_port())
        fsid = str(uuid.uuid4())
        mon_host = f"[v2:127.0.0.1:{_free_port()}]"
        cluster.conf.write_text(_config(root, fsid, mon_host, cluster.port))
        try:
            cluster._bootstrap(fsid, mon_host)
        except BaseException:
            cluster.stop()
            raise
        cluster.started_in = time.monotonic() - began
        return cluster

    # ------------------------------------------------------------------ steps

    def _run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> str:
        """A ceph tool to completion; its output, or RadosgwError with it and the log folder."""
        try:
            done = subprocess.run(
                [*args],
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise RadosgwError(f"{args[0]} {args[1:3]} timed out; logs in {self.log_dir}") from exc
        if done.returncode != 0:
            raise RadosgwError(
                f"{' '.join(args[:4])} exited {done.returncode}: "
                f"{done.stderr.decode(errors='replace')[-2000:]}\nlogs in {self.log_dir}"
            )
        return done.stdout.decode(errors="replace")

    def _mark(self, phase: str, since: float) -> float:
        now = time.monotonic()
        self.phases[phase] = round(now - since, 2)
        return now

    def _daemon(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        out = (self.log_dir / f"{name}.out").open("wb")
        with out:
            proc = subprocess.Popen(
                [*args, "-c", str(self.conf), "-f"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, signalled as one at stop
            )
        self.processes.append(proc)
        return proc

    def _bootstrap(self, fsid: str, mon_host: str) -> None:
        conf, root = str(self.conf), self.root
        t = time.monotonic()
        monmap = str(root / "monmap")
        self._run("monmaptool", "--create", "--fsid", fsid, "--addv", "a", mon_host, monmap)
        self._run("ceph-mon", "-c", conf, "-i", "a", "--mkfs", "--monmap", monmap)
        self._daemon("mon.a", "ceph-mon", "-i", "a")
        t = self._mark("mon", t)
        osd_uuid = str(uuid.uuid4())
        osd_id = self._run("ceph", "-c", conf, "osd", "new", osd_uuid).strip()
        self._run("ceph-osd", "-c", conf, "-i", osd_id, "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("osd.0", "ceph-osd", "-i", osd_id)
        self._wait(self._osd_up, "the OSD to be up", "osd.0.log")
        t = self._mark("osd", t)
        self._daemon("client.rgw.test", "radosgw", "-n", "client.rgw.test")
        self._wait(self._serves, "radosgw to answer HTTP", "client.rgw.test.log")
        t = self._mark("radosgw", t)
        self._run(
            "radosgw-admin",
            "-c",
            conf,
            "user",
            "create",
            "--uid=gateway-tests",
            "--display-name=gateway tests",
            f"--access-key={self.access_key_id}",
            f"--secret={self.secret_access_key}",
        )
        self._mark("user", t)

    def _osd_up(self) -> bool:
        stat = self._run("ceph", "-c", str(self.conf), "osd", "stat", "--format", "json")
        return '"num_up_osds":1' in stat.replace(" ", "")

    def _serves(self) -> bool:
        """Whether radosgw answers HTTP on its port (any status: an S3 answer is an answer)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()
        return True

    def _wait(self, ready: Callable[[], bool], what: str, log: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RadosgwError(
                        f"{proc.args[0]} exited {proc.returncode} while waiting for {what}; "
                        f"see {self.log_dir / log}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise RadosgwError(
                    f"timed out after {START_TIMEOUT:.0f}s waiting for {what}; "
                    f"see {self.log_dir / log}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop every daemon this cluster started, radosgw first, each by its process group.

        The OSD gets SIGKILL: on SIGTERM memstore writes every object to disk first, which
        takes seconds and keeps nothing anyone reads."""
        for proc in reversed(self.processes):
            hard = proc.args[0] == "ceph-osd"  # type: ignore[index]
            _signal_group(proc, signal.SIGKILL if hard else signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        self.processes.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the group this module created for it (start_new_session)


# The session's cluster, once started: the run's summary says how long it took to start.
_STARTED: list[Radosgw] = []


@pytest.fixture(scope="session")
def radosgw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One radosgw for the session, started when a test first needs it; stopped at the end."""
    try:
        cluster = Radosgw.start(tmp_path_factory.mktemp("radosgw"))
    except RadosgwError as exc:
        pytest.fail(f"radosgw did not start: {exc}", pytrace=False)
    _STARTED.append(cluster)
    try:
        yield S3Server(
            "radosgw",
            cluster.endpoint,
            cluster.access_key_id,
            cluster.secret_access_key,
            verifies=True,
        )
    finally:
        cluster.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for cluster in _STARTED:
        phases = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in cluster.phases.items())
        terminalreporter.write_line(
            f"radosgw started in {cluster.started_in:.1f}s ({phases}); logs in {cluster.log_dir}"
        )


def main() -> None:  # pragma: no cover - manual runs: python -m tests.support.radosgw
    """Start a cluster in a fresh temporary directory, print its endpoint, stop on SIGINT/TERM."""
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="radosgw-"))
    cluster = Radosgw.start(root)
    # Blocked only now: the daemons would inherit the mask and ignore their SIGTERM.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    print(f"{cluster.endpoint} started in {cluster.started_in:.1f}s {cluster.phases}; {root}")
    print(f"keys {cluster.access_key_id} {cluster.secret_access_key}", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
