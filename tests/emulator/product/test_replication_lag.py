"""[UNCONFIRMED] replication lag of a child site's site control data (`settings.Replication`).

Reasoning (settings.Replication): a site's settings are its site control data, changed by
"delta site control file" requests that SMS Site Control Manager processes (sitectrl.log); a
change made at another site for a child site is turned into such a request by SMS Hierarchy
Manager (hman.log) and replicated to the child, in serial-number order (ConfigMgr SDK, "About
the Configuration Manager Site Control File"; status messages SMS_HIERARCHY_MANAGER 3307,
SMS_SITE_CONTROL_MANAGER 2807). Whether the provider's reads lag on current branch is not
confirmed, so the lag is a setting, off by default; these tests pin the emulator's model of it.
Time is the engine's injectable clock: nothing here sleeps.
"""

from __future__ import annotations

import pytest

from cmproxy.emulator import serve
from cmproxy.emulator.engine import SiteEngine, SiteRunspace
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.emulator.state import SiteState

from ..clients import FakeClock

SUP = "cm-ps2-sup01.contoso.com"
DP = "cm-ps1-dp01.contoso.com"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lagged(demo_state: SiteState, clock: FakeClock) -> SiteRunspace:
    settings = EmulatorSettings()
    settings.replication.lag["PS2"] = 30.0
    eng = SiteEngine(demo_state, settings, sleep=lambda _s: None, clock=clock)
    rs = eng.open_runspace("CONTOSO\\admin")
    res = rs.run_script("Import-Module ConfigurationManager; Set-Location PS2:")
    assert not res.had_errors, res
    return rs


def _proxy(rs: SiteRunspace, cmd: str = "Get-CMSiteSystemServer", server: str = SUP) -> object:
    res = rs.run_script(
        f"$r = {cmd} -SiteSystemServerName {server}\n"
        "($r.Props | Where-Object PropertyName -eq 'ProxyName').Value2"
    )
    assert not res.had_errors, res
    return res.output


def _set(rs: SiteRunspace, proxy: str) -> None:
    res = rs.run_script(
        f"Set-CMSiteSystemServer -SiteSystemServerName {SUP} -SiteCode PS2 -EnableProxy $true "
        f"-ProxyServerName {proxy} -ProxyServerPort 8080"
    )
    assert not res.had_errors, res


def test_off_by_default_reads_see_a_write_at_once(engine: SiteEngine) -> None:
    assert EmulatorSettings().replication.lag == {}
    rs = engine.open_runspace("u")
    rs.run_script("Import-Module ConfigurationManager; Set-Location PS2:")
    _set(rs, "new.contoso.com")
    assert _proxy(rs) == ["new.contoso.com"]


def test_a_write_is_accepted_but_every_read_shows_the_old_value_until_the_lag_passed(
    lagged: SiteRunspace, demo_state: SiteState, clock: FakeClock
) -> None:
    before = _proxy(lagged)
    _set(lagged, "new.contoso.com")
    # The provider accepted and holds it ...
    assert demo_state.server_props("PS2", SUP)["ProxyName"].value2 == "new.contoso.com"
    # ... but reads at the child site do not show it yet, through every reading cmdlet.
    assert _proxy(lagged) == before
    assert _proxy(lagged, "Get-CMSiteRole -RoleName 'SMS Site System'") == before
    listed = lagged.run_script(
        "foreach ($r in Get-CMSiteRole -SiteCode PS2) { if ($r.NetworkOSPath -eq "
        f"'\\\\{SUP}' -and $r.RoleName -eq 'SMS Site System') {{ "
        "($r.Props | Where-Object PropertyName -eq 'ProxyName').Value2 } }"
    )
    assert listed.output == before
    clock.now += 29.9
    assert _proxy(lagged) == before
    clock.now += 0.2
    assert _proxy(lagged) == ["new.contoso.com"]
    assert _proxy(lagged, "Get-CMSiteRole -RoleName 'SMS Site System'") == ["new.contoso.com"]


def test_passthru_returns_the_object_as_written(lagged: SiteRunspace) -> None:
    res = lagged.run_script(
        f"$r = Set-CMSiteSystemServer -SiteSystemServerName {SUP} -SiteCode PS2 -EnableProxy "
        "$true -ProxyServerName pt.contoso.com -PassThru\n"
        "($r.Props | Where-Object PropertyName -eq 'ProxyName').Value2"
    )
    assert res.output == ["pt.contoso.com"], res


def test_sup_options_lag_too(lagged: SiteRunspace, clock: FakeClock) -> None:
    read = (
        f"$r = Get-CMSoftwareUpdatePoint -SiteSystemServerName {SUP} -SiteCode PS2\n"
        "($r.Props | Where-Object PropertyName -eq 'UseProxy').Value"
    )
    _set(lagged, "p.contoso.com")
    assert lagged.run_script(read).output == [0]
    res = lagged.run_script(
        f"Set-CMSoftwareUpdatePoint -SiteSystemServerName {SUP} -SiteCode PS2 -UseProxy $true"
    )
    assert not res.had_errors, res
    assert lagged.run_script(read).output == [0]
    clock.now += 31
    assert lagged.run_script(read).output == [1]


def test_a_second_write_during_the_lag_builds_on_the_first_and_shows_after_it(
    lagged: SiteRunspace, demo_state: SiteState, clock: FakeClock
) -> None:
    before = _proxy(lagged)
    _set(lagged, "first.contoso.com")
    clock.now += 10
    res = lagged.run_script(
        f"Set-CMSiteSystemServer -SiteSystemServerName {SUP} -SiteCode PS2 -ProxyServerPort 9090"
    )
    assert not res.had_errors, res
    # The second write was made on top of the first (the provider's own copy) ...
    props = demo_state.server_props("PS2", SUP)
    assert (props["ProxyName"].value2, props["ProxyServerPort"].value) == (
        "first.contoso.com",
        9090,
    )
    port = (
        f"$r = Get-CMSiteSystemServer -SiteSystemServerName {SUP}\n"
        "($r.Props | Where-Object PropertyName -eq 'ProxyServerPort').Value"
    )
    assert _proxy(lagged) == before
    clock.now += 20.5  # the first is visible, the second not yet
    assert _proxy(lagged) == ["first.contoso.com"]
    assert lagged.run_script(port).output == [8080]
    clock.now += 10  # 30 s after the second
    assert lagged.run_script(port).output == [9090]


def test_other_sites_are_not_lagged(lagged: SiteRunspace) -> None:
    res = lagged.run_script(
        f"Set-CMSiteSystemServer -SiteSystemServerName {DP} -SiteCode PS1 -EnableProxy $true "
        "-ProxyServerName ps1.contoso.com"
    )
    assert not res.had_errors, res
    res = lagged.run_script(
        f"$r = Get-CMSiteSystemServer -SiteSystemServerName {DP} -SiteCode PS1\n"
        "($r.Props | Where-Object PropertyName -eq 'ProxyName').Value2"
    )
    assert res.output == ["ps1.contoso.com"], res


def test_serve_takes_lags_per_site() -> None:
    assert serve.parse_lags(["ps2=1.5", "PS1=0"]) == {"PS2": 1.5, "PS1": 0.0}
    assert serve.parse_lags(None) == {}
    for bad in ("PS2", "=3", "PS2=x", "PS2=-1"):
        with pytest.raises(SystemExit, match="SITE=SECONDS"):
            serve.parse_lags([bad])
