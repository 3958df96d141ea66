"""The end-to-end scenarios, written once: run against the emulator (with its state as an
oracle) and, in the live contract suite, against a real site (no oracle: read-back only).

Each scenario returns nothing and asserts through the public SDK only; `oracle` is the
emulator's SiteState when there is one.
"""

from __future__ import annotations

from typing import Any

from cmproxy.model import ProxySettings, SiteType, SupFlags
from cmproxy.plan import DesiredState, ProxyRequest, SupFlagsRequest, plan
from cmproxy.roles import SoftwareUpdatePoint, SupSyncSource
from cmproxy.session import Session
from cmproxy.writer import WriteResult


def list_demo_hierarchy(session: Session) -> None:
    """The demo hierarchy reads whole, typed, in one pipeline."""
    read = session.read()
    state = read.state
    assert not read.issues
    types = {s.code: s.type for s in state.sites}
    assert types == {
        "CAS": SiteType.CAS,
        "PS1": SiteType.PRIMARY,
        "PS2": SiteType.PRIMARY,
        "SS1": SiteType.SECONDARY,
    }
    site_ss1 = state.site("SS1")
    assert site_ss1 is not None and site_ss1.parent == "PS1"
    assert len(state.servers) >= 30
    sup = state.server("cm-sup01.contoso.com")
    assert sup is not None
    assert sup.proxy == ProxySettings(
        server="proxy.contoso.com", port=8080, account="CONTOSO\\svc-proxy"
    )
    role = sup.role(SoftwareUpdatePoint)
    assert isinstance(role, SoftwareUpdatePoint)
    assert (role.use_proxy, role.use_proxy_for_adr) == (True, True)
    assert role.sync_source is SupSyncSource.MICROSOFT_UPDATE
    ps2_sup = state.server("cm-ps2-sup01.contoso.com")
    assert ps2_sup is not None
    ps2_role = ps2_sup.role(SoftwareUpdatePoint)
    assert isinstance(ps2_role, SoftwareUpdatePoint)
    assert ps2_role.sync_source is SupSyncSource.UPSTREAM
    assert ps2_role.upstream_server == "cm-sup01.contoso.com"
    assert state.has_account("CONTOSO\\svc-proxy", "PS1")
    assert not state.server("cm-ps1-dp01.contoso.com").proxy.enabled  # type: ignore[union-attr]


def apply(session: Session, desired: DesiredState) -> list[WriteResult]:
    current = session.read_state()
    results = session.apply_plan(plan(current, desired))
    assert all(r.matches for r in results), [r.describe() for r in results]
    return results


def change_server_proxy(session: Session, server: str, proxy: ProxySettings) -> None:
    """Set a proxy, read back exactly that, then remove it again."""
    results = apply(session, DesiredState(proxies=[ProxyRequest(server, proxy)]))
    assert [r.read_back for r in results][-1] == proxy
    again = session.read_state([server]).server(server)
    assert again is not None and again.proxy == proxy
    # Idempotent: the same desired state plans nothing.
    assert plan(session.read_state(), DesiredState(proxies=[ProxyRequest(server, proxy)])).is_empty


def set_and_clear_sup_flags(session: Session, server: str) -> None:
    """Turn the SUP options on (the server has a proxy), then off; read back each time."""
    for flags in (SupFlags(True, True), SupFlags(False, True), SupFlags(False, False)):
        request = SupFlagsRequest(server, flags.use_proxy, flags.use_proxy_for_adr)
        apply(session, DesiredState(sup_flags=[request]))
        now = session.read_state([server]).server(server)
        assert now is not None
        role = now.role(SoftwareUpdatePoint)
        assert isinstance(role, SoftwareUpdatePoint)
        assert SupFlags(role.use_proxy, role.use_proxy_for_adr) == flags


def create_and_use_account(
    session: Session, server: str, account: str, password: str, proxy_host: str
) -> list[WriteResult]:
    """Create a proxy account (New-CMAccount) and make a server's proxy use it."""
    proxy = ProxySettings(server=proxy_host, port=3128, account=account, password=password)
    results = apply(session, DesiredState(proxies=[ProxyRequest(server, proxy)]))
    assert results[0].change.invocation.command == "New-CMAccount"
    assert results[0].read_back == account
    state = session.read_state()
    assert state.has_account(account, "PS1")
    now = state.server(server)
    assert now is not None and now.proxy.account == account
    return results


def written_calls(oracle: Any) -> list[Any]:
    return [c for c in oracle.call_log() if c.wrote]
