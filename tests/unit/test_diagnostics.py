"""Diagnostics over typed state: each finding cites its rule and says what to do."""

from __future__ import annotations

import attrs

from cmproxy import (
    DesiredState,
    ProxyRequest,
    ProxySettings,
    SiteState,
    SoftwareUpdatePoint,
)
from cmproxy.diagnostics import diagnose_state, ruleengine_failures

LOG = """\
<![LOG[Evaluating ADR: Patch Tuesday]LOG]!><time="02:00:03.117+480" date="02-13-2024">
<![LOG[Failed to download the update from internet. Error = 12007.]LOG]!><time="02:01:02.610+480">
<![LOG[Échec du téléchargement de la mise à jour sur Internet. Erreur = 12007.]LOG]!><time="02:02">
"""


def _with_sup(
    state: SiteState, name: str, use_proxy: bool = False, use_proxy_for_adr: bool = False
) -> SiteState:
    server = state.server(name)
    assert server is not None
    sup = SoftwareUpdatePoint(use_proxy=use_proxy, use_proxy_for_adr=use_proxy_for_adr)
    return state.with_server(attrs.evolve(server, roles=[sup]))


def test_a_healthy_site_has_no_errors(state: SiteState) -> None:
    diagnosis = diagnose_state(state)
    assert diagnosis.ok
    assert "R11" not in diagnosis.rules()


def test_r11_sup_flags_without_a_server_proxy(state: SiteState) -> None:
    broken = _with_sup(state, "cm-scp01.contoso.com", use_proxy=True)
    diagnosis = diagnose_state(broken)
    (finding,) = [f for f in diagnosis if f.rule == "R11"]
    assert finding.server == "cm-scp01.contoso.com"
    assert "cannot be empty" in finding.message
    assert not diagnosis.ok


def test_r9_adr_flag_at_a_secondary(state: SiteState) -> None:
    flagged = _with_sup(state, "cm-ss1.contoso.com", use_proxy_for_adr=True)
    assert any(f.rule == "R9" and f.server == "cm-ss1.contoso.com" for f in diagnose_state(flagged))


def test_r5_cloud_dp_whose_primary_has_no_proxy(state: SiteState) -> None:
    primary = state.server("cm-ps1.contoso.com")
    assert primary is not None
    no_proxy = state.with_server(attrs.evolve(primary, proxy=ProxySettings.disabled()))
    r5 = [f for f in diagnose_state(no_proxy) if f.rule == "R5"]
    assert {f.server for f in r5} == {"cdp01.cloudapp.net", "cdp02.cloudapp.net"}
    assert "cm-ps1.contoso.com" in r5[0].fix
    assert not [f for f in diagnose_state(state) if f.rule == "R5"]


def test_r1_different_proxies_wanted_on_one_server(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[
            ProxyRequest("cm-scp01.contoso.com", ProxySettings(server="a"), role="SCP"),
            ProxyRequest("cm-scp01.contoso.com", ProxySettings(server="b"), role="SUP"),
        ]
    )
    (finding,) = [f for f in diagnose_state(state, desired) if f.rule == "R1"]
    assert "SCP" in finding.message and "SUP" in finding.message


def test_r13_12007_in_ruleengine_log_explains_the_system_account(state: SiteState) -> None:
    assert len(ruleengine_failures(LOG)) == 2
    site_server = state.server("cm-cas.contoso.com")
    assert site_server is not None and not site_server.proxy.enabled
    (finding,) = [
        f for f in diagnose_state(state, logs={"cm-cas.contoso.com": LOG}) if f.rule == "R13"
    ]
    assert "System account" in finding.message
    assert "R12" in finding.message
    assert "use_proxy_for_adr" in finding.fix  # no SUP at the CAS has the ADR option on
    assert "cm-cas.contoso.com's System account" in finding.fix
    assert "Error = 12007" in finding.message or "Erreur = 12007" in finding.message


def test_r13_when_the_adr_option_is_on_with_a_proxy_points_at_the_proxy(state: SiteState) -> None:
    (finding,) = [
        f for f in diagnose_state(state, logs={"cm-ps1.contoso.com": LOG}) if f.rule == "R13"
    ]
    assert finding.site_code == "PS1"
    assert "the proxy is configured and the ADR option is on" in finding.fix


def test_r13_when_the_adr_option_is_on_without_a_proxy_points_at_r11(state: SiteState) -> None:
    only = _with_sup(state, "cm-sup01.contoso.com", use_proxy_for_adr=False)
    broken = _with_sup(only, "cm-scp01.contoso.com", use_proxy_for_adr=True)
    (finding,) = [
        f for f in diagnose_state(broken, logs={"cm-ps1.contoso.com": LOG}) if f.rule == "R13"
    ]
    assert "cm-scp01.contoso.com" in finding.fix and "R11" in finding.fix


def test_a_clean_log_gives_no_r13(state: SiteState) -> None:
    assert not list(diagnose_state(state, logs={"cm-cas.contoso.com": "all fine"}))


def test_an_unreadable_log_is_a_finding_naming_log_server_and_cause(state: SiteState) -> None:
    from cmproxy.diagnostics import UnreadableLog

    hop = UnreadableLog("cm-cas.contoso.com", "ruleengine.log", "AccessDenied", second_hop=True)
    missing = UnreadableLog("cm-cas.contoso.com", "ruleengine.log", "NotFound")
    other = UnreadableLog("cm-cas.contoso.com", "ruleengine.log", "Error", False, "IOError", "x")
    (f_hop,) = diagnose_state(state, unreadable=[hop])
    assert (f_hop.rule, f_hop.severity, f_hop.server) == ("R13", "warning", "cm-cas.contoso.com")
    assert "second hop" in f_hop.message and "ruleengine.log" in f_hop.message
    assert "CredSSP" in f_hop.fix
    (f_missing,) = diagnose_state(state, unreadable=[missing])
    assert f_missing.severity == "info" and "not found" in f_missing.message
    assert "second hop" not in f_missing.message
    (f_other,) = diagnose_state(state, unreadable=[other])
    assert "IOError: x" in f_other.message
