"""The conformance corpus (`tests/emulator/conformance/*.yaml`): each case a script, the output or
error Windows PowerShell 5.1 gives, and the source that says so. See conformance/README.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cmproxy.emulator.engine import SiteRunspace
from cmproxy.emulator.engine.values import PSObj

CORPUS = Path(__file__).parent / "conformance"
KEYS = {"id", "source", "script", "output", "error", "terminating"}


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
        assert "output" in case or "error" in case, f"{case['id']}: nothing expected"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any], rs: SiteRunspace) -> None:
    res = rs.run_script(case["script"])
    records = ([res.terminating] if res.terminating else []) + list(res.errors)
    if "error" in case:
        wanted = str(case["error"])
        ids = [r.fully_qualified_error_id for r in records]
        assert any(i.startswith(wanted) for i in ids), (wanted, ids, plain(res.output))
        if "terminating" in case:
            assert (res.terminating is not None) == bool(case["terminating"]), records
    else:
        assert not records, [(r.fully_qualified_error_id, r.message) for r in records]
    if "output" in case:
        assert plain(res.output) == case["output"]
