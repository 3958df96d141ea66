"""Compare-and-set: what each batched write may find on its server (`compare_keys`), and how a
conflict reported by the write pipeline ends a transaction (nothing written → `ConflictError`;
after an earlier write → that write rolled back)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmproxy import (
    ConflictError,
    DesiredState,
    ProxyRequest,
    ProxySettings,
    SiteState,
    SupFlagsRequest,
    plan,
)
from cmproxy.journal import Journal
from cmproxy.model import SupFlags
from cmproxy.plan import ChangeKind
from cmproxy.retry import RetryPolicy
from cmproxy.testing import InMemorySite
from cmproxy.transaction import Outcome, ServerSnapshot, run_transaction
from cmproxy.transports.base import Result
from cmproxy.writer import batch_results, compare_keys, proxy_key, sup_key

from .conftest import OLD

SCP = "cm-scp01.contoso.com"
SUP01 = "cm-sup01.contoso.com"
NEW = ProxySettings(server="Proxy-New.contoso.com", port=3128, account="CONTOSO\\svc-proxy")


def test_keys_compare_names_case_insensitively_and_a_disabled_proxy_as_off() -> None:
    assert proxy_key(NEW) == "on|proxy-new.contoso.com|3128|contoso\\svc-proxy"
    assert proxy_key(ProxySettings(server="p", port=80)) == "on|p|80|"
    assert proxy_key(ProxySettings.disabled()) == "off"


def test_each_write_may_find_its_snapshot_or_its_transactions_values(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest(SUP01, NEW), ProxyRequest(SCP, NEW)],
        sup_flags=[SupFlagsRequest(SUP01, False, False)],
    )
    changes = list(plan(state, desired))
    # One transaction for SUP01 (its SUP options off, then its proxy), one for SCP.
    groups = [0 if c.target.lower() == SUP01 else 1 for c in changes]
    where = [(c.target.lower(), c.kind) for c in changes]
    keys = dict(zip(where, compare_keys(changes, groups), strict=True))
    both = {proxy_key(OLD), proxy_key(NEW)}
    sup_both = {sup_key(SupFlags(True, True)), sup_key(SupFlags(False, False))}

    def split(text: str) -> set[str]:
        return set(filter(None, text.split("\n")))

    for kind in (ChangeKind.SET_SUP_FLAGS, ChangeKind.SET_SERVER_PROXY):
        proxy_ok, sup_ok = keys[(SUP01, kind)]
        assert (split(proxy_ok), split(sup_ok)) == (both, sup_both)
    proxy_ok, sup_ok = keys[(SCP, ChangeKind.SET_SERVER_PROXY)]
    assert split(proxy_ok) == {"off", proxy_key(NEW)}
    assert sup_ok == ""  # SCP's transaction does not write its SUP options: not checked


def test_without_groups_each_write_checks_only_its_own_field(state: SiteState) -> None:
    desired = DesiredState(sup_flags=[SupFlagsRequest(SUP01, False, False)])
    (change,) = plan(state, desired)
    ((proxy_ok, sup_ok),) = compare_keys([change])
    assert proxy_ok == "" and set(filter(None, sup_ok.split("\n"))) == {"sup|1|1", "sup|0|0"}


def _conflict(server: str) -> ConflictError:
    return ConflictError(server, "planned from X; just before the write the server showed Y")


def test_a_conflict_at_the_first_write_is_a_conflict_error_and_nothing_written(
    state: SiteState, tmp_path: Path
) -> None:
    site = InMemorySite(state)
    site.fail_for(SCP, ChangeKind.SET_SERVER_PROXY, _conflict(SCP))
    journal = Journal(tmp_path / "j.sqlite3")
    with pytest.raises(ConflictError, match="showed Y"):
        run_transaction(
            site,
            DesiredState(proxies=[ProxyRequest(SCP, NEW.replace(account=None))]),
            journal=journal,
            policy=RetryPolicy.for_tests(),
        )
    assert journal.open_transactions() == []
    assert ServerSnapshot.of(site.state, SCP) == ServerSnapshot.of(state, SCP)


def test_a_conflict_after_an_earlier_write_rolls_that_write_back(
    state: SiteState, tmp_path: Path
) -> None:
    site = InMemorySite(state)
    site.fail_for(SUP01, ChangeKind.SET_SERVER_PROXY, _conflict(SUP01))
    desired = DesiredState(
        proxies=[ProxyRequest(SUP01, NEW.replace(account=None))],
        sup_flags=[SupFlagsRequest(SUP01, False, False)],
    )
    journal = Journal(tmp_path / "j.sqlite3")
    result = run_transaction(site, desired, journal=journal, policy=RetryPolicy.for_tests())
    out = result.outcome(SUP01)
    assert out.outcome is Outcome.ROLLED_BACK and "showed Y" in out.reason
    assert ServerSnapshot.of(site.state, SUP01) == ServerSnapshot.of(state, SUP01)
    assert journal.open_transactions() == []


def test_a_lock_held_by_another_writer_is_a_conflict_naming_it(state: SiteState) -> None:
    """Set-ProxyBatch.ps1 answers a server whose lock another writer held for its whole wait
    with a Conflict record carrying `Locked` and no values: a `ConflictError` that says so
    (nothing of its transaction was written), not one naming made-up values."""
    (change,) = plan(state, DesiredState(proxies=[ProxyRequest(SCP, NEW)]))
    locked = "another writer has held the lock on cm-scp01.contoso.com for 60 s"
    record = {"Kind": "Conflict", "Index": 0, "TargetName": SCP, "Locked": locked}
    (outcome,) = batch_results([change], Result(output=(record,)))
    assert isinstance(outcome, ConflictError)
    assert outcome.server == SCP and locked in str(outcome) and "showed" not in str(outcome)


def test_a_conflict_record_names_the_proxy_and_the_sup_options_found(state: SiteState) -> None:
    """The Conflict record is the server's site system row as every read projects it, with its
    SUP row as `Sup` (the prelude's ConvertTo-CMProxyRow): both are named."""
    (change,) = plan(state, DesiredState(proxies=[ProxyRequest(SUP01, NEW)]))
    record = {
        "Kind": "Conflict",
        "Index": 0,
        "RoleName": "SMS Site System",
        "UseProxy": 1,
        "ProxyName": "other.contoso.com",
        "ProxyServerPort": 8080,
        "ProxyUserName": "",
        "AnonymousProxyAccess": 1,
        "Sup": {"RoleName": "SMS Software Update Point", "UseProxy": 0, "UseProxyForADR": 0},
    }
    (outcome,) = batch_results([change], Result(output=(record,)))
    assert isinstance(outcome, ConflictError)
    assert "other.contoso.com:8080" in str(outcome)
    assert "SUP options" in str(outcome) and "False" in str(outcome)
