"""The bulk engine over the in-memory site: per-server transactions, all-or-nothing, cancel."""

from __future__ import annotations

import collections
import math
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cmproxy import (
    Account,
    ChangeKind,
    DesiredState,
    ProxyRequest,
    ProxySettings,
    RuleViolation,
    SiteState,
)
from cmproxy._exceptions import PlanError, PowerShellError
from cmproxy.bulk import apply_bulk, plan_bulk
from cmproxy.desired import DesiredSpec, parse_desired
from cmproxy.journal import Journal
from cmproxy.plan import Change
from cmproxy.results import Results
from cmproxy.retry import RetryPolicy
from cmproxy.testing import InMemorySite
from cmproxy.transaction import Outcome, ServerSnapshot

SITE_WIDE = """\
sites:
  PS1:
    proxy: {server: proxy-new.contoso.com, port: 3128}
"""

PLAIN = ProxySettings(server="proxy-new.contoso.com", port=3128)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite3")


def _apply(
    site: InMemorySite, desired: DesiredState | DesiredSpec, journal: Journal, **options: Any
) -> Results:
    """`apply_bulk` on one in-memory site, with the tests' retry policy and no progress bar."""
    return apply_bulk(
        [site], desired, journal=journal, policy=RetryPolicy.for_tests(), progress=False, **options
    )


def test_plan_bulk_plans_every_server_of_the_site(state: SiteState) -> None:
    site = InMemorySite(state)
    bulk = plan_bulk([site], parse_desired(SITE_WIDE))
    ((endpoint, p),) = bulk.plans
    assert endpoint == site.endpoint
    targets = {c.target for c in p}
    assert "cm-scp01.contoso.com" in targets
    assert "cdp01.cloudapp.net" not in targets  # R5: cloud DPs follow their primary
    assert site.calls == 0


def test_failures_on_a_few_servers_leave_the_others_changed(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    site.fail_for("cm-scp01.contoso.com", ChangeKind.SET_SERVER_PROXY)
    results = _apply(site, parse_desired(SITE_WIDE), journal)
    by_server = {r.server: r.outcome for r in results}
    assert by_server["cm-scp01.contoso.com"].outcome is Outcome.ROLLED_BACK
    assert by_server["cm-sup01.contoso.com"].outcome is Outcome.CHANGED
    after = site.state.server("cm-sup01.contoso.com")
    assert after is not None and after.proxy.server == "proxy-new.contoso.com"
    before = ServerSnapshot.of(state, "cm-scp01.contoso.com")
    assert ServerSnapshot.of(site.state, "cm-scp01.contoso.com") == before
    assert not results.ok
    assert results.counts()["rolled back"] == 1
    assert journal.open_transactions() == []
    frame = results.to_dataframe()
    assert set(frame["outcome"]) == {"changed", "rolled back"}
    assert "#fff3cd" in results._repr_html_()


def test_all_or_nothing_puts_every_server_back(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    site.fail_for("cm-scp01.contoso.com", ChangeKind.SET_SERVER_PROXY)
    results = apply_bulk(
        [site],
        parse_desired(SITE_WIDE),
        journal=journal,
        policy=RetryPolicy.for_tests(),
        all_or_nothing=True,
        progress=False,
    )
    assert {r.outcome.outcome for r in results} == {Outcome.ROLLED_BACK}
    for server in state.servers:
        assert ServerSnapshot.of(site.state, server.name) == ServerSnapshot.of(state, server.name)
    assert journal.open_transactions() == []


def test_a_rule_violation_anywhere_writes_nothing(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    desired = parse_desired(
        "servers:\n  cm-sup01.contoso.com:\n    proxy: none\n"  # its SUP flags are on (R11)
    )
    with pytest.raises(RuleViolation, match="R11"):
        apply_bulk([site], desired, journal=journal, progress=False)
    assert site.calls == 0


def test_cancel_before_start_leaves_servers_untouched(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    cancel = threading.Event()
    cancel.set()
    results = apply_bulk(
        [site], parse_desired(SITE_WIDE), journal=journal, cancel=cancel, progress=False
    )
    assert results.cancelled and not results.ok
    assert site.calls == 0
    assert {r.outcome.outcome for r in results} == {Outcome.UNCHANGED}


def test_dry_run_writes_nothing(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    results = apply_bulk([site], parse_desired(SITE_WIDE), journal=journal, dry_run=True)
    assert site.calls == 0
    assert results.items
    assert all("dry run" in r.outcome.reason for r in results)


def test_an_unexpected_error_in_a_batch_is_reported_not_lost(
    state: SiteState, journal: Journal
) -> None:
    """A batch stopped by something other than a cmproxy error still reports its servers."""

    def broken_hook(event: object) -> None:
        if getattr(event, "kind", "") == "planned":
            raise RuntimeError("hook bug")

    site = InMemorySite(state)
    results = apply_bulk(
        [site],
        parse_desired(SITE_WIDE),
        journal=journal,
        policy=RetryPolicy.for_tests(),
        hooks=[broken_hook],
        progress=False,
    )
    assert len(results.items) > 1
    assert all(r.outcome.outcome is Outcome.FAILED for r in results)
    assert all("hook bug" in r.outcome.reason for r in results)
    assert site.calls == 0  # nothing was written


def test_named_servers_are_held_from_before_the_read_until_the_end(
    state: SiteState, journal: Journal
) -> None:
    """The hierarchy read is made under a journal hold, so it is each batch's conflict check
    (no re-read) unless the batch starts more than `recheck_after` seconds later."""
    names = ["cm-scp01.contoso.com", "cm-sup01.contoso.com"]
    desired = DesiredState(proxies=[ProxyRequest(n, PLAIN) for n in names])
    reads = {}
    for recheck_after in (math.inf, 0.0):
        site = InMemorySite(state)
        held: list[list[str]] = []
        site.before_apply = lambda _change, s=site, h=held: h.append(journal.holds(s.endpoint))
        results = _apply(site, desired, journal, recheck_after=recheck_after)
        assert results.ok
        assert {r.server for r in results if r.outcome.outcome is Outcome.CHANGED} == set(names)
        assert held and all(len(h) == 1 for h in held)  # held while writing
        assert journal.holds() == [] and journal.open_transactions() == []
        reads[recheck_after] = site.reads
    assert reads[0.0] - reads[math.inf] == 1  # the batch's own re-read


NEW_ACCOUNT = "CONTOSO\\svc-new"


def _with_new_account(names: list[str]) -> DesiredState:
    proxy = PLAIN.replace(account=NEW_ACCOUNT)
    return DesiredState(
        proxies=[ProxyRequest(n, proxy) for n in names],
        accounts=[Account(NEW_ACCOUNT, password="Passw0rd!")],
    )


def test_batches_get_ready_while_the_account_is_created_and_write_after_it(
    state: SiteState, journal: Journal
) -> None:
    """The account a change needs is created once, while the batches plan and claim their
    servers; no server is written before the account exists."""
    names = ["cm-scp01.contoso.com", "cm-sup01.contoso.com"]
    site = InMemorySite(state)
    claimed_during_creation: list[int] = []

    def during(change: Change) -> None:
        if change.kind is ChangeKind.CREATE_ACCOUNT:
            # Give the batches time to claim; they must not write meanwhile.
            deadline = time.monotonic() + 5
            while not journal.open_transactions() and time.monotonic() < deadline:
                time.sleep(0.01)
            claimed_during_creation.append(len(journal.open_transactions()))

    site.before_apply = during
    results = _apply(site, _with_new_account(names), journal)
    assert results.ok
    kinds = [c.kind for c in site.applied]
    assert kinds[0] is ChangeKind.CREATE_ACCOUNT and kinds.count(ChangeKind.CREATE_ACCOUNT) == 1
    assert claimed_during_creation and claimed_during_creation[0] >= 1
    assert site.state.has_account(NEW_ACCOUNT, "PS1")
    assert journal.open_transactions() == []


def test_a_failed_account_creation_writes_no_server(state: SiteState, journal: Journal) -> None:
    names = ["cm-scp01.contoso.com", "cm-sup01.contoso.com"]
    site = InMemorySite(state)
    site.fail_for(NEW_ACCOUNT, ChangeKind.CREATE_ACCOUNT)
    with pytest.raises(PowerShellError, match="SMS Provider"):
        _apply(site, _with_new_account(names), journal)
    assert site.applied == []
    for name in names:
        assert ServerSnapshot.of(site.state, name) == ServerSnapshot.of(state, name)
    assert journal.open_transactions() == [] and journal.holds() == []


def test_an_account_not_found_after_its_creation_writes_no_server(
    state: SiteState, journal: Journal
) -> None:
    """A client that reads nothing back is re-read: an account missing then stops the run."""
    site = InMemorySite(state)
    original = site.apply

    def lost_account(change: Change) -> None:
        if change.kind is not ChangeKind.CREATE_ACCOUNT:
            original(change)  # the account "creation" leaves no account behind

    site.apply = lost_account  # type: ignore[method-assign]
    with pytest.raises(PlanError, match="not registered at site PS1"):
        _apply(site, _with_new_account(["cm-scp01.contoso.com"]), journal)
    assert site.applied == []
    assert journal.open_transactions() == []


class _WarmingSite(InMemorySite):
    """An in-memory site whose lanes come ready in turns, as PSRP pools imported in turns of
    `Tuning.imports_at_once` do (`ReportsLanes`)."""

    ready: int | None = 1

    def lanes_ready(self) -> int | None:
        return self.ready


def test_no_more_batches_start_than_the_provider_has_lanes_ready(state: SiteState) -> None:
    """While pools still import, a bulk run starts at most as many batches as there are pools
    ready, one site at a time (the site with the fewest in flight first), so no site waits
    for a pool while another has two; all of them once every pool is ready."""
    from cmproxy.bulk import _Knobs, _Lanes, _Provider

    site = _WarmingSite(state)
    provider = _Provider(site, state)
    queues = [
        collections.deque([[(i, provider, f"s{q}-{i}", DesiredState())] for i in range(3)])
        for q in range(4)
    ]
    knobs = _Knobs(
        options=None,
        policy=RetryPolicy.for_tests(),
        all_or_nothing=False,
        max_workers=16,
        per_provider=12,
        per_site=3,
        batch_size=32,
        recheck_after=math.inf,
        progress=False,
        hooks=(),
        dry_run=False,
    )
    lanes = _Lanes(queues, knobs)

    def start_all() -> list[int]:
        started = []
        while (ready := lanes.next_ready()) is not None:
            lanes.running[object()] = ready  # type: ignore[index]
            started.append(ready[0])
        return started

    assert start_all() == [0]  # one pool ready: one batch
    site.ready = 4
    assert sorted(start_all()) == [1, 2, 3]  # four ready: one per site, every site writes
    site.ready = 8
    assert sorted(start_all()) == [0, 1, 2, 3]
    site.ready = None  # none warming any more: per_site and per_provider alone
    assert sorted(start_all()) == [0, 1, 2, 3]
    assert len(lanes.running) == 12
