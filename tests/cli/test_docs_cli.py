"""docs/cli.md's emulator rehearsal runs as written (issue 17: it failed on the demo site with
"found 3 CMSite drives; set site_code"). The block is run by bash in a scratch directory, with
one change: a free port instead of 5986, so parallel runs do not collide."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

pytestmark = pytest.mark.e2e

DOC = REPO / "docs" / "cli.md"


def rehearsal_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Rehearsing against the emulator") :]
    found = re.search(r"```bash\n(.*?)```", section, re.S)
    assert found, "no bash block in the rehearsal section"
    return found.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_emulator_rehearsal_runs_as_written(tmp_path: Path) -> None:
    block = rehearsal_block()
    assert "5986" in block
    block = block.replace("5986", str(_free_port()))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "cmproxy"  # the console script, from this tree
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m cmproxy.cli "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMPROXY_")}
    env.update(
        PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONPATH=str(REPO),
        HOME=str(tmp_path),  # the default journal goes there
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
        COLUMNS="200",
    )
    script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + block
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "cm-ps1-dp01.contoso.com" in result.stdout  # show --site PS1
    assert "16 change(s) planned" in result.stdout
    assert "Results: 15 server(s): 1 unchanged, 14 changed" in result.stdout
    assert (tmp_path / "migrate.plan").exists()
    assert "Emulat0r-Passw0rd!" not in result.stdout + result.stderr
