"""The conformance corpus (`tests/emulator/conformance/*.yaml`): each case a script, the output or
error Windows PowerShell 5.1 gives, and the source that says so. See conformance/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cmproxy.emulator.engine import SiteRunspace
from cmproxy.emulator.engine.values import CommandSpec, InvocationResult, PSObj

CORPUS = Path(__file__).parent / "conformance"
EXPECT = {"output", "error", "terminating", "message", "exception", "category"}
KEYS = {"id", "source", "script", "pipelines"} | EXPECT
STEP_KEYS = {"script", "local_scope", "parameters"} | EXPECT


def load_corpus() -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            case["file"] = path.name
            cases.append(case)
    return cases


CASES = load_corpus()


def plain(value: Any) -> Any:
    if isinstance(value, PSObj):
        return {k: plain(v) for k, v in value.properties.items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def test_the_corpus_is_well_formed() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    for case in CASES:
        assert set(case) - {"file"} <= KEYS, (case["id"], set(case) - KEYS)
        assert str(case.get("source", "")).strip(), f"{case['id']}: no source"
        assert ("script" in case) != ("pipelines" in case), f"{case['id']}: script or pipelines"
        steps = case.get("pipelines", [case])
        assert steps, f"{case['id']}: no pipelines"
        for step in steps:
            if "pipelines" in case:
                assert set(step) <= STEP_KEYS, (case["id"], set(step) - STEP_KEYS)
                assert "script" in step, f"{case['id']}: a pipeline without script"
            assert "output" in step or "error" in step, f"{case['id']}: nothing expected"


def check(res: InvocationResult, want: dict[str, Any]) -> None:
    """`res` against one case's (or one pipeline's) expectations."""
    records = ([res.terminating] if res.terminating else []) + list(res.errors)
    if "error" in want:
        wanted = str(want["error"])
        found = [r for r in records if r.fully_qualified_error_id.startswith(wanted)]
        ids = [r.fully_qualified_error_id for r in records]
        assert found, (wanted, ids, plain(res.output))
        if "terminating" in want:
            assert (res.terminating is not None) == bool(want["terminating"]), records
        for key, attr in (("message", "message"), ("exception", "exception_type")):
            if key in want:
                assert getattr(found[0], attr) == want[key], (key, getattr(found[0], attr))
        if "category" in want:
            assert found[0].category == want["category"], found[0].category
    else:
        assert not records, [(r.fully_qualified_error_id, r.message) for r in records]
    if "output" in want:
        assert plain(res.output) == want["output"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any], rs: SiteRunspace) -> None:
    if "script" in case:
        check(rs.run_script(case["script"]), case)
        return
    for step in case["pipelines"]:
        # One PSRP pipeline each, in the same runspace: the script as a Command with
        # IsScript and UseLocalScope (absent = false: dot-sourced into the global scope).
        spec = CommandSpec(
            name=step["script"],
            is_script=True,
            parameters=tuple((str(k), v) for k, v in (step.get("parameters") or {}).items()),
            use_local_scope=bool(step.get("local_scope", False)),
        )
        check(rs.invoke([spec]), step)
