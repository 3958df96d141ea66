"""Seed hierarchies for the emulator: `empty` (one primary, no proxies) and `demo` (CAS, two
primaries, a secondary, ~40 site systems carrying every proxy-relevant role).

Props follow the reference (§2.2 site system, §2.3 SUP, §2.4 SUP component). Two emulator
choices, documented in docs/emulator.md: a cloud distribution point is an `SMS Distribution
Point` row whose server is a `*.cloudapp.net` name and whose props carry `IsCloud`=1; a DP with
Microsoft Connected Cache carries `ConnectedCacheEnabled`=1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from cmproxy.emulator.state import (
    SITE_SERVER,
    SITE_SYSTEM,
    SUP_ROLE,
    SYNC_COMPONENT,
    WCM_COMPONENT,
    Prop,
    Site,
    SiteState,
)

DOMAIN = "contoso.com"
#: Seed password of the demo accounts (hashed in the state; here only so tests can log in).
DEMO_ACCOUNT_PASSWORD = "Pa55w.rd-demo"  # noqa: S105 - fake lab secret for the emulator


def site_system_props(
    proxy: str = "",
    port: int = 80,
    account: str = "",
    public_fqdn: str = "",
) -> list[Prop]:
    """Embedded props of an `SMS Site System` row (reference §2.2)."""
    return [
        Prop("Server Remote Public Name", 0, public_fqdn, ""),
        Prop("FDMOperation", 0),
        Prop("UseMachineAccount", 1),
        Prop("UserName", 0, "", ""),
        Prop("UseProxy", 1 if proxy else 0),
        Prop("ProxyName", 0, "", proxy),
        Prop("ProxyServerPort", port),
        Prop("ProxyUserName", 0, "", account),
        Prop("AnonymousProxyAccess", 0 if account else 1),
        Prop("ForestFQDN", 0, DOMAIN, ""),
        Prop("DomainFQDN", 0, DOMAIN, ""),
    ]


def sup_props(use_proxy: bool = False, use_proxy_for_adr: bool = False) -> list[Prop]:
    """Embedded props of an `SMS Software Update Point` row (reference §2.3, legacy included)."""
    return [
        Prop("UseProxy", int(use_proxy)),
        Prop("UseProxyForADR", int(use_proxy_for_adr)),
        Prop("AllowProxyTraffic", 0),
        Prop("WSUSAccessAccount", 0, "", ""),
        Prop("WSUSIISPort", 8530),
        Prop("WSUSIISSSLPort", 8531),
        Prop("SSLWSUS", 0),
        Prop("IsIntranet", 1),
        Prop("IsINF", 0),
        Prop("Enabled", 1),
        Prop("DBServerName", 0, "", ""),
        Prop("NLBVIP", 0, "", ""),
        Prop("PublicVIP", 0, "", ""),
        Prop("UseParentWSUS", 0),
        Prop("ProxyName", 0, "", ""),
        Prop("ProxyServerPort", 80),
        Prop("AnonymousProxyAccess", 1),
    ]


def dp_props(cloud: bool = False, connected_cache: bool = False) -> list[Prop]:
    return [
        Prop("IsCloud", int(cloud)),
        Prop("ConnectedCacheEnabled", int(connected_cache)),
        Prop("IsPXE", 0),
        Prop("AllowProxyTraffic", 0),
        Prop("BITS download", 1),
    ]


def wcm_props(upstream: str = "", mode: int = 0) -> list[Prop]:
    """SMS_WSUS_CONFIGURATION_MANAGER props (reference §2.4). mode: DefaultUseParentWSUS."""
    return [
        Prop("Call WSUS Cleanup", 1),
        Prop("ClientReportingLevel", 2),
        Prop("DefaultWSUS", 0, "", ""),
        Prop("DefaultUseParentWSUS", mode),
        Prop("ParentWSUS", 0, "", upstream),
        Prop("SupportedTitleLanguages", 0, "", "en"),
        Prop("SupportedUpdateLanguages", 0, "", "en,fr"),
        Prop("Sync Supersedence Age For Feature", 3),
        Prop("Sync Supersedence Age For NonFeature", 3),
        Prop("Sync Supersedence Mode For Feature", 0),
        Prop("Sync Supersedence Mode For NonFeature", 0),
    ]


def sync_props() -> list[Prop]:
    return [
        Prop("Sync ExpressFiles", 0),
        Prop("Sync Schedule", 0, "0001200000100038", ""),
        Prop("EnableThirdPartyUpdates", 0),
        Prop("MaxInstallTime-ServicePack", 60),
        Prop("MaxInstallTime-Windows", 120),
    ]


def add_server(  # noqa: PLR0913 - a seed row, declared: one keyword per column
    state: SiteState,
    site: str,
    server: str,
    roles: Sequence[tuple[str, Sequence[Prop]]] = (),
    *,
    proxy: str = "",
    port: int = 80,
    account: str = "",
) -> None:
    """A site system: the `SMS Site System` row plus its other roles."""
    state.put_sysres(site, server, SITE_SYSTEM, site_system_props(proxy, port, account))
    for role, props in roles:
        state.put_sysres(site, server, role, list(props))


def _fqdn(host: str) -> str:
    return host if "." in host else f"{host}.{DOMAIN}"


def _add_site(state: SiteState, site: Site, *, provider_on_server: bool = True) -> None:
    state.add_site(site)
    roles: list[tuple[str, Sequence[Prop]]] = [
        (SITE_SERVER, []),
        ("SMS Component Server", []),
    ]
    if provider_on_server:
        roles.append(("SMS Provider", []))
    add_server(state, site.code, site.server, roles)
    if site.type != "secondary":
        state.put_component(site.code, WCM_COMPONENT, site.server, wcm_props())
        state.put_component(site.code, SYNC_COMPONENT, site.server, sync_props())


def seed_empty(state: SiteState) -> None:
    """One primary site `PS1` with its site server; no proxies, no accounts."""
    with state.transaction():
        server = _fqdn("cm-ps1")
        _add_site(state, Site("PS1", "Primary Site 1", "primary", "", server, server))
        state.put_log(server, "WCM.log", "")
    state.set_meta("seed", "empty")


_RULEENGINE_LOG = """\
<![LOG[Evaluating ADR: Patch Tuesday - Workstations]LOG]!><time="02:00:03.117+480" date="{d}" \
component="SMS_RULE_ENGINE" context="" type="1" thread="4412" file="ruleengine.cpp:1504">
<![LOG[Downloading content for ContentID = 16917351, FileName = windows10.0-kb5034441-x64.cab]\
LOG]!><time="02:00:41.532+480" date="{d}" component="SMS_RULE_ENGINE" context="" type="1" \
thread="4412" file="ruleengine.cpp:2173">
<![LOG[Failed to download the update from internet. Error = 12007.]LOG]!><time="02:01:02.610+480" \
date="{d}" component="SMS_RULE_ENGINE" context="" type="3" thread="4412" \
file="ruleengine.cpp:2208">
<![LOG[Failed to download content for ContentID = 16917351, Error = 12007]LOG]!>\
<time="02:01:02.611+480" date="{d}" component="SMS_RULE_ENGINE" context="" type="3" \
thread="4412" file="ruleengine.cpp:2230">
<![LOG[Downloading content for ContentID = 16917352, FileName = windows10.0-kb5034763-x64.cab]\
LOG]!><time="02:01:03.004+480" date="{d}" component="SMS_RULE_ENGINE" context="" type="1" \
thread="4412" file="ruleengine.cpp:2173">
<![LOG[Failed to download the update from internet. Error = 12007.]LOG]!><time="02:01:23.880+480" \
date="{d}" component="SMS_RULE_ENGINE" context="" type="3" thread="4412" \
file="ruleengine.cpp:2208">
<![LOG[Rule Patch Tuesday - Workstations: 2 content download(s) failed.]LOG]!>\
<time="02:01:24.100+480" date="{d}" component="SMS_RULE_ENGINE" context="" type="2" \
thread="4412" file="ruleengine.cpp:1620">
"""


#: The demo's proxy and the accounts its roles connect through.
_DEMO_PROXY = "proxy.contoso.com"
_DEMO_ACCOUNT = "CONTOSO\\svc-proxy"
_DEMO_DMZ_ACCOUNT = "CONTOSO\\svc-proxy-dmz"


def seed_demo(state: SiteState) -> None:
    """CAS `CAS`; primaries `PS1`, `PS2`; secondary `SS1` under PS1; ~40 site systems."""
    proxy, acct, acct2, f = _DEMO_PROXY, _DEMO_ACCOUNT, _DEMO_DMZ_ACCOUNT, _fqdn
    with state.transaction():
        cas_server = f("cm-cas01")
        cas = Site("CAS", "Contoso Central Administration Site", "CAS", "", cas_server, cas_server)
        _add_site(state, cas)
        ps1 = Site("PS1", "Contoso Primary Site 1", "primary", "CAS", f("cm-ps1"), f("cm-ps1"))
        _add_site(state, ps1)
        ps2 = Site("PS2", "Contoso Primary Site 2", "primary", "CAS", f("cm-ps2"), f("cm-ps2"))
        _add_site(state, ps2)
        # A secondary site has no SMS Provider of its own.
        ss1 = Site("SS1", "Contoso Secondary Site 1", "secondary", "PS1", f("cm-ss1"), "")
        _add_site(state, ss1, provider_on_server=False)

        for code in ("CAS", "PS1", "PS2"):
            state.add_account(code, acct, DEMO_ACCOUNT_PASSWORD)
            state.add_account(code, "CONTOSO\\svc-cminstall", DEMO_ACCOUNT_PASSWORD)
        state.add_account("PS1", acct2, DEMO_ACCOUNT_PASSWORD)

        # The site server of PS1 manages the cloud DPs, so it carries the proxy (R5).
        state.set_props("PS1", ps1.server, SITE_SYSTEM, site_system_props(proxy, 8080, acct))

        _demo_cas(state)
        _demo_ps1(state)
        _demo_ps2(state, ps2)
        _demo_ss1(state, ss1)

        # --- logs on site servers ---
        state.put_log(ps1.server, "ruleengine.log", _RULEENGINE_LOG.format(d="02-13-2024"))
        for s in (cas.server, ps1.server, ps2.server):
            state.put_log(s, "WCM.log", "")
    state.set_meta("seed", "demo")


def _demo_cas(state: SiteState) -> None:
    """The CAS's site systems: the top-level SUP, the service connection and AI points."""
    proxy, acct, f = _DEMO_PROXY, _DEMO_ACCOUNT, _fqdn
    add_server(state, "CAS", f("cm-cas-sql01"), [("SMS SQL Server", [])])
    add_server(
        state,
        "CAS",
        f("cm-sup01"),
        [(SUP_ROLE, sup_props(True, True))],
        proxy=proxy,
        port=8080,
        account=acct,
    )
    add_server(state, "CAS", f("cm-scp01"), [("SMS Dmp Connector", [])], proxy=proxy, port=8080)
    add_server(
        state, "CAS", f("cm-ai01"), [("AI Update Service Point", [])], proxy=proxy, account=acct
    )
    add_server(state, "CAS", f("cm-cas-rp01"), [("SMS SRS Reporting Point", [])])


def _demo_ps1(state: SiteState) -> None:
    """PS1's site systems: DPs (one behind the DMZ proxy), SUPs, CMG connector, cloud DPs."""
    proxy, acct2, f = _DEMO_PROXY, _DEMO_DMZ_ACCOUNT, _fqdn
    add_server(state, "PS1", f("cm-ps1-prov01"), [("SMS Provider", [])])
    add_server(state, "PS1", f("cm-ps1-sql01"), [("SMS SQL Server", [])])
    for i in (1, 2):
        add_server(state, "PS1", f(f"cm-ps1-mp0{i}"), [("SMS Management Point", [])])
    for i in range(1, 6):
        roles: list[tuple[str, Sequence[Prop]]] = [
            ("SMS Distribution Point", dp_props(connected_cache=i in (3, 4)))
        ]
        p = "proxy-dmz.contoso.com" if i == 5 else ""
        add_server(state, "PS1", f(f"cm-ps1-dp0{i}"), roles, proxy=p, port=3128)
    add_server(
        state,
        "PS1",
        f("cm-ps1-sup01"),
        [(SUP_ROLE, sup_props(True, False))],
        proxy=proxy,
        port=8080,
    )
    # Inconsistent on purpose: SUP flags on, server without proxy (issue #33 state).
    add_server(state, "PS1", f("cm-ps1-sup02"), [(SUP_ROLE, sup_props(True, True))])
    add_server(
        state,
        "PS1",
        f("cm-cmgcp01"),
        [("SMS Cloud Proxy Connector", [])],
        proxy=proxy,
        port=8080,
        account=acct2,
    )
    add_server(
        state,
        "PS1",
        f("cm-exch01"),
        [("SMS Exchange Server Connector", [])],
        proxy=proxy,
        port=8080,
    )
    for name in ("contosocdp01.cloudapp.net", "contosocdp02.cloudapp.net"):
        add_server(state, "PS1", name, [("SMS Distribution Point", dp_props(cloud=True))])
    add_server(state, "PS1", f("cm-ps1-fsp01"), [("SMS Fallback Status Point", [])])


def _demo_ps2(state: SiteState, ps2: Site) -> None:
    """PS2's site systems, its SUPs syncing from the CAS's top-level SUP."""
    f = _fqdn
    add_server(state, "PS2", f("cm-ps2-sql01"), [("SMS SQL Server", [])])
    add_server(state, "PS2", f("cm-ps2-mp01"), [("SMS Management Point", [])])
    for i in range(1, 7):
        roles = [("SMS Distribution Point", dp_props(connected_cache=i == 2))]
        add_server(state, "PS2", f(f"cm-ps2-dp0{i}"), roles)
    add_server(state, "PS2", f("cm-ps2-sup01"), [(SUP_ROLE, sup_props())])
    add_server(state, "PS2", f("cm-ps2-sup02"), [(SUP_ROLE, sup_props())])
    add_server(state, "PS2", f("cm-ps2-cmgcp01"), [("SMS Cloud Proxy Connector", [])])
    add_server(
        state,
        "PS2",
        "contosocdp03.cloudapp.net",
        [("SMS Distribution Point", dp_props(cloud=True))],
    )
    # PS2's SUPs sync from the CAS top-level SUP (DefaultUseParentWSUS = 1).
    state.put_component("PS2", WCM_COMPONENT, ps2.server, wcm_props(f("cm-sup01"), 1))


def _demo_ss1(state: SiteState, ss1: Site) -> None:
    """The secondary site SS1: MP and DP on its site server, a SUP and a DP."""
    proxy, f = _DEMO_PROXY, _fqdn
    for role in ("SMS Management Point", "SMS Distribution Point"):
        props = dp_props() if role == "SMS Distribution Point" else []
        state.put_sysres("SS1", ss1.server, role, props)
    add_server(
        state,
        "SS1",
        f("cm-ss1-sup01"),
        [(SUP_ROLE, sup_props(True, True))],
        proxy=proxy,
        port=8080,
    )
    add_server(state, "SS1", f("cm-ss1-dp01"), [("SMS Distribution Point", dp_props())])
    state.put_component("SS1", WCM_COMPONENT, ss1.server, wcm_props(f("cm-sup01"), 1))


SEEDS: dict[str, Callable[[SiteState], None]] = {"empty": seed_empty, "demo": seed_demo}


def apply_seed(state: SiteState, name: str) -> None:
    """Seed a fresh state; a state that already holds sites is left as it is (restart)."""
    if name not in SEEDS:
        raise ValueError(f"unknown seed {name!r}; known: {', '.join(SEEDS)}")
    if state.is_empty():
        SEEDS[name](state)
