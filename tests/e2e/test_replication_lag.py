"""Read-after-write lag on a hierarchy, end to end through the real clients.

The emulator's [UNCONFIRMED] replication lag (`EmulatorSettings.replication`, reasoning there
and in tests/emulator/product/test_replication_lag.py): a write to a child site's server is accepted
but reads keep showing the old value until the lag passed. The SDK must tell "not visible
yet" (still the old value: wait and re-read, up to `RetryPolicy.visibility_timeout`) from
"someone else's value" (neither old nor new: at once), and report a lag past the bound as
`NotVisibleError` without pretending it rolled anything back. Lags are real and short (the
emulator's clock is time.monotonic); nothing asserts timing.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cmproxy import (
    DesiredState,
    Journal,
    NotVisibleError,
    Outcome,
    ProxyRequest,
    ProxySettings,
    Session,
    SupFlagsRequest,
    Transaction,
    TransactionEvent,
    apply_bulk,
    plan,
    recover,
    run_transaction,
)
from cmproxy.emulator.api import Emulator
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.retry import RetryPolicy

from .conftest import SERVER, SITE, info_for, oracle

OTHER = "cm-ps2-sup02.contoso.com"
LAG = 0.6


def _lagging(lag: float = LAG) -> Emulator:
    settings = EmulatorSettings()
    settings.replication.lag[SITE] = lag
    return Emulator(seed="demo", receive_timeout=3.0, settings=settings)


def _policy(bound: float = 15.0) -> RetryPolicy:
    """Real sleeps (the lag is real time), short backoff, `bound` seconds of patience."""
    return RetryPolicy(visibility_timeout=bound, visibility_backoff=0.1, max_backoff=0.5)


def _wants(host: str, *servers: str) -> DesiredState:
    return DesiredState(
        proxies=[
            ProxyRequest(s, ProxySettings(server=host, port=8080)) for s in servers or [SERVER]
        ]
    )


@pytest.mark.e2e
@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_a_lagging_write_still_verifies_and_reports_changed(transport: str, tmp_path: Path) -> None:
    with _lagging() as emu, Session(info_for(emu, transport)) as session:
        journal = Journal(tmp_path / "j.db")
        result = run_transaction(
            session, _wants("proxy-new.contoso.com"), journal=journal, policy=_policy()
        )
        assert result.outcome(SERVER).outcome is Outcome.CHANGED, result.outcome(SERVER)
        assert oracle(emu).proxy.server == "proxy-new.contoso.com"
        seen = session.read_state([SERVER]).server(SERVER)
        assert seen is not None and seen.proxy.server == "proxy-new.contoso.com"
        assert journal.open_transactions() == []


@pytest.mark.e2e
def test_a_lagging_bulk_change_verifies_every_server(tmp_path: Path) -> None:
    with _lagging() as emu, Session(info_for(emu, "psrp")) as session:
        results = apply_bulk(
            [session],
            _wants("proxy-bulk.contoso.com", SERVER, OTHER),
            journal=Journal(tmp_path / "j.db"),
            policy=_policy(),
            progress=False,
        )
        assert results.ok, results.summary()
        assert {r.server: r.outcome.outcome for r in results} == {
            SERVER: Outcome.CHANGED,
            OTHER: Outcome.CHANGED,
        }
        assert (
            oracle(emu).proxy.server
            == oracle(emu, OTHER).proxy.server
            == ("proxy-bulk.contoso.com")
        )


@pytest.mark.e2e
def test_someone_elses_value_during_the_lag_is_reported_at_once_not_waited_for(
    tmp_path: Path,
) -> None:
    """While our write is not visible yet, an administrator of the child site itself (its own
    provider: no replication lag for them, so the lag is 0 while they write) sets a third
    value. Ours is then never seen: the re-read shows neither our old nor our new value →
    someone else's change, reported as such (failed, left as they set it), not waited for
    as "not visible"."""
    with (
        _lagging() as emu,
        Session(info_for(emu, "psrp")) as ours,
        Session(info_for(emu, "winrm")) as theirs,
    ):
        written: list[object] = []

        def they_write_meanwhile(event: TransactionEvent) -> None:
            if event.kind != "not visible" or written:
                return
            (change,) = plan(theirs.read_state(), _wants("proxy-theirs.contoso.com"))
            emu.settings.replication.lag[SITE] = 0.0
            try:
                written.append(theirs.apply(change))
            finally:
                emu.settings.replication.lag[SITE] = LAG

        result = run_transaction(
            ours,
            _wants("proxy-ours.contoso.com"),
            journal=Journal(tmp_path / "j.db"),
            policy=_policy(bound=60.0),
            hooks=[they_write_meanwhile],
        )
        out = result.outcome(SERVER)
        assert written
        assert out.outcome is Outcome.FAILED, out
        assert "someone else" in out.reason, out.reason
        assert "not visible" not in out.reason, out.reason
        assert oracle(emu).proxy.server == "proxy-theirs.contoso.com"  # theirs survives


@pytest.mark.e2e
def test_a_lag_past_the_bound_is_not_visible_and_recover_settles_it(tmp_path: Path) -> None:
    lag = 2.5
    journal = Journal(tmp_path / "j.db")
    with _lagging(lag) as emu, Session(info_for(emu, "psrp")) as session:
        start = time.monotonic()
        tx = Transaction(session, journal=journal, policy=_policy(bound=0.5))
        with pytest.raises(NotVisibleError) as caught, tx:
            tx.set_proxy(SERVER, ProxySettings(server="proxy-slow.contoso.com", port=8080))
        assert tx.result is not None
        out = tx.result.outcome(SERVER)
        assert out.outcome is Outcome.NOT_VISIBLE, out
        assert "accepted" in out.reason
        assert caught.value.outcomes == tx.result.outcomes
        # The write was accepted and is not rolled back: the site holds it, and the
        # transaction stays open for `recover`.
        assert oracle(emu).proxy.server == "proxy-slow.contoso.com"
        (open_tx,) = journal.open_transactions()
        # Once the lag has passed, recover rolls it forward.
        time.sleep(max(0.0, lag + 0.3 - (time.monotonic() - start)))
        (recovered,) = recover(session, journal, policy=_policy())
        assert (recovered.transaction_id, recovered.status) == (open_tx.id, "committed")
        assert journal.open_transactions() == []
        assert oracle(emu).proxy.server == "proxy-slow.contoso.com"


@pytest.mark.e2e
def test_recover_while_still_lagging_writes_the_snapshot_after_the_unseen_write(
    tmp_path: Path,
) -> None:
    """Recover runs before the accepted write shows: it cannot tell a lagging new value from
    an old one, so it writes the snapshot after it (the last write wins, in order) instead
    of planning from the stale read (which would write nothing and let the new value appear
    later under a "rolled back")."""
    lag = 2.0
    journal = Journal(tmp_path / "j.db")
    with _lagging(lag) as emu, Session(info_for(emu, "psrp")) as session:
        before = session.read_state([SERVER]).server(SERVER)
        assert before is not None
        result = run_transaction(
            session, _wants("proxy-slow.contoso.com"), journal=journal, policy=_policy(0.3)
        )
        assert result.outcome(SERVER).outcome is Outcome.NOT_VISIBLE
        (recovered,) = recover(session, journal, policy=_policy(0.3))
        assert recovered.status == "rolled_back", recovered
        (out,) = recovered.servers
        assert out.outcome is Outcome.ROLLED_BACK and "never showed" in out.reason, out
        assert journal.open_transactions() == []
        assert oracle(emu).proxy.same_as(before.proxy)  # the provider holds the snapshot
        time.sleep(lag + 0.3)  # every write has shown: the last one is the snapshot
        after = session.read_state([SERVER]).server(SERVER)
        assert after is not None and after.proxy.same_as(before.proxy)


@pytest.mark.e2e
def test_a_rollback_under_lag_waits_for_its_own_write_before_restoring(tmp_path: Path) -> None:
    """One server's write is accepted (not visible yet), the other's is refused: the rollback
    must not plan from a read that does not show the accepted write yet (it would write
    nothing, and the new value would appear after a reported rollback)."""
    with _lagging() as emu, Session(info_for(emu, "psrp")) as session:
        before = session.read_state([SERVER]).server(SERVER)
        assert before is not None
        emu.settings.faults.fail_servers[OTHER] = "Set-CMSiteSystemServer"
        result = run_transaction(
            session,
            _wants("proxy-new.contoso.com", SERVER, OTHER),
            journal=Journal(tmp_path / "j.db"),
            policy=_policy(),
        )
        assert result.outcome(SERVER).outcome is Outcome.ROLLED_BACK, result.outcome(SERVER)
        time.sleep(LAG + 0.3)  # whatever was pending has shown by now
        after = session.read_state([SERVER]).server(SERVER)
        assert after is not None and after.proxy.same_as(before.proxy), after


@pytest.mark.e2e
def test_a_server_written_twice_under_lag_verifies_both_writes(tmp_path: Path) -> None:
    """Server proxy and SUP options of one server (R11 order, one pipeline), both lagging."""
    with _lagging() as emu, Session(info_for(emu, "psrp")) as session:
        desired = DesiredState(
            proxies=[ProxyRequest(SERVER, ProxySettings(server="proxy-sup.contoso.com", port=80))],
            sup_flags=[SupFlagsRequest(SERVER, use_proxy=True)],
        )
        result = run_transaction(
            session, desired, journal=Journal(tmp_path / "j.db"), policy=_policy()
        )
        out = result.outcome(SERVER)
        assert out.outcome is Outcome.CHANGED, out
        now = oracle(emu)
        assert now.proxy.server == "proxy-sup.contoso.com"
        assert now.sup is not None and now.sup.use_proxy


@pytest.mark.e2e
def test_with_the_tolerance_off_a_lagging_write_is_a_failed_verification(tmp_path: Path) -> None:
    """`visibility_timeout=0` (for a site known not to lag): no waiting, the old behaviour —
    the still-old read-back fails the verification and the change is rolled back."""
    with _lagging() as emu, Session(info_for(emu, "psrp")) as session:
        result = run_transaction(
            session,
            _wants("proxy-new.contoso.com"),
            journal=Journal(tmp_path / "j.db"),
            policy=_policy(bound=0.0),
        )
        out = result.outcome(SERVER)
        assert out.outcome is Outcome.ROLLED_BACK, out
        assert "does not show the new value" in out.reason
