"""Running the app: one process, or several sharing the port with SO_REUSEPORT."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from multiprocessing.process import BaseProcess
from typing import Any

from aiohttp import web
from prometheus_client import multiprocess

from . import ops
from ._fast import connection
from .app import GATEWAY, create_app
from .config import Config
from .listen import ListenError, close_all, listen, show
from .logs import AccessLogger, configure
from .metrics import Metrics, share_between_workers

log = logging.getLogger(__name__)

_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
# How often a worker checks that its parent still runs (a parent killed with SIGKILL cannot
# stop its workers, which would go on holding the port unsupervised).
PARENT_CHECK_INTERVAL = 0.5


def _install_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - optional on platforms without it
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def runner_options(config: Config) -> dict[str, Any]:
    """The keyword arguments a ``web.AppRunner`` (``start_runner``) gets for this config."""
    limits = config.limits
    return {
        "access_log_class": AccessLogger,
        # aiohttp closes a connection whose head is incomplete when this runs out, counted from
        # connect or from the previous answer: nginx's client_header_timeout and
        # keepalive_timeout in one. Slow bodies are the guard middleware's (gateway/guard.py).
        "keepalive_timeout": limits.header_timeout,
        "max_line_size": limits.max_line_size,
        "max_field_size": limits.max_field_size,
        "max_headers": limits.max_headers,
        # A handler runs to its end when its client leaves, so a completion is never cut halfway.
        "handler_cancellation": False,
    }


def _stop_with_parent(parent: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that stops this worker gracefully once ``parent`` is gone."""

    async def watch() -> None:
        # Polled: no portable event tells a process that its parent died (PDEATHSIG is Linux's).
        while os.getppid() == parent:  # noqa: ASYNC110
            await asyncio.sleep(PARENT_CHECK_INTERVAL)
        log.error("parent_gone", extra={"detail": f"parent {parent} exited"})
        # The same way out as a SIGTERM from the parent: the runner shuts down gracefully.
        os.kill(os.getpid(), signal.SIGTERM)

    async def context(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def _run_one(
    config: Config,
    sockets: list[socket.socket],
    ops_sockets: list[socket.socket],
    *,
    metrics_dir: str | None = None,
    parent: int | None = None,
) -> None:
    """Serve on ``sockets`` (listening already), and the ops endpoints alone on ``ops_sockets``
    (config ``ops_listen``), in this process until SIGINT/SIGTERM (or, for a worker, its
    ``parent`` is gone); ``metrics_dir``: where the workers count together."""
    configure()
    _install_uvloop()
    metrics = None
    if metrics_dir is not None:
        # Before any metric exists: prometheus-client picks the value store at creation.
        share_between_workers(metrics_dir)
        metrics = Metrics(shared_dir=metrics_dir)
    app = create_app(config, metrics=metrics, sweep=True)
    if parent is not None:
        app.cleanup_ctx.append(_stop_with_parent(parent))
    # What start-up made lives as long as the process: frozen, full collections no longer walk
    # it, which shortens the proxy's tail latency (bench/PROFILE.md).
    gc.collect()
    gc.freeze()
    _run_until_stopped(app, sockets, ops_sockets, options=runner_options(config))


async def start_runner(app: web.Application, **options: Any) -> web.AppRunner:
    """An AppRunner for a ``create_app`` app, set up, with the app's front as the server's
    handler (gateway/front.py) and its connections under ``limits.send_timeout``
    (gateway/_fast/connection.py); ``options`` as ``runner_options`` gives them."""
    runner = web.AppRunner(app, **options)
    await runner.setup()
    server = runner.server
    if server is None:  # pragma: no cover - setup() always makes one
        raise RuntimeError("the runner has no server")
    gateway = app[GATEWAY]
    connection.install(
        server,
        send_timeout=gateway.services.config.limits.send_timeout,
        handler=gateway.front.dispatcher(server.request_handler, gateway.proxy),
    )
    return runner


# Options of a runner rather than of its server's connections.
_RUNNER_ONLY = frozenset({"handle_signals", "shutdown_timeout"})


async def start_ops_runner(runner: web.AppRunner, **options: Any) -> web.ServerRunner:
    """The runner of the ops listener (config ``ops_listen``), set up, for a runner made by
    ``start_runner``: the same app's front and endpoints under ``ops_prefix``, a 404 for any
    other path. A server of its own, so the public port's handler tests nothing per request."""
    gateway = runner.app[GATEWAY]
    server = runner.server
    if server is None:  # pragma: no cover - start_runner set it up
        raise RuntimeError("the runner is not set up")
    ops_server = web.Server(
        gateway.front.ops_dispatcher(ops.elsewhere),
        request_factory=server.request_factory,
        **{k: v for k, v in options.items() if k not in _RUNNER_ONLY},
    )
    connection.install(ops_server, send_timeout=gateway.services.config.limits.send_timeout)
    ops_runner = web.ServerRunner(
        ops_server, **{k: v for k, v in options.items() if k in _RUNNER_ONLY}
    )
    await ops_runner.setup()
    return ops_runner


def _run_until_stopped(
    app: web.Application,
    sockets: list[socket.socket],
    ops_sockets: list[socket.socket],
    *,
    options: dict[str, Any],
) -> None:
    """Serve until SIGINT/SIGTERM, then stop gracefully: what ``web.run_app`` does, with the
    front installed (run_app offers no way to reach its server's handler)."""

    async def serve() -> None:
        runner = await start_runner(app, handle_signals=True, **options)
        ops_runner: web.ServerRunner | None = None
        try:
            for sock in sockets:
                await web.SockSite(runner, sock).start()
            if ops_sockets:
                ops_runner = await start_ops_runner(runner, **options)
                for sock in ops_sockets:
                    await web.SockSite(ops_runner, sock).start()
            for sock in sockets:
                host, port = sock.getsockname()[:2]
                log.info("gateway_listening", extra={"path": f"http://{show(host, port)}"})
            ops_prefix = app[GATEWAY].services.config.ops_prefix
            for sock in ops_sockets:
                host, port = sock.getsockname()[:2]
                path = f"http://{show(host, port)}{ops_prefix}"
                log.info("ops_listening", extra={"path": path})
            # Until a stop signal: the runner's handler raises GracefulExit out of the loop.
            await asyncio.Event().wait()
        finally:
            # The ops listener first: its readyz uses the clients the app's cleanup closes.
            if ops_runner is not None:
                await ops_runner.cleanup()
            await runner.cleanup()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _worker(
    config: Config,
    groups: list[list[socket.socket]],
    ops_groups: list[list[socket.socket]],
    index: int,
    metrics_dir: str,
    parent: int,
) -> None:
    """A forked worker: the parent's signal handlers and mask are the parent's, not its own;
    so are the other workers' sockets, which it closes (a dead worker's socket must not stay
    open here, taking its share of new connections that nobody accepts)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    others = [*groups[:index], *groups[index + 1 :], *ops_groups[:index], *ops_groups[index + 1 :]]
    close_all(others)
    _run_one(config, groups[index], ops_groups[index], metrics_dir=metrics_dir, parent=parent)


def serve(config: Config, *, host: str | None, port: int | None, workers: int = 1) -> int:
    """Serve until SIGINT/SIGTERM; with workers > 1, that many processes share the port.

    The port is bound first, here, so a busy port or a wrong address is one line on stderr and
    exit 1 before anything starts; with workers, in the parent, before any is forked."""
    host = host or config.listen.host
    port = config.listen.port if port is None else port
    if workers > 1 and not hasattr(socket, "SO_REUSEPORT"):
        print("error: --workers needs SO_REUSEPORT (Linux, BSD)", file=sys.stderr)
        return 2
    try:
        groups = listen(host, port, count=max(1, workers))
    except ListenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    ops_groups: list[list[socket.socket]] = [[] for _ in groups]
    if config.ops_listen is not None:
        try:
            ops_groups = listen(config.ops_listen.host, config.ops_listen.port, count=len(groups))
        except ListenError as exc:
            close_all(groups)
            print(f"error: ops_listen: {exc}", file=sys.stderr)
            return 1
    if workers <= 1:
        try:
            _run_one(config, groups[0], ops_groups[0])
        finally:
            close_all(groups + ops_groups)
        return 0
    configure()
    try:
        # Fresh for every run: prometheus-client sums every file it finds there, and files
        # left by an earlier run would be counted again.
        metrics_dir = tempfile.mkdtemp(prefix="upload-gateway-metrics-")
    except OSError as exc:
        close_all(groups + ops_groups)
        print(
            "error: --workers needs a writable temporary directory for the shared metrics: "
            f"{exc.strerror or exc} (set TMPDIR to a writable directory)",
            file=sys.stderr,
        )
        return 1
    try:
        return _supervise(config, groups, ops_groups, metrics_dir)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(
    config: Config,
    groups: list[list[socket.socket]],
    ops_groups: list[list[socket.socket]],
    metrics_dir: str,
) -> int:
    """Start the workers, pass SIGINT/SIGTERM on to them, and wait for all of them to end.

    A worker that ends on its own (a crash, a kill) stops the others and the parent exits 1:
    the service manager restarts the whole, rather than it running short of workers unseen.
    """
    ctx = multiprocessing.get_context("fork")
    host, port = groups[0][0].getsockname()[:2]
    procs: list[BaseProcess] = []
    stopping = False

    def stop_all(signum: int | None = None, frame: object = None) -> None:
        nonlocal stopping
        stopping = True
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)

    # Blocked while forking: a signal arriving between two starts would otherwise run the
    # handler in a half-made child, or leave later workers unstopped.
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        signal.signal(signal.SIGTERM, stop_all)
        signal.signal(signal.SIGINT, stop_all)
        for index in range(len(groups)):
            worker = ctx.Process(
                target=_worker,
                args=(config, groups, ops_groups, index, metrics_dir, os.getpid()),
                name=f"gateway-worker-{index}",
                daemon=False,
            )
            worker.start()
            procs.append(worker)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        # Each worker has its own copies now; the parent's would keep a dead worker's socket
        # in the port's group, taking connections nobody accepts.
        close_all(groups + ops_groups)
    log.info(
        "gateway_workers",
        extra={"detail": f"{len(groups)} workers", "path": show(host, port)},
    )

    failed = False
    running = list(procs)
    while running:
        ended = multiprocessing.connection.wait([proc.sentinel for proc in running])
        for done in [p for p in running if p.sentinel in ended]:
            done.join()
            running.remove(done)
            if done.pid is not None:
                # prometheus-client's hook for an ended process (drops its live-gauge files).
                multiprocess.mark_process_dead(done.pid, metrics_dir)  # type: ignore[no-untyped-call]
            if not stopping:
                failed = True
                log.error(
                    "worker_exited",
                    extra={"detail": f"pid {done.pid}", "error": f"exit code {done.exitcode}"},
                )
                stop_all()
    clean = all(proc.exitcode in (0, -signal.SIGTERM) for proc in procs)
    return 0 if clean and not failed else 1
