"""The planner against the rules of proxy-rules.md: each rule with a passing and a refused case."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmproxy import (
    Account,
    AccountLookup,
    ChangeKind,
    DesiredState,
    PlanOptions,
    ProxyRequest,
    ProxySettings,
    RuleViolation,
    Secret,
    SiteState,
    SupFlags,
    SupFlagsRequest,
    ValidationError,
    plan,
)

from .conftest import OLD

NEW = ProxySettings(server="proxy-new.contoso.com", port=3128, account="CONTOSO\\svc-proxy")


def test_idempotence_desired_equal_to_current_gives_an_empty_plan(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest("cm-sup01.contoso.com", OLD)],
        sup_flags=[SupFlagsRequest("cm-sup01.contoso.com", True, True)],
    )
    result = plan(state, desired)
    assert result.is_empty
    assert "No changes" in result.render()


@given(port=st.integers(1, 65535), host=st.sampled_from(["p1", "p2.contoso.com", "10.1.1.1"]))
def test_idempotence_holds_for_any_proxy(port: int, host: str) -> None:
    from cmproxy import Site, SiteSystemServer

    proxy = ProxySettings(server=host, port=port)
    current = SiteState(
        sites=[Site("PS1", "primary")], servers=[SiteSystemServer("s1", "PS1", proxy=proxy)]
    )
    assert plan(current, DesiredState(proxies=[ProxyRequest("s1", proxy)])).is_empty
    changed = plan(
        current, DesiredState(proxies=[ProxyRequest("s1", proxy.replace(port=port % 65535 + 1))])
    )
    assert len(changed) == 1


# R1 -----------------------------------------------------------------------------------------


def test_r1_same_proxy_asked_twice_for_one_server_is_one_change(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[
            ProxyRequest("cm-scp01.contoso.com", NEW, role="service connection point"),
            ProxyRequest("cm-scp01.contoso.com", NEW, role="software update point"),
        ]
    )
    result = plan(state, desired)
    assert [c.kind for c in result] == [ChangeKind.SET_SERVER_PROXY]
    assert any("R1" in r for r in result.changes[0].reasons)


def test_r1_two_different_proxies_for_one_server_names_both_roles(state: SiteState) -> None:
    other = NEW.replace(server="proxy-eu.contoso.com")
    desired = DesiredState(
        proxies=[
            ProxyRequest("cm-scp01.contoso.com", NEW, role="service connection point"),
            ProxyRequest("cm-scp01.contoso.com", other, role="software update point"),
        ]
    )
    with pytest.raises(RuleViolation) as err:
        plan(state, desired)
    message = str(err.value)
    assert err.value.rule == "R1"
    assert "service connection point" in message
    assert "software update point" in message
    assert "separate site system servers" in message


# R2 -----------------------------------------------------------------------------------------


def test_r2_every_changed_field_is_shown_with_fallback_notes(state: SiteState) -> None:
    bare = ProxySettings(server="proxy-new.contoso.com")  # port 80, System account
    result = plan(state, DesiredState(proxies=[ProxyRequest("cm-ps1.contoso.com", bare)]))
    (change,) = result.changes
    fields = {f.field: f for f in change.fields}
    assert set(fields) == {"server", "port", "account"}
    assert (fields["port"].before, fields["port"].after) == (8080, 80)
    assert "R2" in fields["port"].note
    assert (fields["account"].before, fields["account"].after) == ("CONTOSO\\svc-proxy", None)
    assert "System account" in fields["account"].note
    # The invocation states the port explicitly and carries no account (back to System).
    assert change.invocation.get("ProxyServerPort") == 80
    assert change.invocation.get("ProxyAccessAccount") is None


def test_r2_keeping_fields_is_explicit_with_replace(state: SiteState) -> None:
    kept = OLD.replace(server="proxy-new.contoso.com")
    (change,) = plan(state, DesiredState(proxies=[ProxyRequest("cm-ps1.contoso.com", kept)]))
    assert [f.field for f in change.fields] == ["server"]
    assert change.invocation.get("ProxyAccessAccount") == AccountLookup("CONTOSO\\svc-proxy", "PS1")


# R5 -----------------------------------------------------------------------------------------


def test_r5_cloud_dp_proxy_is_planned_on_its_managing_primary_site_server(state: SiteState) -> None:
    result = plan(state, DesiredState(proxies=[ProxyRequest("cdp01.cloudapp.net", NEW)]))
    (change,) = result.changes
    assert change.target == "cm-ps1.contoso.com"
    assert any("R5" in r and "cdp01.cloudapp.net" in r for r in change.reasons)


def test_r5_cloud_dp_without_known_managing_server_falls_back_to_its_site_server(
    state: SiteState,
) -> None:
    (change,) = plan(state, DesiredState(proxies=[ProxyRequest("cdp02.cloudapp.net", NEW)]))
    assert change.target == "cm-ps1.contoso.com"


def test_r5_refused_when_the_managing_primary_site_server_is_unknown() -> None:
    from cmproxy import CloudDistributionPoint, Site, SiteSystemServer

    current = SiteState(
        sites=[Site("PS1", "primary")],  # site server unknown
        servers=[SiteSystemServer("cdp.cloudapp.net", "PS1", roles=[CloudDistributionPoint()])],
    )
    with pytest.raises(RuleViolation) as err:
        plan(current, DesiredState(proxies=[ProxyRequest("cdp.cloudapp.net", NEW)]))
    assert err.value.rule == "R5"
    assert "cloud distribution point" in str(err.value)


def test_r5_conflicts_with_another_request_on_the_primary_site_server(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[
            ProxyRequest("cdp01.cloudapp.net", NEW),
            ProxyRequest("cm-ps1.contoso.com", OLD, role="site server"),
        ]
    )
    with pytest.raises(RuleViolation, match=r"\[R1\].*cloud distribution point cdp01"):
        plan(state, desired)


# R9 / R11 ----------------------------------------------------------------------------------


def test_r11_sup_flags_follow_the_server_proxy(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest("cm-scp01.contoso.com", NEW)],
        sup_flags=[SupFlagsRequest("cm-scp01.contoso.com", True, True)],
    )
    kinds = [c.kind for c in plan(state, desired)]
    assert kinds == [ChangeKind.SET_SERVER_PROXY, ChangeKind.SET_SUP_FLAGS]
    sup = plan(state, desired).changes[1]
    assert sup.invocation.command == "Set-CMSoftwareUpdatePoint"
    assert sup.invocation.get("UseProxy") is True
    assert sup.invocation.get("UseProxyForAutoDeploymentRule") is True
    assert sup.after == SupFlags(True, True)


def test_r11_sup_flags_without_a_server_proxy_are_refused(state: SiteState) -> None:
    desired = DesiredState(sup_flags=[SupFlagsRequest("cm-scp01.contoso.com", use_proxy=True)])
    with pytest.raises(RuleViolation) as err:
        plan(state, desired)
    assert err.value.rule == "R11"
    assert "cannot be empty" in str(err.value)


def test_r11_removing_a_proxy_turns_sup_flags_off_first(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest("cm-sup01.contoso.com", ProxySettings.disabled())],
        sup_flags=[SupFlagsRequest("cm-sup01.contoso.com", False, False)],
    )
    result = plan(state, desired)
    assert [c.kind for c in result] == [ChangeKind.SET_SUP_FLAGS, ChangeKind.SET_SERVER_PROXY]
    assert result.changes[1].invocation.get("EnableProxy") is False


def test_r11_removing_a_proxy_under_sup_flags_is_refused_by_default(state: SiteState) -> None:
    desired = DesiredState(proxies=[ProxyRequest("cm-sup01.contoso.com", ProxySettings.disabled())])
    with pytest.raises(RuleViolation) as err:
        plan(state, desired)
    assert err.value.rule == "R11"
    assert "turn_off" in str(err.value)


def test_r11_removing_a_proxy_with_turn_off_option_plans_flags_off(state: SiteState) -> None:
    desired = DesiredState(proxies=[ProxyRequest("cm-sup01.contoso.com", ProxySettings.disabled())])
    result = plan(state, desired, PlanOptions(sup_flags_on_proxy_removal="turn_off"))
    assert [c.kind for c in result] == [ChangeKind.SET_SUP_FLAGS, ChangeKind.SET_SERVER_PROXY]
    assert result.changes[0].after == SupFlags(False, False)


def test_r11_flags_kept_on_with_proxy_removed_is_refused_even_with_turn_off(
    state: SiteState,
) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest("cm-sup01.contoso.com", ProxySettings.disabled())],
        sup_flags=[SupFlagsRequest("cm-sup01.contoso.com", use_proxy=True)],
    )
    with pytest.raises(RuleViolation, match="R11"):
        plan(state, desired, PlanOptions(sup_flags_on_proxy_removal="turn_off"))


def test_r9_adr_flag_at_a_secondary_site_is_flagged(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest("cm-ss1.contoso.com", NEW.replace(account=None))],
        sup_flags=[SupFlagsRequest("cm-ss1.contoso.com", use_proxy_for_adr=True)],
    )
    result = plan(state, desired)
    assert [w.rule for w in result.warnings] == ["R9"]
    assert "secondary" in result.warnings[0].message
    assert "warning: [R9]" in result.render()


def test_r9_adr_flag_at_a_primary_site_is_not_flagged(state: SiteState) -> None:
    desired = DesiredState(
        sup_flags=[SupFlagsRequest("cm-ps1.contoso.com", use_proxy_for_adr=True)]
    )
    assert plan(state, desired).warnings == ()


def test_r9_sync_flag_on_a_sup_syncing_from_upstream_is_flagged(state: SiteState) -> None:
    desired = DesiredState(sup_flags=[SupFlagsRequest("cm-sup-up.contoso.com", use_proxy=True)])
    result = plan(state, desired)
    assert "upstream" in result.warnings[0].message


def test_sup_flags_on_a_server_without_a_sup_are_refused(state: SiteState) -> None:
    with pytest.raises(ValidationError, match="does not host a software update point"):
        plan(state, DesiredState(sup_flags=[SupFlagsRequest("cm-cas.contoso.com", True)]))


# Accounts, role refusals, unknown servers ---------------------------------------------------


def test_new_account_is_created_first_with_its_password_as_secret(state: SiteState) -> None:
    proxy = NEW.replace(account="CONTOSO\\svc-new", password="pa$$'word`;")
    result = plan(state, DesiredState(proxies=[ProxyRequest("cm-scp01.contoso.com", proxy)]))
    assert [c.kind for c in result] == [ChangeKind.CREATE_ACCOUNT, ChangeKind.SET_SERVER_PROXY]
    create = result.changes[0].invocation
    assert create.command == "New-CMAccount"
    assert isinstance(create.get("Password"), Secret)
    rendered = result.render() + str(result.to_dict())
    assert "pa$$'word" not in rendered
    assert "<SecureString>" in rendered


def test_new_account_password_can_come_from_desired_accounts(state: SiteState) -> None:
    proxy = NEW.replace(account="CONTOSO\\svc-new")
    desired = DesiredState(
        proxies=[ProxyRequest("cm-scp01.contoso.com", proxy)],
        accounts=[Account("CONTOSO\\svc-new", password="x")],
    )
    assert plan(state, desired).changes[0].kind is ChangeKind.CREATE_ACCOUNT


def test_new_account_without_a_password_is_refused(state: SiteState) -> None:
    proxy = NEW.replace(account="CONTOSO\\svc-new")
    with pytest.raises(ValidationError) as err:
        plan(state, DesiredState(proxies=[ProxyRequest("cm-scp01.contoso.com", proxy)]))
    assert err.value.field == "proxy.password"
    assert "New-CMAccount" in str(err.value)


def test_connected_cache_dp_accepts_only_an_unauthenticated_proxy(state: SiteState) -> None:
    anonymous = NEW.replace(account=None)
    assert (
        len(plan(state, DesiredState(proxies=[ProxyRequest("cm-mcc01.contoso.com", anonymous)])))
        == 1
    )
    with pytest.raises(ValidationError, match="unauthenticated"):
        plan(state, DesiredState(proxies=[ProxyRequest("cm-mcc01.contoso.com", NEW)]))


def test_unknown_server_is_refused_naming_the_field(state: SiteState) -> None:
    with pytest.raises(ValidationError) as err:
        plan(state, DesiredState(proxies=[ProxyRequest("nowhere.contoso.com", NEW)]))
    assert err.value.field == "proxies[0].server"


def test_plan_serialises_without_secrets(state: SiteState) -> None:
    proxy = NEW.replace(account="CONTOSO\\svc-new", password="TopSecret-1")
    result = plan(state, DesiredState(proxies=[ProxyRequest("cm-scp01.contoso.com", proxy)]))
    import json

    text = json.dumps(result.to_dict())
    assert "TopSecret-1" not in text
    assert "cm-scp01.contoso.com" in text
