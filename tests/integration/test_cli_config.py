"""``upload-gateway check-config PATH`` run as a real process: exact lines and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
ENV = {
    "GATEWAY_SESSION_KEY": Fernet.generate_key().decode(),
    "GATEWAY_WEBHOOK_SECRET": "webhook-secret-0123456789",
    "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key-example",
}

VALID = """\
upstream: {url: "http://127.0.0.1:8000"}
session: {keys: ["${GATEWAY_SESSION_KEY}"]}
s3:
  access_key_id: ${AWS_ACCESS_KEY_ID}
  secret_access_key: ${AWS_SECRET_ACCESS_KEY}
  uploads_bucket: test-uploads
  storage_bucket: test-storage
webhook: {secret: "${GATEWAY_WEBHOOK_SECRET}"}
routes:
  - {name: photos, protocol: fineuploader, path: /uploads/photos, max_size: 20MiB,
     forward: /internal/photos}
  - {name: api, protocol: api, path: /api/uploads, max_size: 5GB, forward: /internal/api}
"""


def check_config(path: Path, environ: dict[str, str]) -> tuple[int, list[str], list[str]]:
    """Run ``python -m gateway check-config PATH`` with only ``environ``: (code, stdout, stderr)."""
    env = {"AWS_EC2_METADATA_DISABLED": "true", "PYTHONUTF8": "1", **environ}
    if "PYTHONPATH" in os.environ:
        # The package under test, when it is not the installed one (a worktree).
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(path)],
        env=env,
        cwd=path.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    for name in ("GATEWAY_SESSION_KEY", "GATEWAY_WEBHOOK_SECRET", "AWS_SECRET_ACCESS_KEY"):
        assert environ.get(name, "<unset>") not in output, f"{name} was printed"
    return done.returncode, done.stdout.splitlines(), done.stderr.splitlines()


def test_valid_config_exits_0(tmp_path: Path) -> None:
    """A valid config prints one ok line on stdout, nothing on stderr, and exits 0."""
    path = tmp_path / "gateway.yaml"
    path.write_text(VALID, encoding="utf-8")
    assert check_config(path, ENV) == (0, [f"{path}: ok (2 routes)"], [])


def test_example_config_exits_0() -> None:
    """config/example.yaml passes check-config once its four secrets are in the environment."""
    assert check_config(EXAMPLE, ENV) == (0, [f"{EXAMPLE}: ok (4 routes)"], [])


@pytest.mark.parametrize(
    ("text", "environ", "line"),
    [
        pytest.param(
            VALID.replace("max_size: 5GB", 'max_size: "20 potatoes"'),
            ENV,
            'routes[1].max_size: "20 potatoes" is not a size',
            id="not-a-size",
        ),
        pytest.param(
            VALID.replace("test-uploads\n", "test-uploads\n    region: eu-west-1\n"),
            ENV,
            "{path}: invalid YAML at line 7, column 11: mapping values are not allowed here",
            id="yaml-syntax",
        ),
        pytest.param(
            VALID,
            {k: v for k, v in ENV.items() if k != "GATEWAY_WEBHOOK_SECRET"},
            "webhook.secret: ${GATEWAY_WEBHOOK_SECRET} is not set in the environment",
            id="unset-variable",
        ),
        pytest.param(
            VALID.replace("path: /api/uploads", "path: /uploads/photos"),
            ENV,
            'routes[1].path: "/uploads/photos" is also the path of routes[0] (photos): '
            "route paths must be unique",
            id="duplicate-route-path",
        ),
        pytest.param(
            VALID.replace("max_size: 20MiB,", "max_size: 20MiB, part_size: 16MiB,"),
            ENV,
            "routes[0].part_size: is for api routes only; this one's protocol is fineuploader",
            id="api-key-on-a-fineuploader-route",
        ),
        pytest.param(
            VALID.replace("protocol: fineuploader, ", ""),
            ENV,
            "routes[0].protocol: is required, one of 'fineuploader', 'uppy' or 'api'",
            id="protocol-missing",
        ),
        pytest.param(
            VALID.replace("protocol: api,", "protocol: [api],"),
            ENV,
            "routes[1].protocol: a list should be 'fineuploader', 'uppy' or 'api'",
            id="protocol-a-list",
        ),
        pytest.param(
            VALID.replace("  - {name: api,", "  - null\n  - {name: api,"),
            ENV,
            "routes[1]: null should be a mapping",
            id="route-null",
        ),
        pytest.param(
            VALID,
            {**ENV, "GATEWAY_SESSION_KEY": "wrong-session-key-0123456789"},
            "session.keys[0]: the secret (28 characters) is not a Fernet key: 32 url-safe base64 "
            "bytes (44 characters) expected; make one with `python3 -c 'import base64, os; "
            "print(base64.urlsafe_b64encode(os.urandom(32)).decode())'`",
            id="bad-session-key-not-shown",
        ),
    ],
)
def test_invalid_config_is_one_line_and_exit_2(
    tmp_path: Path, text: str, environ: dict[str, str], line: str
) -> None:
    """Each kind of mistake gives exactly one line on stderr, naming path and value, and exit 2."""
    path = tmp_path / "gateway.yaml"
    path.write_text(text, encoding="utf-8")
    assert check_config(path, environ) == (2, [], [line.replace("{path}", str(path))])


def test_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A path that does not exist is named in one line, exit 2."""
    path = tmp_path / "nowhere.yaml"
    assert check_config(path, ENV) == (2, [], [f"{path}: no such file"])
