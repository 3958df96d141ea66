"""The benchmark's cost profiles (issue 18): modelling choices, each an [UNCONFIRMED] setting.

None of these is product behaviour a source describes (docs/performance.md, "The cost model"):
they are shapes of cost a real SMS Provider may have, so the benchmark can be run under each.
The tests check that each setting charges what its docstring in `settings.Costs` says, through
the emulator's injectable sleep (no time passes).
"""

from __future__ import annotations

import pytest

from cmproxy.emulator.engine import SiteEngine
from cmproxy.emulator.settings import Costs, EmulatorSettings
from cmproxy.emulator.state import SiteState

DP1 = "cm-ps1-dp01.contoso.com"
SET_PS1 = (
    f"Set-CMSiteSystemServer -SiteSystemServerName {DP1} -SiteCode PS1 -EnableProxy $true "
    "-ProxyServerName proxy.contoso.com -ProxyServerPort 8080"
)


def test_a_get_is_charged_per_call_and_per_row_it_returns(demo_state: SiteState) -> None:
    slept: list[float] = []
    settings = EmulatorSettings(costs=Costs(get_cmdlet=0.5, get_per_row=0.01))
    rs = SiteEngine(demo_state, settings, sleep=slept.append).open_runspace("u")
    rs.run_script("Import-Module ConfigurationManager; Set-Location PS1:")
    rows = rs.run_script("Get-CMSiteRole -SiteCode PS1").output
    assert len(rows) > 1
    assert slept == [0.5, pytest.approx(0.01 * len(rows))]
    slept.clear()
    assert rs.run_script("Get-CMSiteRole -SiteSystemServerName nosuch.contoso.com").output == []
    assert slept == [0.5]  # nothing returned: the per-call part only


def test_without_provider_cores_an_import_costs_its_figure_whatever_runs(
    demo_state: SiteState,
) -> None:
    slept: list[float] = []
    settings = EmulatorSettings(costs=Costs(module_import=2.0))
    settings.imports_running = 7  # ignored: no contention modelled
    SiteEngine(demo_state, settings, sleep=slept.append).open_runspace("u").run_script(
        "Import-Module ConfigurationManager"
    )
    assert slept == [2.0]


@pytest.mark.parametrize(("others", "stretch"), [(0, 1.0), (1, 1.0), (3, 2.0), (7, 4.0)])
def test_concurrent_imports_share_the_provider_cores(
    demo_state: SiteState, others: int, stretch: float
) -> None:
    """Two cores: with `others` imports running the whole time, one import of 1 s takes
    1 s × max(1, (others + 1) / 2)."""
    slept: list[float] = []
    settings = EmulatorSettings(costs=Costs(module_import=1.0, provider_cores=2))
    settings.imports_running = others
    rs = SiteEngine(demo_state, settings, sleep=slept.append).open_runspace("u")
    res = rs.run_script("Import-Module ConfigurationManager; Set-Location PS1:; Get-CMSite")
    assert not res.had_errors, res
    assert sum(slept) == pytest.approx(stretch)
    assert settings.imports_running == others  # this import has left


def _lock_taken_by_a_write_at_ps1(demo_state: SiteState, scope: str) -> dict[str, bool]:
    """Which site's write lock is held while a write at PS1 sleeps its cost."""
    settings = EmulatorSettings(costs=Costs(set_cmdlet=0.05, write_lock=scope))
    held: dict[str, bool] = {}
    eng: SiteEngine

    def sleep(_seconds: float) -> None:
        for site in ("PS1", "PS2"):
            held[site] = eng.site_lock(settings.costs.write_lock_key(site)).locked()

    eng = SiteEngine(demo_state, settings, sleep=sleep)
    res = eng.open_runspace("u").run_script(
        f"Import-Module ConfigurationManager; Set-Location PS1:; {SET_PS1}"
    )
    assert not res.had_errors, res
    return held


def test_writes_serialise_per_site_by_default(demo_state: SiteState) -> None:
    assert _lock_taken_by_a_write_at_ps1(demo_state, "site") == {"PS1": True, "PS2": False}


def test_writes_can_serialise_per_provider(demo_state: SiteState) -> None:
    assert _lock_taken_by_a_write_at_ps1(demo_state, "provider") == {"PS1": True, "PS2": True}


def test_an_unknown_write_lock_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="'write_lock' must be in"):
        Costs(write_lock="cluster")
