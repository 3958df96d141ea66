"""One runspace pool runs a single write, then a batch, then a read: the templates must not
trip over one another's variables.

A PSRP script Command without UseLocalScope is dot-sourced into the runspace's global scope
(PowerShell's Command.cs: `UseLocalScope => _useLocalScope ?? false`), so a template's typed
parameters ([int]$ProxyServerPort, [bool]$UseProxy, [string]$SiteSystemServerName …) would
stay behind as type-constrained variables, and Set-ProxyBatch.ps1, which assigns arrays to
those names, would fail or coerce them. The emulator keeps such constraints (see
tests/emulator/conformance/scopes.yaml); the SDK runs every template in a local scope. Over
WinRS each step is a new powershell.exe and the template runs as a function (its own scope).
Real pypsrp / pywinrm clients, real HTTP, NTLM with message encryption.
"""

from __future__ import annotations

import pytest

from cmproxy.emulator.api import Emulator
from cmproxy.model import ProxySettings, SupFlags
from cmproxy.plan import DesiredState, ProxyRequest, SupFlagsRequest, plan
from cmproxy.roles import SoftwareUpdatePoint
from cmproxy.session import Session
from cmproxy.writer import WriteResult

from .targets import RECEIVE_TIMEOUT, TRANSPORTS, connection_info

pytestmark = pytest.mark.e2e

DP = "cm-ps1-dp01.contoso.com"
MP = "cm-ps1-mp01.contoso.com"
SUP = "cm-ps1-sup01.contoso.com"


def _apply(session: Session, desired: DesiredState) -> list[WriteResult | BaseException]:
    changes = list(plan(session.read_state(site_codes=["PS1"]), desired))
    assert changes
    return session.apply_many(changes)


def _write_alone(session: Session, desired: DesiredState) -> list[WriteResult | BaseException]:
    """Each change through its own template (`Session.write`; `apply_many` sends even a lone
    write through Set-ProxyBatch.ps1)."""
    changes = list(plan(session.read_state(site_codes=["PS1"]), desired))
    assert changes
    return [session.write(change) for change in changes]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_one_pool_single_writes_then_a_batch_then_a_read(transport: str) -> None:
    with Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu:
        info = connection_info(emu, transport, "ntlm")
        with Session(info) as session:
            # Set-ServerProxy.ps1 ([string]$SiteSystemServerName, [bool]$EnableProxy,
            # [int]$ProxyServerPort …) and Set-SupProxyFlags.ps1 ([bool]$UseProxy …), alone.
            single = _write_alone(
                session,
                DesiredState(
                    proxies=[ProxyRequest(DP, ProxySettings(server="proxy-a.contoso.com", port=81))]
                ),
            )
            single += _write_alone(
                session, DesiredState(sup_flags=[SupFlagsRequest(SUP, True, True)])
            )
            assert all(isinstance(r, WriteResult) and r.matches for r in single), single
            # Set-ProxyBatch.ps1 assigns arrays to those very names.
            wanted = {
                DP: ProxySettings(server="proxy-b.contoso.com", port=8082),
                MP: ProxySettings(server="proxy-b.contoso.com", port=8083),
            }
            batch = _apply(
                session,
                DesiredState(
                    proxies=[ProxyRequest(s, p) for s, p in wanted.items()],
                    sup_flags=[SupFlagsRequest(SUP, False, False)],
                ),
            )
            assert len(batch) == 3
            assert all(isinstance(r, WriteResult) and r.matches for r in batch), batch
            # Get-SiteState.ps1 on the same pool.
            state = session.read_state(site_codes=["PS1"])
        for server, proxy in wanted.items():
            got = state.server(server)
            assert got is not None and got.proxy == proxy, (server, got)
        sup = state.server(SUP)
        assert sup is not None
        role = sup.role(SoftwareUpdatePoint)
        assert isinstance(role, SoftwareUpdatePoint)
        assert SupFlags(role.use_proxy, role.use_proxy_for_adr) == SupFlags(False, False)
        calls = emu.state.call_log()
        if transport == "psrp":
            # One pool: the session's bootstrap (module import) ran once.
            assert len([c for c in calls if c.command == "Import-Module"]) == 1
        written = [c.command for c in calls if c.wrote]
        assert written[:2] == ["Set-CMSiteSystemServer", "Set-CMSoftwareUpdatePoint"], written
        assert sorted(written[2:]) == sorted(
            ["Set-CMSiteSystemServer", "Set-CMSiteSystemServer", "Set-CMSoftwareUpdatePoint"]
        ), written
