"""The ``upload-gateway`` command line: serve, check-config, and the commands added beside them."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from .config import Config, ConfigError, load

Command = Callable[[argparse.Namespace, Mapping[str, str]], int]


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
        return 2
    count = len(config.routes)
    print(f"{args.path}: ok ({count} route{'' if count == 1 else 's'})")
    return 0


def cmd_serve(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Run the gateway until interrupted."""
    config = _load_or_report(args.config or _default_config_path(environ), environ)
    if config is None:
        return 2
    from .server import serve

    return serve(config, host=args.host, port=args.port, workers=args.workers)


def cmd_upload(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Upload a file through an ``api`` route, straight to S3."""
    from .client import run

    return run(args.file, args.to, args.header, as_json=args.json, parallel=args.parallel)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="upload-gateway",
        description="A reverse proxy that signs direct-to-S3 uploads for the app behind it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("-c", "--config", help="config file (default $UPLOAD_GATEWAY_CONFIG)")
    serve.add_argument("--host", help="override listen.host")
    serve.add_argument("--port", type=int, help="override listen.port")
    serve.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(func=cmd_check_config)

    upload = sub.add_parser("upload", help="upload a file through an api route")
    upload.add_argument("file")
    upload.add_argument("--to", required=True, metavar="URL", help="the api route's URL")
    upload.add_argument(
        "-H", "--header", action="append", default=[], help="'Name: value', repeatable"
    )
    upload.add_argument("--json", action="store_true", help="print only the answer, as JSON")
    upload.add_argument("--parallel", type=int, default=4, help="parts sent at once")
    upload.set_defaults(func=cmd_upload)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Entry point of ``upload-gateway`` and ``python -m gateway``."""
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args, os.environ if environ is None else environ)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
