"""The reader: PowerShell records (what Get-SiteState.ps1 emits) mapped to typed site state,
proxy encodings and issues."""

from __future__ import annotations

from cmproxy.model import ProxySettings, SiteType, SupFlags
from cmproxy.reader import proxy_from_record, read_site_state, sup_flags_from_record
from cmproxy.roles import (
    CloudDistributionPoint,
    ConnectedCacheDistributionPoint,
    SoftwareUpdatePoint,
    SupSyncSource,
)

SYSTEM = "SMS Site System"


def role(server: str, name: str, site: str = "PS1", **props: object) -> dict[str, object]:
    return {
        "Kind": "Role",
        "SiteCode": site,
        "ServerName": f"\\\\{server}",
        "RoleName": name,
        **props,
    }


def test_proxy_encodings() -> None:
    assert proxy_from_record({"UseProxy": 0, "ProxyName": "x"}) == ProxySettings.disabled()
    on = {
        "UseProxy": "1",
        "ProxyName": "p.contoso.com",
        "ProxyServerPort": 8080,
        "ProxyUserName": "CONTOSO\\svc",
        "AnonymousProxyAccess": 0,
    }
    assert proxy_from_record(on) == ProxySettings("p.contoso.com", 8080, "CONTOSO\\svc")
    anonymous = {**on, "AnonymousProxyAccess": 1}
    assert proxy_from_record(anonymous).account is None
    assert sup_flags_from_record({"UseProxy": 1, "UseProxyForADR": 0}) == SupFlags(True, False)


def test_read_site_state() -> None:
    records: list[dict[str, object]] = [
        {"Kind": "Site", "SiteCode": "CAS", "Type": 4, "ServerName": "cas.contoso.com"},
        {
            "Kind": "Site",
            "SiteCode": "PS1",
            "Type": 2,
            "ReportingSiteCode": "CAS",
            "ServerName": "ps1.contoso.com",
        },
        {
            "Kind": "Site",
            "SiteCode": "SS1",
            "Type": 1,
            "ReportingSiteCode": "PS1",
            "ServerName": "ss1.contoso.com",
        },
        role(
            "sup.contoso.com",
            SYSTEM,
            UseProxy=1,
            ProxyName="p.contoso.com",
            ProxyServerPort=80,
            AnonymousProxyAccess=1,
        ),
        role("sup.contoso.com", "SMS Software Update Point", UseProxy=1, UseProxyForADR=1),
        role("ss-sup.contoso.com", SYSTEM, site="SS1"),
        role("ss-sup.contoso.com", "SMS Software Update Point", site="SS1"),
        role("cdp.cloudapp.net", SYSTEM),
        role("cdp.cloudapp.net", "SMS Distribution Point", IsCloud=1),
        role("mcc.contoso.com", SYSTEM),
        role("mcc.contoso.com", "SMS Distribution Point", ConnectedCacheEnabled=1),
        role("bad.contoso.com", SYSTEM, UseProxy=1, ProxyName=""),  # enabled without a name
        {
            "Kind": "SupComponent",
            "SiteCode": "PS1",
            "DefaultUseParentWSUS": 1,
            "ParentWSUS": "up.contoso.com",
        },
        {"Kind": "Account", "SiteCode": "PS1", "UserName": "CONTOSO\\svc"},
        {"Kind": "Account", "SiteCode": "PS1", "UserName": ""},  # an empty row is skipped
        {"Kind": "Role", "SiteCode": "PS1", "ServerName": None, "RoleName": None},
    ]
    read = read_site_state(records)
    state = read.state
    assert [s.type for s in state.sites] == [SiteType.CAS, SiteType.PRIMARY, SiteType.SECONDARY]
    sup = state.server("sup.contoso.com")
    assert sup is not None and sup.proxy == ProxySettings("p.contoso.com")
    sup_role = sup.role(SoftwareUpdatePoint)
    assert isinstance(sup_role, SoftwareUpdatePoint)
    assert sup_role.sync_source is SupSyncSource.UPSTREAM
    assert sup_role.upstream_server == "up.contoso.com"
    ss_sup = state.server("ss-sup.contoso.com")
    assert ss_sup is not None
    ss_role = ss_sup.role(SoftwareUpdatePoint)
    assert isinstance(ss_role, SoftwareUpdatePoint)
    assert ss_role.sync_source is SupSyncSource.UPSTREAM
    cdp = state.server("cdp.cloudapp.net")
    assert cdp is not None
    cloud = cdp.role(CloudDistributionPoint)
    assert isinstance(cloud, CloudDistributionPoint)
    assert cloud.managing_site_server == "ps1.contoso.com"
    mcc = state.server("mcc.contoso.com")
    assert mcc is not None and mcc.has_role(ConnectedCacheDistributionPoint)
    assert state.has_account("contoso\\SVC", "PS1")
    assert len(read.issues) == 1 and "bad.contoso.com" in str(read.issues[0])
