"""Operator documents against the code: tests SECURITY.md cites, Dockerfile, README commands.

SECURITY.md names a test for every defence; a renamed or deleted test would leave a claim with
no proof behind it. The Dockerfile and the README's command lines are checked with the real
argument parser, so a flag that changes breaks here, not in someone's deployment.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway import docgen
from gateway.cli import build_parser
from gateway.config import Config

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "SECURITY.md"
README = ROOT / "README.md"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

_TEST_REF = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
_TEST_FILE = re.compile(r"`(tests/[\w/]+\.py)`")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _security_refs() -> list[tuple[str, str]]:
    return sorted(set(_TEST_REF.findall(SECURITY.read_text(encoding="utf-8"))))


@cache
def _test_functions(path: str) -> frozenset[str]:
    """Test functions pytest would collect from ``path``, at module level or in a class."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        bodies = node.body if isinstance(node, ast.ClassDef) else [node]
        for item in bodies:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                names.add(item.name)
    return frozenset(n for n in names if n.startswith("test_"))


def test_security_md_cites_tests_for_every_threat() -> None:
    """SECURITY.md names tests in every threat section (the parse below found them)."""
    refs = _security_refs()
    assert len(refs) >= 60, f"only {len(refs)} test references parsed from SECURITY.md"
    text = SECURITY.read_text(encoding="utf-8")
    sections = re.split(r"^### ", text.split("## Deployment checklist")[0], flags=re.MULTILINE)[1:]
    assert len(sections) >= 9
    for section in sections:
        title = section.splitlines()[0]
        assert _TEST_REF.search(section), f"section {title!r} cites no test"


@pytest.mark.parametrize(("path", "name"), _security_refs(), ids=lambda v: str(v))
def test_every_test_security_md_names_exists(path: str, name: str) -> None:
    """Each ``tests/file.py::test_name`` SECURITY.md cites is a test pytest collects."""
    assert (ROOT / path).is_file(), f"{path} does not exist"
    assert name in _test_functions(path), f"{path} has no test named {name}"


def test_test_files_named_in_the_docs_exist() -> None:
    """Test modules the README and SECURITY.md point operators to are there."""
    named = set()
    for doc in (README, SECURITY):
        named |= set(_TEST_FILE.findall(doc.read_text(encoding="utf-8")))
    assert named
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing


# --------------------------------------------------------------------------- Dockerfile


def _instructions() -> dict[str, list[str]]:
    """Dockerfile instructions by keyword, continuation lines joined, in order."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        found.setdefault(keyword.upper(), []).append(rest.strip())
    return found


def _env() -> dict[str, str]:
    env: dict[str, str] = {}
    for value in _instructions()["ENV"]:
        for token in shlex.split(value):
            name, _, val = token.partition("=")
            env[name] = val
    return env


def test_dockerfile_command_is_one_the_cli_accepts() -> None:
    """The image's ENTRYPOINT + CMD parse with the real CLI, as a serve on 0.0.0.0 of the
    documented config path, on the EXPOSEd port."""
    found = _instructions()
    assert json.loads(found["ENTRYPOINT"][-1]) == ["upload-gateway"]
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'upload-gateway = "gateway.cli:main"' in pyproject
    args = build_parser().parse_args(json.loads(found["CMD"][-1]))
    assert args.command == "serve"
    assert args.config == _env()["UPLOAD_GATEWAY_CONFIG"] == "/etc/upload-gateway/config.yaml"
    assert args.host == "0.0.0.0"  # noqa: S104 - the container's interface, by design
    assert [str(args.port)] == found["EXPOSE"]
    assert "/etc/upload-gateway/config.yaml" in README.read_text(encoding="utf-8")


def test_dockerfile_runs_as_a_non_root_user() -> None:
    """The final stage switches to a numeric, non-zero uid before the entrypoint."""
    user = _instructions()["USER"][-1]
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0


def test_healthcheck_url_is_the_healthz_of_the_served_port() -> None:
    """HEALTHCHECK_URL names the default ops prefix's healthz on the port CMD serves."""
    url = urlsplit(_env()["HEALTHCHECK_URL"])
    port = build_parser().parse_args(json.loads(_instructions()["CMD"][-1])).port
    default_prefix = Config.model_fields["ops_prefix"].default
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", port, f"{default_prefix}/healthz")


def test_dockerignore_lets_through_what_the_build_copies() -> None:
    """The context is an allow-list, and every path the build stage COPYs is in it."""
    lines = [
        ln.strip()
        for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for value in _instructions()["COPY"]:
        if value.startswith("--from"):
            continue
        copied |= set(value.split()[:-1])
    assert copied == allowed == {"pyproject.toml", "README.md", "gateway"}


# --------------------------------------------------------------------------- README commands


def _readme_commands() -> list[list[str]]:
    """Argument lists given to ``upload-gateway`` in the README's shell and unit-file blocks."""
    commands = []
    for lang, block in _FENCE.findall(README.read_text(encoding="utf-8")):
        if lang not in ("sh", "ini"):
            continue
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line.removeprefix("ExecStart="), comments=True)
            spots = [
                i
                for i, t in enumerate(tokens)
                if t == "upload-gateway" or t.endswith("/bin/upload-gateway")
            ]
            if not spots or (tokens[0] == "docker" and tokens[1] == "build"):
                continue
            args = tokens[spots[-1] + 1 :]
            if args:
                commands.append(args)
    return commands


def test_readme_commands_parse_with_the_real_cli() -> None:
    """Every ``upload-gateway ...`` line the README shows is accepted by the CLI's parser."""
    commands = _readme_commands()
    assert len(commands) >= 10, commands
    refused = []
    for args in commands:
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            if exc.code != 0:  # --version exits 0 once it has printed
                refused.append(" ".join(args))
    assert not refused


# --------------------------------------------------------------------------- docs/ itself

# Where the team's own notes lived; the repository's docs replace them, and users never had them.
_OUTSIDE_NOTES = re.compile(
    r"\.\./shared|shared/reference|SPEC\.md|ARCHITECTURE\.md|fineuploader-protocol\.md"
    r"|testing-notes\.md|style-anchors\.md"
)
_TEXT_SUFFIXES = {".md", ".py", ".yaml", ".yml", ".json", ".js", ".mjs", ".sh", ".toml", ".html"}
_PUBLISHED = ("README.md", "SECURITY.md", "Dockerfile", "pyproject.toml", "config", "docs",
              "gateway", "tests", "bench", "scripts", "deploy")  # fmt: skip
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _published_files() -> list[Path]:
    files: list[Path] = []
    for name in _PUBLISHED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
            continue
        for found in sorted(path.rglob("*")) if path.is_dir() else ():
            parts = found.relative_to(ROOT).parts
            if any(p in ("node_modules", "__pycache__", "out") or p.startswith(".") for p in parts):
                continue
            if found.is_file() and found.suffix in _TEXT_SUFFIXES:
                files.append(found)
    return files


@pytest.mark.parametrize("path", sorted(docgen.expected(ROOT)), ids=lambda p: str(p.name))
def test_generated_docs_are_current(path: Path) -> None:
    """The generated parts of docs/ (config reference, JSON Schema, reason tables) are what the
    code generates now."""
    wanted = docgen.expected(ROOT)[path]
    assert path.read_text(encoding="utf-8") == wanted, (
        f"{path.relative_to(ROOT)} is stale: run `{docgen.COMMAND}` "
        "(PYTHONPATH=. .venv/bin/python -m gateway.docgen) and commit the result"
    )


def test_nothing_points_outside_the_repository() -> None:
    """No document, comment or config refers a reader to the team's notes outside the
    repository (../shared, SPEC.md, ...): what they said is in docs/."""
    files = _published_files()
    assert len(files) > 100 and ROOT / "gateway" / "cli.py" in files
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}"
        for path in files
        if path != Path(__file__).resolve()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if _OUTSIDE_NOTES.search(line)
    ]
    assert not found


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    text = path.read_text(encoding="utf-8")
    titles = re.findall(r"^#+ (.+)$", _FENCE.sub("", text), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", t.strip().lower()).replace(" ", "-") for t in titles}


def test_links_in_the_docs_stay_in_the_repository_and_resolve() -> None:
    """Every relative link of README.md, SECURITY.md and docs/ names a file of the repository
    (and a heading of it, when it has an anchor)."""
    docs = [README, SECURITY, *sorted((ROOT / "docs").rglob("*.md"))]
    checked = 0
    broken = []
    for doc in docs:
        for target in _LINK.findall(_FENCE.sub("", doc.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file_part, _, anchor = target.partition("#")
            resolved = (doc.parent / file_part).resolve() if file_part else doc
            checked += 1
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert checked > 40
    assert not broken
