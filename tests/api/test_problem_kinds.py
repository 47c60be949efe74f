"""Every problem the API can answer is of a kind ``broker.api.problems.problem_kinds`` knows:
the list the pages' translations are held to (tests/pages/test_problem_messages.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import broker.api.app  # noqa: F401  (loads every consent error class problem_kinds walks)
from broker.api.problems import TITLES, problem_kinds, title_of

BROKER = Path(__file__).resolve().parents[2] / "broker"


def _kinds_raised_in_the_code() -> dict[str, str]:
    """Each literal kind given to ``ProblemError`` or ``problem_response`` under broker/, with
    where it is given."""
    found: dict[str, str] = {}
    for path in sorted(BROKER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            position = {"ProblemError": 1, "problem_response": 3}.get(name)
            if position is None:
                continue
            kind = next((k.value for k in node.keywords if k.arg == "kind"), None)
            if kind is None and len(node.args) > position:
                kind = node.args[position]
            if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                found[kind.value] = f"{path.relative_to(BROKER.parent)}:{node.lineno}"
    return found


def test_every_kind_the_code_raises_is_a_known_kind_with_its_own_title() -> None:
    raised = _kinds_raised_in_the_code()
    assert len(raised) >= 10, raised  # the scan finds the code's problems at all
    unknown = {kind: where for kind, where in raised.items() if kind not in problem_kinds()}
    assert unknown == {}, f"add these kinds to TITLES in broker/api/problems.py: {unknown}"
    untitled = sorted(kind for kind in raised if kind not in TITLES)
    assert untitled == [], untitled


def test_the_kinds_include_every_consent_error_and_statistics_refusal() -> None:
    kinds = problem_kinds()
    for kind in ("not-property-owner", "invalid-transition", "concurrent-change"):
        assert kind in kinds
    assert {"k-below-minimum", "statistics-refused", "too-many-buckets"} <= kinds
    assert title_of("too-many-buckets") == "Too many bars for the period"
    # A kind nobody answers is not made up.
    assert "no-such-kind" not in kinds
