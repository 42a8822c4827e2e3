"""An A/B bench pair between two checkouts, with an A/A control in the same minutes.

    PYTHONPATH=$PWD .venv/bin/python -m bench.pair A_DIR B_DIR --case passthrough|signing

Each checkout needs its own ``.venv`` (a symlink to the main one will do). One moto with both
buckets (a signature writes the user's owner record) and nginx's static upstream serve every
gateway; then, for each of ``--pairs`` fresh process triples (A, B and A again as the control),
``--rounds`` rounds of one bounded wrk run each (1 thread, 64 connections, ``--duration``
seconds), the order rotated and flipped from round to round. CPU per request is the gateway
process tree's utime + stime (``/proc/PID/stat``) over the run, divided by its requests: on
a shared machine it is steadier than requests/s. Prints each round and the medians (IQR) of the
B/A and A/A ratios; bench/PROFILE.md says how they were read. Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from bench import completions, documents, load, nginx, procs
from bench import gateway_server as gw
from bench.servers import Env

_TICK = os.sysconf("SC_CLK_TCK")
_CONNECTIONS = 64


def cpu_seconds(server: procs.Server) -> float:
    """User and system CPU of the server's process tree so far."""
    ticks = 0
    for pid in server.pids():
        # After the command's closing parenthesis: state is field 3, utime 14, stime 15.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK


def start_gateway(env: Env, name: str, checkout: str, upstream: str) -> procs.Server:
    """``python -m gateway serve`` from ``checkout`` (its package, its venv), the bench's config."""
    port = procs.free_port()
    path = env.workdir / f"{name}.yaml"
    tree = gw.config_tree(port=port, upstream=upstream, s3_endpoint=env.servers["moto"].url)
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    path.chmod(0o600)
    return env.add(
        procs.start(
            name,
            [f"{checkout}/.venv/bin/python", "-m", "gateway", "serve", "-c", str(path)],
            url=f"http://127.0.0.1:{port}",
            logs=env.logs,
            cwd=Path(checkout),
            env=procs.bench_env({"PYTHONPATH": checkout}),
            ready_path="/-/healthz",
            ready_status=200,
        )
    )


def request_for(case: str, server: procs.Server, who: gw.Login | None) -> load.Request:
    """1 KiB through the proxy, or a fresh v4 policy (its dates move) signed for ``who``."""
    if case == "passthrough":
        return load.Request(server.url + "/1k")
    assert who is not None
    document = documents.policy_v4(
        key_prefix=who.key_prefix,
        bucket=gw.UPLOADS_BUCKET,
        access_key_id=gw.ACCESS_KEY_ID,
        region=gw.REGION,
        now=documents.utc_now(),
    )
    headers = (
        ("Content-Type", "application/json; charset=utf-8"),
        ("Origin", server.url),
        ("Cookie", who.cookie_header),
    )
    url = f"{server.url}{gw.FINEUPLOADER_PATH}/signature?v4=true"
    return load.Request(url, "POST", headers, documents.as_body(document))


def measure(
    case: str, server: procs.Server, who: gw.Login | None, workdir: Path, tag: str, seconds: float
) -> tuple[float, float]:
    """One wrk run: CPU microseconds per request and requests/s; any error fails the pair."""
    request = request_for(case, server, who)
    before = cpu_seconds(server)
    result = load.run(
        request, connections=_CONNECTIONS, duration=seconds, threads=1, workdir=workdir, tag=tag
    )
    used = cpu_seconds(server) - before
    if result.error_count or not result.requests:
        raise RuntimeError(f"{tag}: {result.requests} requests, errors {result.errors}")
    return used / result.requests * 1e6, result.rps


def summary(values: list[float]) -> str:
    """Median (IQR) of paired ratios."""
    if len(values) < 2:
        return f"{values[0]:.3f}"
    low, mid, high = statistics.quantiles(values, n=4, method="inclusive")
    return f"{mid:.3f} (IQR {low:.3f}-{high:.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("a", help="the base checkout (and the A/A control)")
    parser.add_argument("b", help="the checkout measured against it")
    parser.add_argument("--case", choices=("passthrough", "signing"), default="passthrough")
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0)
    args = parser.parse_args()
    binary = nginx.available()
    if binary is None:
        sys.exit("nginx is not installed (bench/nginx.py)")
    names = ("A", "B", "C")  # C: the base again, the A/A control
    ratios: dict[str, list[float]] = {"B/A cpu": [], "C/A cpu": [], "B/A rps": []}
    per_request: dict[str, list[float]] = {name: [] for name in names}
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        logs = workdir / "logs"
        logs.mkdir()
        env = Env(stack, workdir, logs, [])
        port = procs.free_port()
        moto = env.add(
            procs.start(
                "moto",
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                url=f"http://127.0.0.1:{port}",
                logs=logs,
                env=procs.bench_env(),
                ready_path="/moto-api/",
            )
        )
        completions.create_buckets(moto.url)
        port = procs.free_port()
        config = nginx.static_config(workdir, port)
        upstream = env.add(nginx.start(binary, "nginx-upstream", config, port, logs))
        for pair in range(args.pairs):
            checkouts = {"A": args.a, "B": args.b, "C": args.a}
            servers = {
                n: start_gateway(env, f"{n}{pair}", checkouts[n], upstream.url) for n in names
            }
            who = {
                n: gw.login(s.url) if args.case == "signing" else None for n, s in servers.items()
            }
            for n, server in servers.items():
                measure(args.case, server, who[n], workdir, f"warm-{n}{pair}", 1.0)
            for r in range(args.rounds):
                turn = (pair + r) % 3
                order = names[turn:] + names[:turn]
                if (pair + r) % 2:
                    order = order[::-1]
                got = {
                    n: measure(
                        args.case, servers[n], who[n], workdir, f"{n}{pair}-{r}", args.duration
                    )
                    for n in order
                }
                for n in names:
                    per_request[n].append(got[n][0])
                ratios["B/A cpu"].append(got["B"][0] / got["A"][0])
                ratios["C/A cpu"].append(got["C"][0] / got["A"][0])
                ratios["B/A rps"].append(got["B"][1] / got["A"][1])
                print(
                    f"pair {pair} round {r}: "
                    + ", ".join(f"{n} {got[n][0]:.1f} us {got[n][1]:.0f}/s" for n in names),
                    flush=True,
                )
            for name in names:
                env.stop(f"{name}{pair}")
    medians = ", ".join(f"{n} {statistics.median(v):.1f} us" for n, v in per_request.items())
    print(f"{args.case}, {args.pairs} pairs x {args.rounds} rounds; CPU per request: {medians}")
    for name, values in ratios.items():
        print(f"{name}: {summary(values)}")


if __name__ == "__main__":
    main()
