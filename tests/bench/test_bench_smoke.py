"""The benchmark harness still runs end to end (N=5, zero costs). Never asserts speed.

One run through every contender under two profiles (the second serialises writes per
provider), read back from `--json`: every row is there, carries the fields machines read, ran
without error and left every server as desired.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"n", "contender", "profile", "wall_s", "floor_s", "client_cpu_s", "peak_rss_mb"}
CONTENDERS = {"naive", "per-connection", "smart-seq", "smart-par", "cmproxy", "cmproxy-dry-run"}

pytestmark = pytest.mark.e2e


def test_benchmark_harness_smoke() -> None:
    env = dict(os.environ, CMPROXY_NO_PROGRESS="1")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--smoke",
            "--json",
            "--profiles",
            "default,writes-per-provider",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    rows = doc["rows"]
    assert {(r["profile"], r["contender"]) for r in rows} == {
        (p, c) for p in ("default", "writes-per-provider") for c in CONTENDERS
    }
    for row in rows:
        assert set(row) >= FIELDS, row
        assert row["n"] == 5 and row["how"] == "measured", row
        assert not row["error"] and not row["wrong"], row
        assert row["wall_s"] is not None and row["peak_rss_mb"] > 0, row
    writers = [r for r in rows if r["contender"] != "cmproxy-dry-run"]
    assert {r["busiest_lock"] for r in writers if r["profile"] == "writes-per-provider"} == {
        "provider"
    }
    assert "default options" in doc["cmproxy_options"]
    # The machine's speed, to read ratios of two machines by (docs/performance.md).
    assert isinstance(doc["cpu_reference_ms"], float) and doc["cpu_reference_ms"] > 0
    # The human-readable tables go to stderr with --json.
    assert "| 5 | smart-par |" in proc.stderr
