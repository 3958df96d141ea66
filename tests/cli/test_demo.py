"""`cmproxy demo` — the README's main job — runs as a subprocess and tells the whole story."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_runs_end_to_end() -> None:
    secret = "Dem0-Account-Passw0rd!"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMPROXY_")}
    env.update(CMPROXY_DEMO_PROXY_PASSWORD=secret, COLUMNS="200", NO_PROXY="127.0.0.1")
    result = subprocess.run(
        [sys.executable, "-m", "cmproxy.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr
    assert "Site system servers (17)" in out  # PS1 as it is
    assert "16 change(s)" in out  # the plan
    assert "refused by rule R11" in out
    assert "writes on the site meanwhile: 0" in out
    assert "Results: 15 server(s): 1 unchanged, 14 changed" in out
    assert "cm-ps1-sup01.contoso.com" in out
    assert "R13" in out
    assert "12007" in out
    assert "Done in" in out
    assert secret not in out + result.stderr
    assert "Traceback" not in result.stderr
