"""What `load_desired` returns goes straight into `plan` and `run_transaction`, options kept
(issue 17: `plan(state, spec)` raised AttributeError, and the resolved spec lost `turn_off`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmproxy import (
    ChangeKind,
    Journal,
    Outcome,
    PlanOptions,
    ProxySettings,
    RetryPolicy,
    RuleViolation,
    SiteState,
    parse_desired,
    plan,
    plan_bulk,
    run_transaction,
)
from cmproxy.testing import InMemorySite

REMOVE_WITH_TURN_OFF = """\
version: 1
options:
  sup_flags_on_proxy_removal: turn_off
servers:
  cm-sup01.contoso.com:
    proxy: none
"""


def test_plan_takes_a_desired_spec_and_its_options(state: SiteState) -> None:
    spec = parse_desired(REMOVE_WITH_TURN_OFF)
    the_plan = plan(state, spec)
    # turn_off (the spec's option) plans the SUP options off before the proxy goes (R11).
    assert [c.kind for c in the_plan] == [ChangeKind.SET_SUP_FLAGS, ChangeKind.SET_SERVER_PROXY]


def test_the_resolved_spec_keeps_its_options(state: SiteState) -> None:
    resolved = parse_desired(REMOVE_WITH_TURN_OFF).resolve(state)
    assert resolved.options == PlanOptions(sup_flags_on_proxy_removal="turn_off")
    assert [c.kind for c in plan(state, resolved)] == [
        ChangeKind.SET_SUP_FLAGS,
        ChangeKind.SET_SERVER_PROXY,
    ]


def test_an_explicit_options_argument_wins_over_the_spec(state: SiteState) -> None:
    spec = parse_desired(REMOVE_WITH_TURN_OFF)
    with pytest.raises(RuleViolation, match="R11"):
        plan(state, spec, PlanOptions(sup_flags_on_proxy_removal="refuse"))


def test_run_transaction_takes_a_desired_spec(state: SiteState, tmp_path: Path) -> None:
    site = InMemorySite(state)
    with Journal(tmp_path / "journal.sqlite3") as journal:
        result = run_transaction(site, parse_desired(REMOVE_WITH_TURN_OFF), journal=journal)
    assert [(o.server, o.outcome) for o in result.outcomes] == [
        ("cm-sup01.contoso.com", Outcome.CHANGED)
    ]
    server = site.read_state().server("cm-sup01.contoso.com")
    assert server is not None
    assert server.proxy == ProxySettings.disabled()


@pytest.mark.parametrize("resolved", [False, True], ids=["spec", "resolved spec"])
def test_plan_bulk_keeps_the_options_of_a_spec_or_of_a_resolved_spec(
    state: SiteState, resolved: bool
) -> None:
    spec = parse_desired(REMOVE_WITH_TURN_OFF)
    desired = spec.resolve(state) if resolved else spec
    bulk = plan_bulk([InMemorySite(state)], desired, policy=RetryPolicy.for_tests())
    ((_endpoint, the_plan),) = bulk.plans
    assert [c.kind for c in the_plan] == [ChangeKind.SET_SUP_FLAGS, ChangeKind.SET_SERVER_PROXY]
