"""Two transactions racing on one server through the emulator: one wins, the other gets
`ConflictError` and writes nothing; no update is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmproxy import (
    ConflictError,
    DesiredState,
    Journal,
    Outcome,
    ProxyRequest,
    ProxySettings,
    Session,
    TransactionEvent,
    run_transaction,
)
from cmproxy.emulator.api import Emulator
from cmproxy.retry import RetryPolicy

from .conftest import SERVER, info_for, oracle


def _wants(host: str) -> DesiredState:
    return DesiredState(proxies=[ProxyRequest(SERVER, ProxySettings(server=host, port=8080))])


@pytest.mark.e2e
@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_racing_transactions_sharing_a_journal(transport: str, tmp_path: Path) -> None:
    with Emulator(seed="demo", receive_timeout=3.0) as emu:
        journal = Journal(tmp_path / "journal.sqlite3")
        loser: list[BaseException] = []
        writes_before_b: list[int] = []

        def b_runs_now(event: TransactionEvent) -> None:
            # While A holds the server (between its claim and its write), B tries the same.
            if event.kind != "apply" or writes_before_b:
                return
            writes_before_b.append(len(emu.state.call_log("Set-CMSiteSystemServer")))
            with Session(info_for(emu, transport)) as b:
                try:
                    run_transaction(b, _wants("proxy-b.contoso.com"), journal=journal)
                except ConflictError as error:
                    loser.append(error)

        with Session(info_for(emu, transport)) as a:
            result = run_transaction(
                a,
                _wants("proxy-a.contoso.com"),
                journal=journal,
                policy=RetryPolicy.for_tests(),
                hooks=[b_runs_now],
            )
        assert result.outcome(SERVER).outcome is Outcome.CHANGED
        assert len(loser) == 1 and SERVER in str(loser[0])
        assert oracle(emu).proxy.server == "proxy-a.contoso.com"
        # B wrote nothing: exactly one Set-CMSiteSystemServer (A's) reached the site.
        assert len(emu.state.call_log("Set-CMSiteSystemServer")) == writes_before_b[0] + 1
        assert journal.open_transactions() == []


@pytest.mark.e2e
def test_a_stale_read_conflicts_even_with_separate_journals(tmp_path: Path) -> None:
    """Another administrator (another journal) changed the server after we read it."""
    with Emulator(seed="demo", receive_timeout=3.0) as emu:
        with Session(info_for(emu, "psrp")) as ours, Session(info_for(emu, "winrm")) as theirs:
            stale = ours.read_state()
            first = run_transaction(
                theirs, _wants("proxy-theirs.contoso.com"), journal=Journal(tmp_path / "b.db")
            )
            assert first.ok
            with pytest.raises(ConflictError, match="proxy-theirs"):
                run_transaction(
                    ours,
                    _wants("proxy-ours.contoso.com"),
                    journal=Journal(tmp_path / "a.db"),
                    base=stale,
                )
        assert oracle(emu).proxy.server == "proxy-theirs.contoso.com"  # their update survives
