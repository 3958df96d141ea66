"""`cmproxy recover` when what a killed apply left running cannot be stopped (issue 15): it
says so, exits non-zero and leaves the journal open; once the shell can be deleted, the next
`recover` finishes. (The endpoint refusing the Delete is `Faults.refuse_shell_delete`.)"""

from __future__ import annotations

import pytest

from .conftest import Site

pytestmark = pytest.mark.e2e


def test_recover_that_cannot_stop_the_orphan_exits_non_zero_and_keeps_it_open(
    site: Site,
) -> None:
    site.emu.settings.costs.set_cmdlet = 0.3  # slow writes, so the kill lands mid-change
    site.kill_apply_after(writes=1)
    site.emu.settings.faults.refuse_shell_delete = True
    plain = site.run("recover", "--quiet-timeout", "0.5")
    code, data = site.run_json("recover", "--quiet-timeout", "0.5")
    site.emu.settings.faults.refuse_shell_delete = False
    assert plain.returncode != 0
    assert "left open" in plain.stdout and "could not be stopped" in plain.stdout
    assert code != 0
    assert data["ok"] is False
    assert {tx["status"] for tx in data["transactions"]} == {"not quiet"}
    # Stoppable now: this recover finishes (the journal was left open for it).
    code, data = site.run_json("recover")
    assert code == 0, data
    assert data["transactions"]
    assert {tx["status"] for tx in data["transactions"]} <= {"committed", "rolled_back"}
    site.emu.settings.costs.set_cmdlet = 0.0
