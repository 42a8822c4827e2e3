"""The reason catalogue (gateway/reasons.py) against every reason the code can give.

The code is read, not run: each ``reason="..."`` argument, each ``refuse("...")``, each class's
``default_reason`` and the reasons built from tables (S3's error codes, aiohttp's statuses, the
unsafe-path checks) must be catalogued with the status the raising class answers. A ``reason=``
whose value is not a literal must be one of the pass-throughs reviewed below, so a new way of
passing reasons fails here until someone reads it.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway import front, guard, problems, storage, targets
from gateway.problems import GatewayError
from gateway.reasons import GROUPS, REASONS, markdown_table

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "gateway"

# ``reason=`` arguments that pass on a reason computed elsewhere, each read and found to come
# from a catalogued source: (file, the argument's source, where its values come from).
REVIEWED_PASS_THROUGHS = {
    ("gateway/rules/context.py", "reason"): "refuse(reason, ...) calls, scanned as literals",
    ("gateway/completion/pipeline.py", "exc.reason"): "check_key's refusals, all 400",
    ("gateway/guard.py", "reason"): "targets.REFUSALS and guard.PARSER_DETAILS keys, read below",
    ("gateway/storage.py", "reason"): "the _CLIENT_FAULTS table, scanned as tuples",
    ("gateway/front.py", "_http_reason(exc.status)"): "_http_reason's table, scanned below",
    ("gateway/problems.py", "reason"): "UpstreamBusy passing its caller's reason on",
}
# aiohttp's own ``reason`` keyword: the HTTP reason phrase of a response, not a problem reason.
RESPONSE_CALLS = frozenset({"Response", "StreamResponse"})


def _error_classes() -> dict[str, type[GatewayError]]:
    found: dict[str, type[GatewayError]] = {"GatewayError": GatewayError}
    pending: list[type[GatewayError]] = [GatewayError]
    while pending:
        for sub in pending.pop().__subclasses__():
            found[sub.__name__] = sub
            pending.append(sub)
    return found


CLASSES = _error_classes()


@dataclass(frozen=True)
class Site:
    """One place in gateway/ that gives a reason, and the status it answers with there."""

    reason: str
    status: int
    where: str


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _classes_of_super_calls(tree: ast.AST) -> dict[ast.Call, str]:
    """``super().__init__(...)`` calls inside an error class, with that class's name."""
    found: dict[ast.Call, str] = {}
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef) and cls.name in CLASSES:
            for node in ast.walk(cls):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "__init__"
                    and isinstance(node.func.value, ast.Call)
                    and _call_name(node.func.value) == "super"
                ):
                    found[node] = cls.name
    return found


def _scan(path: Path) -> Iterator[Site | tuple[str, str, str]]:
    """Sites of ``path``; a non-literal ``reason=`` comes out as (file, source, call name)."""
    rel = path.relative_to(ROOT).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    supers = _classes_of_super_calls(tree)
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            name = supers.get(node, _call_name(node))
            if name == "refuse" and node.args:
                first = node.args[0]
                assert isinstance(first, ast.Constant), f"{where}: refuse() without a literal"
                yield Site(first.value, problems.PolicyRefused.status, where)
            for keyword in node.keywords:
                if keyword.arg != "reason" or name in RESPONSE_CALLS:
                    continue
                if not isinstance(keyword.value, ast.Constant):
                    yield (rel, ast.unparse(keyword.value), str(name))
                    continue
                assert name in CLASSES, f"{where}: {name}(reason=...) is not a GatewayError"
                yield Site(keyword.value.value, CLASSES[name].status, where)
        elif isinstance(node, ast.ClassDef) and node.name in CLASSES:
            cls = CLASSES[node.name]
            if "default_reason" in vars(cls):
                yield Site(cls.default_reason, cls.status, where)
        elif isinstance(node, ast.Tuple) and len(node.elts) >= 2:
            # (ErrorClass, "reason", ...) rows of a table such as storage._CLIENT_FAULTS.
            cls_node, reason_node = node.elts[:2]
            if (
                isinstance(cls_node, ast.Name)
                and cls_node.id in CLASSES
                and isinstance(reason_node, ast.Constant)
            ):
                yield Site(reason_node.value, CLASSES[cls_node.id].status, where)


def _return_literals(function: object) -> set[str]:
    tree = ast.parse(inspect.getsource(function))  # type: ignore[arg-type]
    return {
        node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Return)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    } | {
        value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.IfExp)
        for value in (node.body, node.orelse)
        if isinstance(value, ast.Constant) and isinstance(value.value, str)
    }


def _sites() -> tuple[list[Site], list[tuple[str, str, str]]]:
    sites: list[Site] = []
    dynamic: list[tuple[str, str, str]] = []
    for path in sorted(GATEWAY.rglob("*.py")):
        for found in _scan(path):
            (sites if isinstance(found, Site) else dynamic).append(found)
    # Tables whose keys are reasons raised as BadRequest (the guard's target and parser refusals).
    for table, where in ((targets.REFUSALS, "targets.REFUSALS"), (guard.PARSER_DETAILS, "guard")):
        for reason in table:
            sites.append(Site(reason, problems.BadRequest.status, f"gateway/{where}"))
    # Every reason the guard's parser refusals can name has its detail.
    assert _return_literals(guard.parser_reason) <= set(guard.PARSER_DETAILS)
    assert _return_literals(targets.refusal) <= set(targets.REFUSALS)
    # front._http_reason: aiohttp's HTTPExceptions by status; the fallback is http-<status>.
    source = inspect.getsource(front._http_reason)
    table = ast.literal_eval(source[source.index("{") : source.index("}") + 1])
    for status, reason in table.items():
        sites.append(Site(reason, status, "gateway/front.py _http_reason"))
    return sites, dynamic


SITES, DYNAMIC = _sites()


def test_the_scan_finds_the_reasons_it_should() -> None:
    """The scan sees each kind of site (a guard against a scan that silently finds nothing)."""
    found = {site.reason for site in SITES}
    assert len(found) >= 100
    # one of each: reason=, refuse(), default_reason, a table row, unsafe_target, _http_reason
    assert {"token-expired", "rest-host-mismatch", "internal-error", "part-too-small"} <= found
    assert {"overlong-utf8", "method-not-allowed", "line-too-long"} <= found
    assert {reason for _, reason, _ in storage._CLIENT_FAULTS.values()} <= found


def test_every_reason_given_is_catalogued_with_its_status() -> None:
    """Each reason the code gives is in the catalogue, with the status it is raised with there
    (the entry's status or one its ``also`` names)."""
    missing = sorted({f"{s.reason} ({s.where})" for s in SITES if s.reason not in REASONS})
    assert not missing, f"add these to gateway/reasons.py: {missing}"
    wrong = sorted(
        f"{s.reason}: {s.status} at {s.where}, catalogued as {REASONS[s.reason].status}"
        for s in SITES
        if s.status not in (REASONS[s.reason].status, *REASONS[s.reason].also)
    )
    assert not wrong


def test_every_catalogued_reason_is_given_somewhere() -> None:
    """No entry outlives the code that gave it, and each ``also`` status is really used."""
    given = {site.reason for site in SITES}
    assert sorted(set(REASONS) - given) == []
    for reason, entry in REASONS.items():
        for status in entry.also:
            assert any(s.reason == reason and s.status == status for s in SITES), reason


def test_non_literal_reasons_are_reviewed_pass_throughs() -> None:
    """Every ``reason=`` that is not a literal is one of the reviewed pass-throughs."""
    unreviewed = sorted(
        f"{rel}: {name}(reason={source})"
        for rel, source, name in DYNAMIC
        if (rel, source) not in REVIEWED_PASS_THROUGHS
    )
    assert not unreviewed, "read where these come from, then list them in this test"
    assert {(rel, source) for rel, source, _ in DYNAMIC} == set(REVIEWED_PASS_THROUGHS)


def test_a_class_default_reason_has_the_class_title_and_status() -> None:
    """A class's default reason answers as the class always did: its status, its title."""
    for cls in CLASSES.values():
        entry = REASONS[cls.default_reason]
        assert (entry.status, entry.title) == (cls.status, cls.title), cls.__name__


def test_one_reason_one_title_whichever_class_raises_it() -> None:
    """bucket-mismatch raised as a signing refusal and as a bad success request: one title."""
    refused = problems.PolicyRefused("x", reason="bucket-mismatch").to_problem()
    bad = problems.BadRequest("x", reason="bucket-mismatch").to_problem()
    assert refused["title"] == bad["title"] == REASONS["bucket-mismatch"].title
    assert (refused["status"], bad["status"]) == (400, 400)
    unknown = problems.BadRequest("x", reason="not-in-the-catalogue").to_problem()
    assert unknown["title"] == problems.BadRequest.title


def test_groups_list_every_reason_once() -> None:
    """The docs' groups hold each catalogued reason exactly once."""
    grouped = [code for codes in GROUPS.values() for code in codes]
    assert len(grouped) == len(set(grouped))
    assert sorted(set(REASONS) - set(grouped)) == [], "add these to GROUPS in gateway/reasons.py"
    assert sorted(set(grouped) - set(REASONS)) == []
    assert markdown_table().count("\n| `") == len(REASONS)
