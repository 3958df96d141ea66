"""ConfigMgr cmdlet semantics, [UNCONFIRMED] behaviour settings, faults and costs."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from cmproxy.emulator.engine import SiteEngine, SiteRunspace
from cmproxy.emulator.engine.values import CommandSpec, InvocationResult, PSObj
from cmproxy.emulator.settings import AnswerLost, EmulatorSettings
from cmproxy.emulator.state import SUP_ROLE, SiteState

from ..meeting import Meeting

Run = Callable[[str], InvocationResult]

DP1 = "cm-ps1-dp01.contoso.com"
ENABLE = (
    f"Set-CMSiteSystemServer -SiteSystemServerName {DP1} -SiteCode PS1 -EnableProxy $true "
    "-ProxyServerName proxy.contoso.com"
)


def test_site_drive_required(engine: SiteEngine) -> None:
    rs = engine.open_runspace("CONTOSO\\admin")
    res = rs.run_script("Import-Module ConfigurationManager; Get-CMSite")
    [err] = res.errors
    assert err.fully_qualified_error_id == (
        "System.InvalidOperationException,"
        "Microsoft.ConfigurationManagement.Cmdlets.HS.Commands.GetSiteCommand"
    )
    assert err.message.startswith("This command cannot be run from the current drive.")


def test_cmdlets_unknown_before_import(engine: SiteEngine) -> None:
    res = engine.open_runspace("u").run_script("Get-CMSite")
    assert res.errors[0].error_id == "CommandNotFoundException"


def test_missing_drive_path_and_new_psdrive(demo_state: SiteState) -> None:
    eng = SiteEngine(demo_state, sleep=lambda _s: None, auto_site_drive=False)
    rs = eng.open_runspace("CONTOSO\\svc")
    res = rs.run_script("Import-Module ConfigurationManager; Set-Location PS1:")
    assert res.errors[0].error_id == "DriveNotFound"
    assert res.errors[0].message == "Cannot find drive. A drive with the name 'PS1' does not exist."
    res = rs.run_script(
        "New-PSDrive -Name PS1 -PSProvider 'AdminUI.PS.Provider\\CMSite' -Root cm-ps1.contoso.com"
    )
    assert res.errors[0].error_id == "ProviderNotFound"
    res = rs.run_script(
        "$null = New-PSDrive -Name PS1 -PSProvider 'AdminUI.PS\\CMSite' -Root cm-ps1.contoso.com\n"
        "Test-Path 'PS1:\\'; Set-Location 'PS1:\\'; (Get-CMSite -SiteCode PS1).SiteName"
    )
    assert res.output == [True, "Contoso Primary Site 1"], res


def test_a_site_drive_is_named_after_a_site_its_provider_serves(demo_state: SiteState) -> None:
    """`New-PSDrive -Name <SiteCode> -PSProvider CMSite -Root <SMSProviderFQDN>`
    (configmgr-cmdlets.md §1.2): the name is the site code the drive opens on that provider;
    a code the provider does not serve is refused (id and text [UNCONFIRMED])."""
    eng = SiteEngine(demo_state, sleep=lambda _s: None, auto_site_drive=False)
    rs = eng.open_runspace("CONTOSO\\svc")
    res = rs.run_script(
        "Import-Module ConfigurationManager\n"
        "New-PSDrive -Name ZZ9 -PSProvider CMSite -Root cm-ps1.contoso.com"
    )
    assert res.terminating is not None or res.errors
    [rec] = [res.terminating] if res.terminating else res.errors
    assert rec.error_id == "ProviderConnectionFailed"
    assert "ZZ9" in rec.message
    assert rs.run_script("Test-Path 'ZZ9:\\'").output == [False]


def test_import_clashing_drive_name(engine: SiteEngine, demo_state: SiteState) -> None:
    from cmproxy.emulator.state import Site

    demo_state.add_site(
        Site("ENV", "Clash", "primary", "CAS", "cm-env.contoso.com", "cm-env.contoso.com")
    )
    res = engine.open_runspace("u").run_script("Import-Module ConfigurationManager")
    assert res.errors[0].error_id == "DriveAlreadyExists"


def test_provider_location_and_module(engine: SiteEngine) -> None:
    res = engine.open_runspace("u").run_script(
        "$p = Get-CimInstance -Namespace root\\sms -ClassName SMS_ProviderLocation\n"
        "$p.SiteCode; $p.Machine\n"
        "Import-Module 'C:\\Program Files (x86)\\Microsoft Endpoint Manager\\AdminConsole\\bin\\"
        "ConfigurationManager.psd1'; (Get-Module ConfigurationManager).Version"
    )
    assert res.output == ["PS1", "cm-ps1.contoso.com", "5.2309.1112.1000"], res


def test_get_filters(run: Run) -> None:
    assert run("(Get-CMSiteSystemServer -AllSite).Count").output == [39]
    assert run("(Get-CMSiteSystemServer -SiteCode SS1).Count").output == [3]
    assert run("(Get-CMSoftwareUpdatePoint -AllSite).Count").output == [6]
    assert run("Get-CMSiteSystemServer -Name nothing*").output == []
    roles = run("Get-CMSiteRole -SiteCode CAS -RoleName 'SMS D*' | % { $_.RoleName }").output
    assert roles == ["SMS Dmp Connector"]
    assert run("(Get-CMSite -SiteCode SS1).ReportingSiteCode").output == ["PS1"]


def test_sysresuse_shape(run: Run) -> None:
    [o] = run(f"Get-CMSiteSystemServer -SiteSystemServerName {DP1}").output
    assert isinstance(o, PSObj)
    assert o.type_names == [
        "IResultObject#SMS_SCI_SysResUse",
        "Microsoft.ConfigurationManagement.ManagementProvider.WqlQueryEngine.WqlResultObject",
        "Microsoft.ConfigurationManagement.ManagementProvider.IResultObject",
        "System.Object",
    ]
    assert o.live
    assert o.properties["NetworkOSPath"] == f"\\\\{DP1}"
    assert o.properties["ItemName"] == (
        f'["Display=\\\\{DP1}\\"]MSWNET:["SMS_SITE=PS1"]\\\\{DP1}\\,SMS Site System'
    )
    assert o.properties["RoleCount"] == 2
    assert o.properties["Type"] == 8
    prop = o.properties["Props"][0]
    assert prop.to_string().startswith("instance of SMS_EmbeddedProperty")


def test_set_without_passthru_outputs_nothing(run: Run, demo_state: SiteState) -> None:
    assert run(ENABLE).output == []
    props = demo_state.server_props("PS1", DP1)
    assert (props["UseProxy"].value, props["ProxyServerPort"].value) == (1, 80)
    assert props["AnonymousProxyAccess"].value == 1


def test_pipeline_set_with_account(run: Run, demo_state: SiteState) -> None:
    res = run(
        f"Get-CMSiteSystemServer -SiteSystemServerName {DP1} | Set-CMSiteSystemServer "
        "-EnableProxy $true -ProxyServerName p1 -ProxyServerPort 8080 "
        "-ProxyAccessAccount (Get-CMAccount 'contoso\\svc-proxy')"
    )
    assert not res.had_errors, res
    props = demo_state.server_props("PS1", DP1)
    assert props["ProxyUserName"].value2 == "CONTOSO\\svc-proxy"
    assert props["AnonymousProxyAccess"].value == 0


@pytest.mark.parametrize("clears", [True, False])
def test_disable_clears_fields_setting(
    run: Run, demo_state: SiteState, emu_settings: EmulatorSettings, clears: bool
) -> None:
    emu_settings.behaviour.disable_clears_proxy_fields = clears
    server = "cm-sup01.contoso.com"
    run(f"Set-CMSiteSystemServer -SiteSystemServerName {server} -SiteCode CAS -EnableProxy $false")
    props = demo_state.server_props("CAS", server)
    assert props["UseProxy"].value == 0
    assert props["ProxyName"].value2 == ("" if clears else "proxy.contoso.com")
    assert props["ProxyUserName"].value2 == ("" if clears else "CONTOSO\\svc-proxy")


@pytest.mark.parametrize("resets", [True, False])
def test_enable_without_port_or_account(
    run: Run, demo_state: SiteState, emu_settings: EmulatorSettings, resets: bool
) -> None:
    emu_settings.behaviour.enable_without_port_resets_to_80 = resets
    emu_settings.behaviour.enable_without_account_resets_to_system = resets
    server = "cm-sup01.contoso.com"
    run(
        f"Set-CMSiteSystemServer -SiteSystemServerName {server} -SiteCode CAS -EnableProxy $true "
        "-ProxyServerName proxy2.contoso.com"
    )
    props = demo_state.server_props("CAS", server)
    assert props["ProxyName"].value2 == "proxy2.contoso.com"
    assert props["ProxyServerPort"].value == (80 if resets else 8080)
    assert props["ProxyUserName"].value2 == ("" if resets else "CONTOSO\\svc-proxy")


def test_whatif_writes_nothing(run: Run, demo_state: SiteState) -> None:
    res = run(ENABLE + " -WhatIf")
    assert res.information and "What if" in str(res.information[0])
    assert demo_state.server_props("PS1", DP1)["UseProxy"].value == 0
    assert demo_state.call_log("Set-CMSiteSystemServer")[-1].wrote is False


@pytest.mark.parametrize("accepted", [True, False])
def test_sup_flags_without_server_proxy(
    run: Run, demo_state: SiteState, emu_settings: EmulatorSettings, accepted: bool
) -> None:
    emu_settings.behaviour.sup_flags_without_server_proxy_accepted = accepted
    sup = "cm-ps2-sup01.contoso.com"
    res = run(
        f"Set-CMSoftwareUpdatePoint -SiteSystemServerName {sup} -SiteCode PS2 -UseProxy $true "
        "-UseProxyForAutoDeploymentRule $true -WsusIisPort 8530 -SslWsus $false"
    )
    props = demo_state.server_props("PS2", sup, SUP_ROLE)
    log = demo_state.log(sup, "WSUSCtrl.log") or ""
    if accepted:
        assert not res.had_errors, res
        assert props["UseProxy"].value == 1 and props["UseProxyForADR"].value == 1
        assert "WsusInvalidDataException: The address of the proxy server cannot be empty" in log
    else:
        assert res.errors
        assert props["UseProxy"].value == 0
        assert log == ""


def test_add_sup_and_component(run: Run, demo_state: SiteState) -> None:
    res = run(
        "Add-CMSoftwareUpdatePoint -SiteSystemServerName cm-ps1-dp05.contoso.com -SiteCode PS1 "
        "-UseProxy $true -UseProxyForAutoDeploymentRule $false | % { $_.RoleName }"
    )
    assert res.output == [SUP_ROLE], res
    assert demo_state.server_props("PS1", "cm-ps1-dp05.contoso.com", SUP_ROLE)["UseProxy"].value
    res = run(
        "(Get-CMSoftwareUpdatePointComponent -SiteCode PS2).Props | "
        "? PropertyName -in 'DefaultUseParentWSUS','ParentWSUS' | % { \"$($_.Value)$($_.Value2)\" }"
    )
    assert res.output == ["1", "0cm-sup01.contoso.com"]
    run(
        "Set-CMSoftwareUpdatePointComponent -SiteCode PS2 "
        "-SynchronizeAction SynchronizeFromMicrosoftUpdate"
    )
    assert demo_state.component_props("PS2")["DefaultUseParentWSUS"].value == 0


def test_get_content_reads_site_server_logs_only(run: Run) -> None:
    # From the site drive a UNC path goes to the CMSite provider (about_Providers): only the
    # provider-qualified path reaches the share (tests/emulator/conformance/providers.yaml).
    unc = "\\\\cm-ps1.contoso.com\\SMS_PS1\\Logs\\ruleengine.log"
    res = run(f"Get-Content '{unc}'")
    assert res.output == [] and res.errors[0].error_id == "PathNotFound"
    res = run(f"Get-Content 'FileSystem::{unc}' | ? {{ $_ -like '*Error = 12007.*' }}")
    assert len(res.output) == 2
    local = "C:\\Program Files\\Microsoft Configuration Manager\\Logs\\ruleengine.log"
    res = run(f"Get-Content '{local}' -Tail 1")
    assert len(res.output) == 1
    res = run("Get-Content /etc/passwd")
    assert res.output == [] and res.errors[0].error_id == "PathNotFound"


def test_fail_cmdlet_fault(
    rs: SiteRunspace, demo_state: SiteState, emu_settings: EmulatorSettings
) -> None:
    emu_settings.faults.fail_cmdlet = "Set-CMSiteSystemServer"
    emu_settings.faults.fail_cmdlet_on_call = 2
    assert not rs.run_script(ENABLE).had_errors
    demo_state_before = demo_state.snapshot()
    res = rs.run_script(ENABLE.replace("proxy.contoso", "other.contoso"))
    assert res.errors[0].error_id == "ProviderBusy"
    assert demo_state.snapshot() == demo_state_before
    assert demo_state.call_log("Set-CMSiteSystemServer")[-1].wrote is False
    assert emu_settings.cmdlet_calls["Set-CMSiteSystemServer"] == 2


def test_lose_answer_commits_then_raises(
    rs: SiteRunspace, demo_state: SiteState, emu_settings: EmulatorSettings
) -> None:
    emu_settings.faults.lose_answer_cmdlet = "Set-CMSiteSystemServer"
    emu_settings.faults.lose_answer_on_call = 1
    with pytest.raises(AnswerLost):
        rs.invoke(
            [
                CommandSpec(
                    "Set-CMSiteSystemServer",
                    parameters=(
                        ("SiteSystemServerName", DP1),
                        ("SiteCode", "PS1"),
                        ("EnableProxy", True),
                        ("ProxyServerName", "lost.contoso.com"),
                    ),
                )
            ]
        )
    assert demo_state.server_props("PS1", DP1)["ProxyName"].value2 == "lost.contoso.com"
    assert demo_state.call_log("Set-CMSiteSystemServer")[-1].wrote is True


def test_costs_use_injected_sleep(demo_state: SiteState) -> None:
    slept: list[float] = []
    settings = EmulatorSettings()
    settings.costs.module_import = 2.0
    settings.costs.get_cmdlet = 0.5
    settings.costs.set_cmdlet = 1.5
    rs = SiteEngine(demo_state, settings, sleep=slept.append).open_runspace("u")
    rs.run_script("Import-Module ConfigurationManager; Set-Location PS1:; Get-CMSite")
    rs.run_script(ENABLE)
    # A Set's cost includes its own state transaction: only the rest of it is slept.
    assert slept[:2] == [2.0, 0.5]
    assert len(slept) == 3 and 1.4 < slept[2] <= 1.5


def test_stop_event(rs: SiteRunspace) -> None:
    stop = threading.Event()
    stop.set()
    r = rs.invoke([CommandSpec("Get-CMSite")], stop=stop)
    assert r.stopped


def test_call_log_masks_secrets(run: Run, demo_state: SiteState) -> None:
    run(
        "$pw = ConvertTo-SecureString 'Hunter2!x' -AsPlainText -Force\n"
        "New-CMAccount -UserName CONTOSO\\svc-x -Password $pw"
    )
    records = demo_state.call_log()
    new = [r for r in records if r.command == "New-CMAccount"][-1]
    assert new.params["Password"] == "********"
    assert new.wrote
    conv = [r for r in records if r.command == "ConvertTo-SecureString"][-1]
    assert conv.params["String"] == "********"
    assert "Hunter2" not in repr(records)


# -- concurrent writes under the cost model -----------------------------------------------


def _write_at_once(
    state: SiteState, targets: list[tuple[str, str]], meeting: Meeting, *, serialise: bool = True
) -> None:
    """One write per target, each from its own runspace and thread, all started together; the
    engine's modelled cost (0.3 s per write) is the meeting point."""
    settings = EmulatorSettings()
    settings.costs.set_cmdlet = 0.3
    settings.costs.serialise_site_writes = serialise
    engine = SiteEngine(state, settings, sleep=meeting.sleep)
    runspaces = []
    for site, _server in targets:
        rs = engine.open_runspace("CONTOSO\\admin")
        assert not rs.run_script(
            f"Import-Module ConfigurationManager; Set-Location {site}:"
        ).had_errors
        runspaces.append(rs)
    results: list[InvocationResult] = []

    def write(rs: SiteRunspace, site: str, server: str) -> None:
        script = (
            f"Set-CMSiteSystemServer -SiteSystemServerName {server} -SiteCode {site} "
            "-EnableProxy $true -ProxyServerName proxy.example.com -ProxyServerPort 3128"
        )
        results.append(rs.run_script(script))

    threads = [
        threading.Thread(target=write, args=(rs, site, server))
        for rs, (site, server) in zip(runspaces, targets, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(not r.had_errors for r in results), [r.errors for r in results]
    for site, server in targets:
        assert state.server_props(site, server)["ProxyName"].value2 == "proxy.example.com"


def test_writes_to_different_sites_run_in_parallel(demo_state: SiteState) -> None:
    targets = [("PS1", "cm-ps1-dp01.contoso.com"), ("PS2", "cm-ps2-dp01.contoso.com")]
    meeting = Meeting(parties=2)
    _write_at_once(demo_state, targets, meeting)
    assert meeting.met == [True, True]


def test_writes_to_one_site_are_serialised(demo_state: SiteState) -> None:
    """The site's write lock is held across each write's cost (`Costs.serialise_site_writes`,
    on by default): the second write never enters its cost while the first is in it."""
    targets = [("PS1", "cm-ps1-dp01.contoso.com"), ("PS1", "cm-ps1-dp02.contoso.com")]
    meeting = Meeting(parties=2, wait=2.0)
    _write_at_once(demo_state, targets, meeting)
    assert meeting.met == [False, False]
    assert meeting.most_at_once == 1


def test_writes_to_one_site_run_in_parallel_without_the_site_lock(demo_state: SiteState) -> None:
    targets = [("PS1", "cm-ps1-dp01.contoso.com"), ("PS1", "cm-ps1-dp02.contoso.com")]
    meeting = Meeting(parties=2)
    _write_at_once(demo_state, targets, meeting, serialise=False)
    assert meeting.met == [True, True]
