"""Transactions over the in-memory site: atomic per transaction, retries bounded, journal closed.

The same guarantees are checked end to end against the emulator in tests/e2e.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from cmproxy import (
    ConflictError,
    DesiredState,
    PowerShellError,
    ProxyRequest,
    ProxySettings,
    SiteState,
    SupFlagsRequest,
    TransactionError,
    TransportError,
)
from cmproxy.journal import Journal, JournalEntry
from cmproxy.plan import Change, ChangeKind, plan
from cmproxy.retry import RetryPolicy
from cmproxy.testing import InMemorySite
from cmproxy.transaction import (
    Outcome,
    ServerSnapshot,
    Transaction,
    TransactionEvent,
    _shows,
    apply_changes,
    recover,
    run_transaction,
    run_transactions,
)

SCP = "cm-scp01.contoso.com"
NEW = ProxySettings(
    server="proxy-new.contoso.com", port=3128, account="CONTOSO\\svc-new", password="S3cret-pw!"
)
THREE_STEPS = DesiredState(
    proxies=[ProxyRequest(SCP, NEW)], sup_flags=[SupFlagsRequest(SCP, True, True)]
)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def test_three_step_change_commits_and_closes_the_journal(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    result = run_transaction(site, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests())
    assert result.ok and result.changed
    assert [c.kind.name for c in result.plan] == [
        "CREATE_ACCOUNT",
        "SET_SERVER_PROXY",
        "SET_SUP_FLAGS",
    ]
    out = result.outcome(SCP)
    assert out.outcome is Outcome.CHANGED
    assert ServerSnapshot.of(site.state, SCP) == out.after
    assert journal.open_transactions() == []
    assert journal.status(result.transaction_id or "") == "committed"
    assert "S3cret-pw!" not in journal.dump()


@pytest.mark.parametrize("failing_call", [1, 2, 3])
def test_a_failure_at_any_step_rolls_back_to_the_snapshot(
    state: SiteState, journal: Journal, failing_call: int
) -> None:
    site = InMemorySite(state)
    before = ServerSnapshot.of(state, SCP)
    site.fail_on(failing_call)
    result = run_transaction(site, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests())
    out = result.outcome(SCP)
    assert out.outcome is Outcome.ROLLED_BACK
    assert ServerSnapshot.of(site.state, SCP) == before
    assert "ProviderError" in out.reason
    assert journal.open_transactions() == []


def test_a_lost_answer_is_settled_by_rereading_not_by_repeating(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    site.lose_answer_on(2)  # the server proxy write happens, its answer is lost
    events: list[TransactionEvent] = []
    result = run_transaction(
        site, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests(), hooks=[events.append]
    )
    assert result.ok
    assert site.calls == 3  # no blind repetition of the lost write
    assert [e.kind for e in events].count("ambiguous") == 1


def test_a_transient_failure_before_the_write_is_retried(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    site.fail_on(2, TransportError("HTTP 503"))
    result = run_transaction(site, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests())
    assert result.ok
    assert site.calls == 4


def test_a_non_transient_error_is_never_retried(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    site.fail_on(
        2, PowerShellError("bad", fully_qualified_error_id="ParameterArgumentValidationError")
    )
    result = run_transaction(site, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests())
    assert result.outcome(SCP).outcome is Outcome.ROLLED_BACK
    # 3 calls: account, failing proxy write, and no retry of it; restore of SUP needs none.
    assert site.calls == 2


def test_conflict_when_the_server_changed_since_it_was_read(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    server = state.server(SCP)
    assert server is not None
    import attrs

    site.state = state.with_server(attrs.evolve(server, proxy=ProxySettings(server="someone-else")))
    with pytest.raises(ConflictError, match=SCP):
        run_transaction(site, THREE_STEPS, journal=journal, base=state)
    assert site.applied == []
    assert journal.open_transactions() == []


def test_an_open_claim_makes_a_second_transaction_conflict(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    results: list[object] = []

    def race(_change: object) -> None:
        if results:
            return
        try:
            run_transaction(
                site,
                DesiredState(proxies=[ProxyRequest(SCP, NEW.replace(port=9))]),
                journal=journal,
                policy=RetryPolicy.for_tests(),
            )
        except ConflictError as error:
            results.append(error)

    site.before_apply = race
    result = run_transaction(site, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests())
    assert result.ok
    assert isinstance(results[0], ConflictError)
    assert ServerSnapshot.of(site.state, SCP) == result.outcome(SCP).after


def test_someone_elses_change_is_never_overwritten_by_a_rollback(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    import attrs

    def meddle(change: object) -> None:
        if site.calls == 2:  # after the proxy write, another admin edits the server
            server = site.state.server(SCP)
            assert server is not None
            site.state = site.state.with_server(
                attrs.evolve(server, proxy=ProxySettings(server="theirs"))
            )

    site.before_apply = meddle
    result = run_transaction(site, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests())
    out = result.outcome(SCP)
    assert out.outcome is Outcome.FAILED
    assert "someone else" in out.reason
    server = site.state.server(SCP)
    assert server is not None and server.proxy.server == "theirs"
    assert journal.open_transactions() == []


def test_dry_run_touches_nothing(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    result = run_transaction(site, THREE_STEPS, journal=journal, dry_run=True)
    assert result.dry_run and len(result.plan) == 3
    assert site.calls == 0
    assert journal.open_transactions() == []


def test_context_manager_raises_with_outcomes(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    site.fail_on(2)
    with (
        pytest.raises(TransactionError) as err,
        Transaction(site, journal=journal, policy=RetryPolicy.for_tests()) as tx,
    ):
        tx.set_proxy(SCP, NEW)
    assert err.value.outcomes[0].outcome is Outcome.ROLLED_BACK
    with Transaction(site, journal=journal, policy=RetryPolicy.for_tests()) as tx:
        tx.set_proxy(SCP, NEW)
    assert tx.result is not None and tx.result.changed


def test_recover_rolls_a_half_done_transaction_back(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    before = ServerSnapshot.of(state, SCP)
    assert before is not None
    desired = DesiredState(
        proxies=[ProxyRequest(SCP, NEW.replace(account=None, password=None))],
        sup_flags=[SupFlagsRequest(SCP, True, False)],
    )
    planned = run_transaction(site, desired, journal=journal, dry_run=True).plan
    proxy_change, sup_change = planned.changes
    after = ServerSnapshot(proxy_change.after, sup_change.after)  # type: ignore[arg-type]
    # A process applied the proxy write, then died: the journal still holds it open.
    journal.begin(
        site.endpoint,
        [JournalEntry(SCP, "PS1", before.to_dict(), after.to_dict())],
        [(c.target, c.kind.name, c.to_dict()) for c in planned],
    )
    site.apply(proxy_change)
    (done,) = recover(site, journal, policy=RetryPolicy.for_tests())
    assert done.status == "rolled_back"
    assert ServerSnapshot.of(site.state, SCP) == before
    assert journal.open_transactions() == []


def test_recover_rolls_forward_when_everything_was_written(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    before = ServerSnapshot.of(state, SCP)
    assert before is not None
    result = run_transaction(
        site,
        DesiredState(proxies=[ProxyRequest(SCP, NEW.replace(account=None, password=None))]),
        journal=journal,
        dry_run=True,
    )
    change = result.plan.changes[0]
    after = ServerSnapshot(change.after, before.sup)  # type: ignore[arg-type]
    journal.begin(
        site.endpoint,
        [JournalEntry(SCP, "PS1", before.to_dict(), after.to_dict())],
        [(change.target, change.kind.name, change.to_dict())],
    )
    site.apply(change)
    site.apply(change)
    (done,) = recover(site, journal)
    assert done.status == "committed"
    assert journal.open_transactions() == []


def test_retry_policy_bounds_attempts_and_deadline(
    policy_on_fake_clock: Callable[..., RetryPolicy],
) -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        raise TransportError("reset")

    policy = policy_on_fake_clock(attempts=5, deadline=100.0, backoff=1)
    with pytest.raises(TransportError):
        policy.call(flaky, operation="x", idempotent=True)
    assert len(calls) == 5
    calls.clear()
    short = policy_on_fake_clock(attempts=50, deadline=3.5, backoff=1)
    with pytest.raises(TransportError):
        short.call(flaky, operation="x", idempotent=True)
    assert len(calls) == 4  # tries at t=0,1,2,3; the next would end past 3.5
    calls.clear()
    with pytest.raises(TransportError):
        policy.call(flaky, operation="x", idempotent=False)
    assert len(calls) == 1


def test_a_cloud_dp_request_reports_the_primary_site_server_it_changed(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    proxy = NEW.replace(account=None, password=None)
    result = run_transaction(
        site,
        DesiredState(proxies=[ProxyRequest("cdp01.cloudapp.net", proxy)]),
        journal=journal,
        policy=RetryPolicy.for_tests(),
    )
    assert result.changed
    assert result.outcome("cm-ps1.contoso.com").outcome is Outcome.CHANGED
    dp = result.outcome("cdp01.cloudapp.net")
    assert dp.outcome is Outcome.UNCHANGED
    assert "R5" in dp.reason and "cm-ps1.contoso.com" in dp.reason


def test_dry_run_needs_no_journal(state: SiteState) -> None:
    result = run_transaction(InMemorySite(state), THREE_STEPS, dry_run=True)
    assert result.dry_run and "2 change(s) planned" in result.outcome(SCP).reason


def test_rollback_puts_back_a_snapshot_that_broke_r11(state: SiteState, journal: Journal) -> None:
    """A snapshot is what the site held, even SUP options on without a proxy (R11)."""
    import attrs

    from cmproxy import SoftwareUpdatePoint

    broken = state.server(SCP)
    assert broken is not None
    broken = attrs.evolve(broken, roles=[SoftwareUpdatePoint(use_proxy=True)])
    site = InMemorySite(state.with_server(broken))
    before = ServerSnapshot.of(site.state, SCP)
    site.fail_for("cm-ss1.contoso.com")
    proxy = NEW.replace(account=None, password=None)
    desired = DesiredState(
        proxies=[ProxyRequest(SCP, proxy), ProxyRequest("cm-ss1.contoso.com", proxy)]
    )
    result = run_transaction(site, desired, journal=journal, policy=RetryPolicy.for_tests())
    assert result.outcome(SCP).outcome is Outcome.ROLLED_BACK
    assert ServerSnapshot.of(site.state, SCP) == before


# -- run_transactions: independent transactions sharing their round trips -------------------

PLAIN = ProxySettings(server="proxy-new.contoso.com", port=3128)
TRIO = ["cm-ps1.contoso.com", "cm-sup01.contoso.com", "cm-sup-up.contoso.com"]


def _one_each(servers: list[str]) -> list[DesiredState]:
    return [DesiredState(proxies=[ProxyRequest(s, PLAIN)]) for s in servers]


def test_side_by_side_transactions_fail_alone(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    site.fail_for(TRIO[1])
    results = run_transactions(
        site, _one_each(TRIO), journal=journal, base=state, policy=RetryPolicy.for_tests()
    )
    outcomes = [r.outcomes[0].outcome for r in results if not isinstance(r, Exception)]
    assert outcomes == [Outcome.CHANGED, Outcome.ROLLED_BACK, Outcome.CHANGED]
    assert ServerSnapshot.of(site.state, TRIO[0]).proxy.same_as(PLAIN)  # type: ignore[union-attr]
    assert not ServerSnapshot.of(site.state, TRIO[1]).proxy.same_as(PLAIN)  # type: ignore[union-attr]
    assert journal.open_transactions() == []
    # Shared by all three: one fresh read, one verifying re-read (this client returns no
    # read-back); then the failed one's restore reads before and after it writes.
    assert site.reads == 4


def test_a_conflict_stops_only_its_own_transaction(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    other = ProxySettings(server="someone-else.contoso.com", port=8081)
    site.apply(plan(state, DesiredState(proxies=[ProxyRequest(TRIO[2], other)])).changes[0])
    results = run_transactions(
        site, _one_each(TRIO), journal=journal, base=state, policy=RetryPolicy.for_tests()
    )
    assert isinstance(results[2], ConflictError)
    assert [r.ok for r in results[:2] if not isinstance(r, Exception)] == [True, True]
    assert ServerSnapshot.of(site.state, TRIO[2]).proxy.same_as(other)  # type: ignore[union-attr]
    assert journal.open_transactions() == []


def test_nothing_is_written_when_before_writes_raises(state: SiteState, journal: Journal) -> None:
    """`before_writes` runs after the claims and checks; when it raises, every transaction
    ends "nothing written" with its error (a cmproxy error is a result, a bug is raised)."""
    site = InMemorySite(state)
    seen: list[int] = []

    def not_ready() -> None:
        seen.append(len(journal.open_transactions()))
        raise TransportError("the account could not be created")

    results = run_transactions(
        site,
        _one_each(TRIO),
        journal=journal,
        base=state,
        policy=RetryPolicy.for_tests(),
        before_writes=not_ready,
    )
    assert seen == [3]  # all three claimed when it ran
    assert all(isinstance(r, TransportError) for r in results)
    assert site.applied == [] and journal.open_transactions() == []

    def bug() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        run_transactions(site, _one_each(TRIO), journal=journal, base=state, before_writes=bug)
    assert site.applied == [] and journal.open_transactions() == []


def test_a_lost_batch_answer_is_settled_by_one_re_read(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    site.lose_answer_on(2)  # the second write happens, its answer is lost
    reads_before = site.reads
    results = run_transactions(
        site, _one_each(TRIO), journal=journal, base=state, policy=RetryPolicy.for_tests()
    )
    assert all(not isinstance(r, Exception) and r.ok and r.changed for r in results)
    assert len(site.applied) == 3  # never re-applied blindly
    assert site.reads - reads_before == 2  # the fresh read, then one settling re-read


def test_two_transactions_cannot_claim_one_server(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    results = run_transactions(
        site,
        _one_each([TRIO[0], TRIO[0]]),
        journal=journal,
        base=state,
        policy=RetryPolicy.for_tests(),
    )
    assert not isinstance(results[0], Exception) and results[0].changed
    assert isinstance(results[1], ConflictError)
    assert len(site.applied) == 1


def test_a_failed_write_stops_the_later_writes_of_its_transaction_only(
    state: SiteState, journal: Journal
) -> None:
    """One round makes each transaction's server writes in order; a failure skips the rest of
    that transaction's writes (never SUP options on without their proxy), not the others'."""
    site = InMemorySite(state)
    proxied = ProxySettings(server="proxy-new.contoso.com", port=3128)
    desired = [
        DesiredState(proxies=[ProxyRequest(SCP, proxied)], sup_flags=[SupFlagsRequest(SCP, True)]),
        DesiredState(proxies=[ProxyRequest(TRIO[0], PLAIN)]),
    ]
    site.fail_for(SCP, ChangeKind.SET_SERVER_PROXY)
    results = run_transactions(
        site, desired, journal=journal, base=state, policy=RetryPolicy.for_tests()
    )
    first, second = results
    assert not isinstance(first, Exception) and first.outcome(SCP).outcome is Outcome.ROLLED_BACK
    assert not isinstance(second, Exception) and second.changed
    assert [c.kind for c in site.applied] == [ChangeKind.SET_SERVER_PROXY]  # TRIO[0] only
    assert journal.open_transactions() == []


# -- holds: servers claimed before the read that their transactions plan from ---------------


def test_a_hold_claims_its_servers_until_released(journal: Journal) -> None:
    endpoint = "memory://site"
    hold = journal.hold(endpoint, [TRIO[0], TRIO[1].upper()])
    assert hold.servers == {TRIO[0], TRIO[1]}
    entry = JournalEntry(TRIO[0], "PS1", {}, {})
    with pytest.raises(ConflictError, match="hold"):
        journal.begin(endpoint, [entry], [])
    assert journal.hold(endpoint, [TRIO[0], TRIO[2]]).servers == {TRIO[2]}  # the free one only
    (mine,) = journal.begin_many(endpoint, [([entry], [])], hold=hold)
    assert isinstance(mine, str)  # the holder's own transaction may claim it
    journal.finish(mine, "committed")
    journal.release(hold)
    assert hold.id not in journal.holds(endpoint)
    journal.finish(journal.begin(endpoint, [entry], []), "committed")  # free again


def test_recover_releases_a_hold_a_killed_run_left(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    hold = journal.hold(site.endpoint, TRIO)
    outcomes = recover(site, journal, policy=RetryPolicy.for_tests())
    assert [(o.transaction_id, o.status) for o in outcomes] == [(hold.id, "released")]
    assert journal.holds() == []
    assert site.applied == []


def test_a_base_read_under_a_hold_is_the_fresh_read(state: SiteState, journal: Journal) -> None:
    """Transactions whose servers were held before `base` was read skip their own re-read; one
    whose server was not held still re-reads, and meets the change made since."""
    site = InMemorySite(state)
    hold = journal.hold(site.endpoint, TRIO[:2])
    base = site.read_state()
    other = ProxySettings(server="someone-else.contoso.com", port=8081)
    site.apply(plan(base, DesiredState(proxies=[ProxyRequest(TRIO[2], other)])).changes[0])
    reads = site.reads
    results = run_transactions(
        site,
        _one_each(TRIO[:2]),
        journal=journal,
        base=base,
        policy=RetryPolicy.for_tests(),
        hold=hold,
        fresh_base=True,
    )
    assert all(not isinstance(r, Exception) and r.changed for r in results)
    assert site.reads - reads == 1  # no fresh read: only the verifying re-read (no read-back)
    reads = site.reads
    results = run_transactions(
        site,
        _one_each(TRIO[2:]),
        journal=journal,
        base=base,
        policy=RetryPolicy.for_tests(),
        hold=hold,
        fresh_base=True,
    )
    assert isinstance(results[0], ConflictError)  # not held: re-read, changed since `base`
    assert site.reads - reads == 1
    journal.release(hold)
    assert journal.open_transactions() == []


class _Pipelined:
    """An in-memory site that writes a batch in one go and reads each write back after all of
    them, as a Session's `Set-ProxyBatch` pipeline does (`apply_many`)."""

    def __init__(self, state: SiteState) -> None:
        self.site = InMemorySite(state)
        self.endpoint = self.site.endpoint
        self.read_state = self.site.read_state
        self.apply = self.site.apply

    def apply_many(self, changes: list[Change], groups: list[int] | None = None) -> list[object]:
        outcomes = apply_changes(self.site, changes, groups)  # the writes, one by one
        return [  # then every write read back
            SimpleNamespace(matches=_shows(c, self.site.state, after=True)) if o is None else o
            for c, o in zip(changes, outcomes, strict=True)
        ]


def test_writes_read_back_after_all_of_them_need_no_final_read(
    state: SiteState, journal: Journal
) -> None:
    pipelined = _Pipelined(state)
    result = run_transaction(
        pipelined, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests()
    )
    assert result.ok and result.changed
    # The planning read and the fresh read; SCP's proxy and SUP options went in one round and
    # were read back after both writes, so no final read of SCP.
    assert pipelined.site.reads == 2


def test_a_write_settled_by_a_re_read_still_gets_the_final_read(
    state: SiteState, journal: Journal
) -> None:
    pipelined = _Pipelined(state)
    pipelined.site.lose_answer_on(3)  # account, proxy, then the SUP options: made, answer lost
    result = run_transaction(
        pipelined, THREE_STEPS, journal=journal, policy=RetryPolicy.for_tests()
    )
    assert result.ok and result.changed
    assert len(pipelined.site.applied) == 3
    assert pipelined.site.reads == 4  # planning, fresh, settling re-read, and the final read
