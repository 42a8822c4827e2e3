"""``upload-gateway s3 setup | doctor | iam-policy`` run as real processes against moto's server,
and setup and doctor against radosgw too (``s3_server``)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from cryptography.fernet import Fernet

from gateway.buckets import LIFECYCLE_RULE_ID, BucketNames
from tests.support.s3 import S3Server

ORIGIN = "https://app.example.com"
ENV = {
    "GATEWAY_SESSION_KEY": Fernet.generate_key().decode(),
    "GATEWAY_WEBHOOK_SECRET": "webhook-secret-0123456789",
    "AWS_ACCESS_KEY_ID": "AKIDCLITEST",
    "AWS_SECRET_ACCESS_KEY": "cli-test-secret-access-key",
}

CONFIG = """\
public_origins: ["{origin}"]
upstream: {{url: "http://127.0.0.1:8000"}}
session: {{keys: ["${{GATEWAY_SESSION_KEY}}"]}}
s3:
  endpoint_url: {endpoint}
  access_key_id: ${{AWS_ACCESS_KEY_ID}}
  secret_access_key: ${{AWS_SECRET_ACCESS_KEY}}
  uploads_bucket: {uploads}
  storage_bucket: {storage}
webhook: {{secret: "${{GATEWAY_WEBHOOK_SECRET}}"}}
routes:
  - {{name: photos, protocol: fineuploader, path: /uploads/photos, max_size: 20MiB,
     forward: /internal/photos}}
"""


@pytest.fixture
def names() -> BucketNames:
    suffix = uuid.uuid4().hex[:12]
    return BucketNames(uploads=f"cli-up-{suffix}", storage=f"cli-st-{suffix}")


def write_config(folder: Path, endpoint: str, names: BucketNames, origin: str = ORIGIN) -> Path:
    path = folder / "gateway.yaml"
    text = CONFIG.format(
        origin=origin, endpoint=endpoint, uploads=names.uploads, storage=names.storage
    )
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def config(tmp_path: Path, s3_endpoint: str, names: BucketNames) -> Path:
    return write_config(tmp_path, s3_endpoint, names)


def s3(*args: str, environ: dict[str, str] | None = None) -> tuple[int, list[str], list[str]]:
    """Run ``python -m gateway s3 ARGS``: (exit code, stdout lines, stderr lines)."""
    environ = ENV if environ is None else environ
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_EC2_METADATA_DISABLED": "true", **environ})
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "s3", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    assert environ["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    return done.returncode, done.stdout.splitlines(), done.stderr.splitlines()


def keys_of(server: S3Server) -> dict[str, str]:
    """ENV with the server's administrator keys (moto takes any; radosgw knows one user)."""
    if server.name == "moto":
        return ENV
    return {
        **ENV,
        "AWS_ACCESS_KEY_ID": server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": server.secret_access_key,
    }


def boto(server: S3Server) -> object:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint,
        region_name="us-east-1",
        aws_access_key_id=server.access_key_id,
        aws_secret_access_key=server.secret_access_key,
    )


def left_by_setup(server: S3Server, names: BucketNames) -> list[str]:
    """What setup cannot correct on the server: on radosgw 16, which has no default-encryption
    API, that drift on each bucket (doctor keeps reporting it, setup exits 1 naming it)."""
    if server.name == "moto":
        return []
    return [
        f"{role} bucket {bucket}: default encryption is off"
        for role, bucket in (("uploads", names.uploads), ("storage", names.storage))
    ]


def setup_errors(server: S3Server, names: BucketNames) -> list[str]:
    return [
        f"error: {line}; S3 failed to correct it (InvalidArgument)"
        for line in left_by_setup(server, names)
    ]


def test_setup_creates_both_buckets_then_has_nothing_to_change(
    config: Path, s3_server: S3Server, names: BucketNames
) -> None:
    """The first setup prints each change it made; the second finds nothing to change. What the
    server refuses (radosgw: default encryption) is one error line each time, and exit 1."""
    env = keys_of(s3_server)
    errors = setup_errors(s3_server, names)
    code, out, err = s3("setup", "-c", str(config), environ=env)
    assert (code, err) == (1 if errors else 0, errors)
    assert f"uploads bucket {names.uploads}: created" in out
    assert f"storage bucket {names.storage}: created" in out
    assert any("CORS" in line and names.uploads in line for line in out)
    assert any("lifecycle" in line and names.uploads in line for line in out)
    client = boto(s3_server)
    rules = client.get_bucket_cors(Bucket=names.uploads)["CORSRules"]  # type: ignore[attr-defined]
    assert [rule["AllowedOrigins"] for rule in rules] == [[ORIGIN]]
    lifecycle = client.get_bucket_lifecycle_configuration(Bucket=names.uploads)  # type: ignore[attr-defined]
    assert [rule["ID"] for rule in lifecycle["Rules"]] == [LIFECYCLE_RULE_ID]
    again = s3("setup", "-c", str(config), environ=env)
    assert again == ((1, [], errors) if errors else (0, ["nothing to change"], []))


def test_doctor_passes_after_setup_and_reports_a_drift(
    config: Path, s3_server: S3Server, names: BucketNames
) -> None:
    """doctor exits 0 on the secure setup, 1 with one line per drift, and changes nothing. On
    radosgw the drift setup cannot correct (default encryption) stays reported, and exit 1."""
    env = keys_of(s3_server)
    left = left_by_setup(s3_server, names)
    clean = (1, left, []) if left else (0, ["buckets match the secure setup"], [])
    s3("setup", "-c", str(config), environ=env)
    assert s3("doctor", "-c", str(config), environ=env) == clean
    client = boto(s3_server)
    client.delete_bucket_cors(Bucket=names.uploads)  # type: ignore[attr-defined]
    code, out, err = s3("doctor", "-c", str(config), environ=env)
    assert (code, err) == (1, [])
    [drift] = [line for line in out if line not in left]  # one drift, one line
    assert drift.startswith(f"uploads bucket {names.uploads}: ") and "CORS" in drift
    # doctor only reports: the rules are still gone, until setup puts them back.
    assert s3("doctor", "-c", str(config), environ=env)[0] == 1
    code, out, _ = s3("setup", "-c", str(config), environ=env)
    assert code == (1 if left else 0) and len(out) == 1
    assert names.uploads in out[0] and "CORS" in out[0]
    assert s3("doctor", "-c", str(config), environ=env) == clean


def test_doctor_reports_missing_buckets(config: Path, names: BucketNames) -> None:
    """Before any setup, each missing bucket is a drift."""
    code, out, _ = s3("doctor", "-c", str(config))
    assert code == 1
    assert f"uploads bucket {names.uploads}: does not exist" in out
    assert f"storage bucket {names.storage}: does not exist" in out


def test_doctor_reports_origins_changed_in_the_config(
    tmp_path: Path, config: Path, s3_endpoint: str, names: BucketNames
) -> None:
    """A new public origin in the config is a drift until setup rewrites the CORS rules."""
    assert s3("setup", "-c", str(config))[0] == 0
    other = tmp_path / "other"
    other.mkdir()
    moved = write_config(other, s3_endpoint, names, origin="https://new.example.com")
    code, out, _ = s3("doctor", "-c", str(moved))
    assert code == 1 and len(out) == 1 and "https://new.example.com" in out[0]


def test_iam_policy_names_both_buckets(config: Path, names: BucketNames) -> None:
    """iam-policy prints a valid policy document scoped to the config's two buckets only."""
    code, out, err = s3("iam-policy", "-c", str(config))
    assert (code, err) == (0, [])
    policy = json.loads("\n".join(out))
    assert policy["Version"] == "2012-10-17"
    resources: list[str] = []
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all(action.startswith("s3:") and "*" not in action for action in statement["Action"])
        value = statement["Resource"]
        resources += value if isinstance(value, list) else [value]
    arns = {f"arn:aws:s3:::{names.uploads}", f"arn:aws:s3:::{names.storage}"}
    assert arns | {f"{arn}/*" for arn in arns} == set(resources)


def test_invalid_config_exits_2(tmp_path: Path, s3_endpoint: str, names: BucketNames) -> None:
    """A config error is reported with its YAML path and exit code 2, before S3 is called."""
    path = write_config(tmp_path, s3_endpoint, names)
    code, out, err = s3("setup", "-c", str(path), environ={**ENV, "GATEWAY_SESSION_KEY": "short"})
    assert code == 2 and out == []
    assert [line for line in err if line.startswith("error: session.keys[0]")] != []


def test_unreachable_s3_is_one_line_and_exit_1(tmp_path: Path, names: BucketNames) -> None:
    """S3 that refuses connections gives one error line and exit code 1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    path = write_config(tmp_path, closed, names)
    for action in ("setup", "doctor"):
        code, out, err = s3(action, "-c", str(path))
        assert (code, out) == (1, [])
        assert len(err) == 1 and err[0].startswith("error: S3 is unreachable")
