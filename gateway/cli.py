"""The ``upload-gateway`` command line: serve, demo, check-config, config-schema, s3 ..., upload."""

from __future__ import annotations

import argparse
import asyncio
import json
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


def cmd_config_schema(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """Print the config's JSON Schema (draft 2020-12), for editors and CI validators."""
    from .config.schema import schema_text

    sys.stdout.write(schema_text())
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
            return await setup_buckets(client, names, origins=origins, region=config.s3.region)
        return await doctor(client, names, origins=origins)


def cmd_s3(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    """``s3 setup`` (print each change), ``s3 doctor`` (each drift; 1 if any), ``s3 iam-policy``."""
    config = _load_or_report(args.config or _default_config_path(environ), environ)
    if config is None:
        return 2
    if args.s3_command == "iam-policy":
        from .buckets import BucketNames, iam_policy

        names = BucketNames(config.s3.uploads_bucket, config.s3.storage_bucket)
        print(json.dumps(iam_policy(names), indent=2))
        return 0
    from botocore.exceptions import BotoCoreError, ClientError

    from .problems import GatewayError

    try:
        lines = asyncio.run(_s3_run(args.s3_command, config))
    except GatewayError as exc:
        # buckets and storage map every S3 failure to one of these; its detail is one line.
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError, OSError) as exc:
        print(f"error: S3 failed: {exc}", file=sys.stderr)
        return 1
    if args.s3_command == "setup":
        print("\n".join(lines) if lines else "nothing to change")
        return 0
    if lines:
        print("\n".join(lines))
        return 1
    print("buckets match the secure setup")
    return 0


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

    demo = sub.add_parser("demo", help="run S3, a demo app and the gateway on this machine")
    demo.add_argument("--port", type=int, default=8080, help="the gateway's port (default 8080)")
    demo.add_argument("--host", default="127.0.0.1", help="its address (default 127.0.0.1)")
    demo.set_defaults(func=cmd_demo)

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("path")
    check.set_defaults(func=cmd_check_config)

    schema = sub.add_parser(
        "config-schema", help="print the config's JSON Schema, for editors and CI validators"
    )
    schema.set_defaults(func=cmd_config_schema)

    s3 = sub.add_parser("s3", help="set up or check the buckets; print the IAM policy")
    s3_sub = s3.add_subparsers(dest="s3_command", required=True, metavar="ACTION")
    for action, text in (
        ("setup", "create or correct the buckets' secure setup, printing each change"),
        ("doctor", "report every way the buckets differ from the secure setup (exit 1 if any)"),
        ("iam-policy", "print the least-privilege IAM policy for the gateway's credentials"),
    ):
        command = s3_sub.add_parser(action, help=text)
        command.add_argument("-c", "--config", help="config file (default $UPLOAD_GATEWAY_CONFIG)")
        command.set_defaults(func=cmd_s3)

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
