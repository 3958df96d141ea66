"""The CLI in a real terminal (a pseudo-terminal): the status line while connecting and
reading, the apply bar that names servers and counts them one by one, and the site-code prompt
on a provider that serves several sites (issue 17 point 2)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

from .conftest import MIGRATION, Site

pytestmark = pytest.mark.e2e

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_in_terminal(
    site: Site,
    *args: str,
    answers: Sequence[tuple[str, str]] = (),
    drop: Sequence[str] = (),
    bound: float = 120,
) -> tuple[int, str]:
    """Run `cmproxy ARGS` with stdin, stdout and stderr on a pseudo-terminal; answer each
    prompt `(text seen, line typed)` in turn. Returns the exit code and everything shown,
    terminal escapes removed."""
    env = {k: v for k, v in site.env.items() if k not in drop}
    env.update(TERM="xterm-256color", COLUMNS="200", LINES="50")
    env.pop("NO_COLOR", None)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cmproxy.cli", *args],
        stdin=child,
        stdout=child,
        stderr=child,
        env=env,
        close_fds=True,
    )
    os.close(child)
    shown = b""
    pending = list(answers)
    deadline = time.monotonic() + bound
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
                if pending and pending[0][0] in _ANSI.sub("", shown.decode(errors="replace")):
                    os.write(main, (pending.pop(0)[1] + "\n").encode())
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    return code, _ANSI.sub("", shown.decode(errors="replace"))


def test_apply_shows_a_status_line_then_a_bar_that_names_and_counts_servers(site: Site) -> None:
    code, shown = run_in_terminal(site, "apply", "-f", MIGRATION, "--yes")
    assert code == 0, shown[-3000:]
    assert "Connecting to https://127.0.0.1:" in shown  # the status line while connecting
    assert "Reading the site from" in shown  # … and while reading
    # The bar names the server it writes and counts servers, not batches: 14 servers change
    # (one is already as wanted), each one reported as it ends.
    assert re.search(r"writing cm-[a-z0-9-]+\.contoso\.com", shown)
    counts = {int(n) for n in re.findall(r"\b(\d+)/14 servers", shown)}
    assert counts == set(range(15)), counts  # every step shown, not 0 → 14 at once
    assert re.search(r"cm-[a-z0-9-]+\.contoso\.com changed", shown)
    assert "Results: 15 server(s): 1 unchanged, 14 changed" in shown


def test_show_asks_for_the_site_on_a_multi_site_provider_in_a_terminal(site: Site) -> None:
    code, shown = run_in_terminal(
        site, "show", answers=[("Site code", "ps2")], drop=["CMPROXY_SITE_CODE"]
    )
    assert code == 0, shown[-3000:]
    assert "serves 3 sites: CAS, PS1, PS2" in shown
    assert "cm-ps2-sup01.contoso.com" in shown


def test_quiet_shows_no_status_line(site: Site) -> None:
    code, shown = run_in_terminal(site, "show", "--site", "PS1", "-q")
    assert code == 0, shown[-3000:]
    assert "Connecting to" not in shown
    assert "cm-ps1-dp01.contoso.com" in shown
