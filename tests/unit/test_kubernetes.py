"""deploy/kubernetes/ against the Kubernetes API schemas (offline, kubernetes-validate's copy)
and against the gateway itself: the container's command parses with the real CLI, the port it
serves is the one the pod declares, the probes hit the ops endpoints, the ConfigMap's config
loads with the Secret's variables, and the security settings match the Dockerfile's user.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

from gateway.cli import build_parser
from gateway.config import Config, ConfigError, parse

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
# The oldest and the newest minor versions the manifests are checked against; strict: a
# misspelt or misplaced field is an error, not a field the API server silently drops.
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")
CONFIG_PATH = "/etc/upload-gateway/config.yaml"


@cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, document) for every YAML document in deploy/kubernetes/."""
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                found.append((path.name, doc))
    return tuple(found)


def one(kind: str) -> dict[str, Any]:
    [doc] = [doc for _, doc in documents() if doc["kind"] == kind]
    return doc


def container() -> dict[str, Any]:
    [gateway] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return gateway


def secret_environment() -> dict[str, str]:
    """Valid values for every variable the Secret provides (its own are placeholders)."""
    values = {}
    for name in one("Secret")["stringData"]:
        values[name] = Fernet.generate_key().decode() if "SESSION_KEY" in name else "s" * 32
    return values


def manifest_config() -> Config:
    """The ConfigMap's config, loaded as the pod loads it: with the Secret's variables only."""
    text = one("ConfigMap")["data"]["config.yaml"]
    return parse(text, secret_environment(), "configmap.yaml")


def serve_args() -> Any:
    return build_parser().parse_args(container()["args"])


def test_the_directory_holds_each_kind_once() -> None:
    """What a user applies with ``kubectl apply -f deploy/kubernetes/``: one of each."""
    kinds = sorted(doc["kind"] for _, doc in documents())
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
            "Secret",
            "Service",
        ]
    )


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    ("name", "doc"), documents(), ids=[f"{n}:{d['kind']}" for n, d in documents()]
)
def test_manifest_is_valid_for_kubernetes(name: str, doc: dict[str, Any], version: str) -> None:
    """Each manifest validates against that version's API schema, strictly (no unknown
    fields), with the schemas the package ships (no network)."""
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_container_runs_serve_as_the_cli_parses_it() -> None:
    """command + args are ``upload-gateway serve`` of the mounted config, on all interfaces,
    and the port the gateway will listen on is the declared containerPort (and the config's)."""
    spec = container()
    assert spec["command"] == ["upload-gateway"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'upload-gateway = "gateway.cli:main"' in pyproject
    args = serve_args()
    assert args.command == "serve"
    assert args.config == CONFIG_PATH
    assert f"UPLOAD_GATEWAY_CONFIG={CONFIG_PATH}" in (ROOT / "Dockerfile").read_text()
    config = manifest_config()
    port = config.listen.port if args.port is None else args.port
    host = args.host or config.listen.host
    assert host == "0.0.0.0"  # noqa: S104 - the pod's interface, by design
    [declared] = spec["ports"]
    assert declared["containerPort"] == port == config.listen.port


def test_the_config_is_mounted_read_only_from_the_configmap() -> None:
    """The ConfigMap's config.yaml lands at the path serve reads, read-only."""
    pod = one("Deployment")["spec"]["template"]["spec"]
    [mount] = [m for m in container()["volumeMounts"] if m["name"] == "config"]
    assert mount["readOnly"] is True
    assert f"{mount['mountPath']}/config.yaml" == CONFIG_PATH
    [volume] = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]


def test_every_variable_of_the_config_comes_from_the_secret() -> None:
    """The config loads with the Secret's variables and nothing else (an unset ${NAME} would
    fail the pod at start), and the pod takes its environment from that Secret."""
    manifest_config()
    [source] = container()["envFrom"]
    assert source["secretRef"]["name"] == one("Secret")["metadata"]["name"]
    assert "env" not in container()


def test_the_secret_placeholders_are_refused() -> None:
    """Applied as shipped, the Secret's placeholders stop the gateway with a line naming the
    key, rather than letting it run with a secret published in this repository."""
    text = one("ConfigMap")["data"]["config.yaml"]
    with pytest.raises(ConfigError) as caught:
        parse(text, one("Secret")["stringData"], "configmap.yaml")
    paths = {problem.path for problem in caught.value.problems}
    assert {"session.keys[0]", "webhook.secret"} <= paths


def test_probes_hit_the_ops_endpoints_on_the_served_port() -> None:
    """Liveness asks /-/healthz, readiness /-/readyz (under the config's ops_prefix), both on
    the port the container declares."""
    spec = container()
    prefix = manifest_config().ops_prefix
    assert spec["livenessProbe"]["httpGet"]["path"] == f"{prefix}/healthz"
    assert spec["readinessProbe"]["httpGet"]["path"] == f"{prefix}/readyz"
    [declared] = spec["ports"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert spec[probe]["httpGet"]["port"] in (declared["name"], declared["containerPort"])


def test_the_pod_runs_as_the_dockerfile_user_on_a_read_only_root() -> None:
    """Non-root as the image's uid, no privilege escalation, no capabilities, a read-only
    root filesystem with an emptyDir for /tmp (where --workers keeps its shared metrics)."""
    uid = int(re.findall(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)[-1])
    pod = one("Deployment")["spec"]["template"]["spec"]
    spec = container()
    security = spec["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == security["runAsUser"] == uid
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    [tmp] = [m for m in spec["volumeMounts"] if m["mountPath"] == "/tmp"]
    [volume] = [v for v in pod["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume


def test_requests_are_set_for_the_cpu_autoscaler() -> None:
    """The autoscaler scales the Deployment on CPU use, measured against the CPU request."""
    resources = container()["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"])
    hpa = one("HorizontalPodAutoscaler")["spec"]
    deployment = one("Deployment")
    target = hpa["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        "Deployment",
        deployment["metadata"]["name"],
    )
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= 2  # one pod may always be drained (pdb.yaml)


def test_selectors_match_the_pods() -> None:
    """The Deployment, the Service and the PodDisruptionBudget select the pods the Deployment
    makes, and the Service sends to the container's port."""
    deployment = one("Deployment")["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    for selector in (
        deployment["selector"]["matchLabels"],
        one("Service")["spec"]["selector"],
        one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    [port] = one("Service")["spec"]["ports"]
    [declared] = container()["ports"]
    assert port["targetPort"] in (declared["name"], declared["containerPort"])
