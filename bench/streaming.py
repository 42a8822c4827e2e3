"""Case 3: one large body up and one down, direct to the upstream and through the gateway.

curl is the client (C, so the client is not what limits throughput); the upload is read from a
sparse file, the download written to /dev/null. The upstream counts what it received, so a
short transfer is an error, not a fast result. The gateway's memory is its kernel peak (VmHWM)
over the transfer, against its RSS at rest before the transfers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench import procs


@dataclass
class Transfer:
    """One transfer: bytes moved, seconds, MiB/s, and the watched server's peak RSS (bytes)."""

    size: int
    seconds: float
    mib_s: float
    peak_rss: int


def curl_available() -> bool:
    return shutil.which("curl") is not None


def make_body(workdir: Path, size: int) -> Path:
    """A sparse file of ``size`` bytes: reads as zeros, costs no disk."""
    path = workdir / f"body-{size}.bin"
    if not path.exists():
        with path.open("wb") as handle:
            handle.truncate(size)
        # Read once, so the first timed upload does not also pay for filling the page cache.
        with path.open("rb") as handle:
            while handle.read(8 * 1024 * 1024):
                pass
    return path


def _curl(argv: list[str], timeout: float) -> tuple[int, float, str]:
    done = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "-w", "\n%{http_code} %{time_total}", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.strip()}")
    body, _, tail = done.stdout.rpartition("\n")
    status, seconds = tail.split()
    return int(status), float(seconds), body


def upload(base: str, body: Path, size: int, watch: procs.Server, timeout: float) -> Transfer:
    """POST ``size`` bytes to ``base/sink`` (Content-Length known, no 100-continue)."""
    with procs.measure_peak(watch) as peak:
        status, seconds, answer = _curl(
            [
                "-X",
                "POST",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                "Expect:",
                "-T",
                str(body),
                f"{base}/sink",
            ],
            timeout,
        )
    received = json.loads(answer).get("size") if status == 200 else None
    if received != size:
        raise RuntimeError(f"upload through {base}: status {status}, upstream got {received}")
    return Transfer(size, seconds, size / seconds / procs.MIB, peak[0])


def download(base: str, size: int, watch: procs.Server, timeout: float) -> Transfer:
    """GET ``size`` bytes from ``base/stream`` into /dev/null, checking the byte count."""
    with procs.measure_peak(watch) as peak:
        done = subprocess.run(
            [
                "curl",
                "-sS",
                "--noproxy",
                "*",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download} %{time_total}",
                f"{base}/stream?size={size}",
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"curl failed ({done.returncode}): {done.stderr.strip()}")
    status, got, seconds = done.stdout.split()
    if int(status) != 200 or int(got) != size:
        raise RuntimeError(f"download through {base}: status {status}, {got} of {size} bytes")
    return Transfer(size, float(seconds), size / float(seconds) / procs.MIB, peak[0])
