"""The benchmark harness still runs end to end (N=5, zero costs). Never asserts speed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_benchmark_harness_smoke() -> None:
    env = dict(os.environ, CMPROXY_NO_PROGRESS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| 5 |")]
    contenders = {row.split("|")[2].strip() for row in rows}
    assert contenders == {"floor", "naive", "per-connection", "cmproxy"}
    assert all("NOT as desired" not in row and "failed" not in row for row in rows)
