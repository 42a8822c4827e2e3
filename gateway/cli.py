"""The ``upload-gateway`` command line: serve, demo, check-config, config-schema, s3 ..., upload.

Every expected failure (a network error, an HTTP status, a bad file or config, Ctrl-C) is one
line on stderr saying what failed and what to do, never a traceback, and one of the exit codes
below (OK, FAILED, USAGE, INTERRUPTED), which README's table documents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import NoReturn

from . import __version__
from .config import Config, ConfigError, load

OK = 0
FAILED = 1  # what the command tried failed: the network, a server, S3, a port, a drift found
USAGE = 2  # the command line, the config or a named file is wrong; nothing was tried
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)

Command = Callable[[argparse.Namespace, Mapping[str, str]], int]


def version() -> str:
    """The installed package's version; the source tree's when it runs uninstalled."""
    try:
        return metadata.version("upload-gateway")
    except metadata.PackageNotFoundError:
        return __version__


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake as one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not more than 0")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0 to 65535)")
    return value


def _default_config_path(environ: Mapping[str, str]) -> str:
    return environ.get("UPLOAD_GATEWAY_CONFIG", "config/gateway.yaml")


def _load_or_report(path: str, environ: Mapping[str, str]) -> Config | None:
    try:
        return load(path, environ)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return None


def cmd_check_config(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Validate a config: one ``path: message`` line per problem on stderr and exit 2, else 0."""
    try:
        config = load(args.path, environ)
    except ConfigError as exc:
        # Bare lines (no "error:" prefix): the output is the list of problems, as the issue shows.
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return USAGE
    count = len(config.routes)
    print(f"{args.path}: ok ({count} route{'' if count == 1 else 's'})")
    return OK


def cmd_config_schema(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the config's JSON Schema (draft-07), for editors and CI validators."""
    from .config.schema import schema_text

    sys.stdout.write(schema_text())
    return OK


def cmd_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the gateway until interrupted."""
    config = _load_or_report(args.config or _default_config_path(environ), environ)
    if config is None:
        return USAGE
    from .server import serve

    return serve(config, host=args.host, port=args.port, workers=args.workers)


def cmd_upload(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Upload a file through an ``api`` route, straight to S3."""
    from .client import run

    return run(
        args.file,
        args.to,
        args.header,
        as_json=args.json,
        parallel=args.parallel,
        timeout=args.timeout,
    )


def cmd_demo(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run moto's S3, the demo app and the gateway on loopback until interrupted."""
    from .demo.runner import run

    return run(host=args.host, port=args.port)


async def _s3_run(action: str, config: Config) -> list[str]:
    """Open the gateway's S3 client and set up, or check, the two buckets."""
    from .buckets import BucketNames, doctor, setup_buckets
    from .storage import open_s3_client

    names = BucketNames(config.s3.uploads_bucket, config.s3.storage_bucket)
    origins = sorted(config.origins)
    async with open_s3_client(config.s3) as client:
        if action == "setup":
            return await setup_buckets(
                client,
                names,
                origins=origins,
                region=config.s3.region,
                give_up_after=config.completion.give_up_after,
            )
        return await doctor(
            client, names, origins=origins, give_up_after=config.completion.give_up_after
        )


# What to do about each kind of S3 failure (the ``reason`` of gateway/storage.py's errors).
_S3_HINTS = {
    "storage-unreachable": "check s3.endpoint_url and s3.region, and that S3 is reachable "
    "from here",
    "storage-denied": "these keys may not do that: setup and doctor need an administrator's "
    'keys (README, "S3: setup, doctor and the IAM policy")',
    "no-such-bucket": "create the buckets with `upload-gateway s3 setup`",
}


def cmd_s3(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``s3 setup`` (print each change), ``s3 doctor`` (each drift; 1 if any), ``s3 iam-policy``."""
    config = _load_or_report(args.config or _default_config_path(environ), environ)
    if config is None:
        return USAGE
    if args.s3_command == "iam-policy":
        from .buckets import BucketNames, iam_policy

        names = BucketNames(config.s3.uploads_bucket, config.s3.storage_bucket)
        print(json.dumps(iam_policy(names), indent=2))
        return OK
    from botocore.exceptions import BotoCoreError, ClientError

    from .buckets import SetupIncomplete
    from .problems import GatewayError

    try:
        lines = asyncio.run(_s3_run(args.s3_command, config))
    except SetupIncomplete as exc:
        if exc.changes:
            print("\n".join(exc.changes))
        for failure in exc.failures:
            print(f"error: {failure}", file=sys.stderr)
        return 1
    except GatewayError as exc:
        # buckets and storage map every S3 failure to one of these; its detail is one line.
        hint = _S3_HINTS.get(exc.reason, "try again later")
        print(f"error: {exc.detail}: {hint}", file=sys.stderr)
        return FAILED
    except (BotoCoreError, ClientError, OSError) as exc:
        line = " ".join(str(exc).split())
        print(f"error: S3 failed: {line}: try again later", file=sys.stderr)
        return FAILED
    if args.s3_command == "setup":
        print("\n".join(lines) if lines else "nothing to change")
        return OK
    if lines:
        print("\n".join(lines))
        return FAILED
    print("buckets match the secure setup")
    return OK


def cmd_completions(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``completions status`` (pending and dead letters) and ``completions retry [--dead]``."""
    config = _load_or_report(args.config or _default_config_path(environ), environ)
    if config is None:
        return USAGE
    from . import completions_cli
    from .problems import GatewayError

    try:
        if args.completions_command == "status":
            lines = asyncio.run(completions_cli.status(config, show_users=args.show_users))
        else:
            lines = asyncio.run(completions_cli.retry(config, dead=args.dead))
    except GatewayError as exc:
        hint = _S3_HINTS.get(exc.reason, "try again later")
        print(f"error: {exc.detail}: {hint}", file=sys.stderr)
        return FAILED
    print("\n".join(lines))
    return OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="upload-gateway",
        description="A reverse proxy that signs direct-to-S3 uploads for the app behind it.",
        epilog="Exit codes: 0 done, 1 failed, 2 bad usage or config, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"upload-gateway {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=description)

    serve = command(
        "serve",
        "run the gateway",
        "Run the gateway until SIGINT or SIGTERM: it binds the port first (a busy port is "
        "exit 1), then serves, forwarding every request but the upload routes to the app.",
    )
    serve.add_argument("-c", "--config", help="config file (default $UPLOAD_GATEWAY_CONFIG)")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--port", type=_port, help="override listen.port")
    serve.add_argument(
        "--workers", type=_positive, default=1, help="processes sharing the port (default 1)"
    )
    serve.set_defaults(func=cmd_serve)

    demo = command(
        "demo",
        "run S3, a demo app and the gateway on this machine",
        "Run moto's S3, a small demo app and the gateway on loopback, in memory, until Ctrl-C.",
    )
    demo.add_argument("--port", type=_port, default=8080, help="the gateway's port (default 8080)")
    demo.add_argument("--host", default="127.0.0.1", help="its address (default 127.0.0.1)")
    demo.set_defaults(func=cmd_demo)

    check = command(
        "check-config",
        "validate a config file",
        "Validate a config file, ${VAR} references included: print one line per problem, "
        "with its YAML path, and exit 2; or print ok and exit 0.",
    )
    check.add_argument("path", help="the YAML config file")
    check.set_defaults(func=cmd_check_config)

    schema = command(
        "config-schema",
        "print the config's JSON Schema, for editors and CI validators",
        "Print the JSON Schema (draft-07) of the config file, which editors using "
        "yaml-language-server and JSON Schema validators check a config against "
        "(docs/configuration.md).",
    )
    schema.set_defaults(func=cmd_config_schema)

    s3 = command(
        "s3",
        "set up or check the buckets; print the IAM policy",
        "Set up or check the uploads and storage buckets the config names, or print the "
        "least-privilege IAM policy for the gateway's credentials.",
    )
    s3_sub = s3.add_subparsers(dest="s3_command", required=True, metavar="ACTION")
    for action, text in (
        ("setup", "create or correct the buckets' secure setup, printing each change"),
        ("doctor", "report every way the buckets differ from the secure setup (exit 1 if any)"),
        ("iam-policy", "print the least-privilege IAM policy for the gateway's credentials"),
    ):
        action_parser = s3_sub.add_parser(
            action, help=text, description=f"{text[:1].upper()}{text[1:]}."
        )
        action_parser.add_argument(
            "-c", "--config", help="config file (default $UPLOAD_GATEWAY_CONFIG)"
        )
        action_parser.set_defaults(func=cmd_s3)

    completions = command(
        "completions",
        "see and steer the completion sweep",
        "List uploads no client completed (per route, oldest first) and dead letters, or "
        "sweep now, once.",
    )
    completions_sub = completions.add_subparsers(
        dest="completions_command", required=True, metavar="ACTION"
    )
    status = completions_sub.add_parser(
        "status",
        help="pending uploads per route and dead letters, with keys and user hashes",
        description="List the uploads no client completed (per route, oldest age, each with "
        "its key and user hash) and every dead letter.",
    )
    status.add_argument(
        "--show-users", action="store_true", help="also print user ids (personal data)"
    )
    again = completions_sub.add_parser(
        "retry",
        help="sweep now, once, ignoring backoff",
        description="Sweep now, once, ignoring backoff; with --dead, deliver every dead letter "
        "again too.",
    )
    again.add_argument("--dead", action="store_true", help="deliver the dead letters again too")
    for action_parser in (status, again):
        action_parser.add_argument(
            "-c", "--config", help="config file (default $UPLOAD_GATEWAY_CONFIG)"
        )
        action_parser.set_defaults(func=cmd_completions)

    upload = command(
        "upload",
        "upload a file through an api route",
        "Upload a file straight to S3 through a gateway's api route, printing progress and "
        "then the app's answer. Ctrl-C aborts the upload.",
    )
    upload.add_argument("file")
    upload.add_argument("--to", required=True, metavar="URL", help="the api route's URL")
    upload.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value', repeatable"
    )
    upload.add_argument("--json", action="store_true", help="print only the answer, as JSON")
    upload.add_argument(
        "--parallel", type=_positive, default=4, help="parts sent at once (default 4)"
    )
    upload.add_argument(
        "--timeout",
        type=_seconds,
        default=300.0,
        metavar="SECONDS",
        help="give up on a server silent this long (default 300)",
    )
    upload.set_defaults(func=cmd_upload)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of ``upload-gateway`` and ``python -m gateway``."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args, os.environ if environ is None else environ)
    except KeyboardInterrupt:
        # Commands that can say more (upload: was the upload aborted?) catch it themselves.
        print(f"interrupted: upload-gateway {args.command} stopped", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
