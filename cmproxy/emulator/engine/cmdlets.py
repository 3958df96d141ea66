"""The ConfigMgr cmdlets in scope, with the parameter sets of reference §3 / §5.6.

Behaviour the reference marks [UNCONFIRMED] is read from `settings.behaviour`. The product does
not enforce cmproxy's rules: e.g. `Set-CMSoftwareUpdatePoint -UseProxy $true` on a server
without a proxy is accepted and WSUS fails later (a WSUSCtrl.log line, reference §7 issue #33).
Error ids use the real class scheme `Microsoft.ConfigurationManagement.Cmdlets.HS.Commands.
<Verb><Noun without CM>Command` (seen for Get-CMSite in Microsoft's docs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import CommandDef, ParamDef
from cmproxy.emulator.engine.language.errors import PSError
from cmproxy.emulator.engine.language.values import PSObj
from cmproxy.emulator.seeds import site_system_props, sup_props
from cmproxy.emulator.state import (
    SITE_SYSTEM,
    SUP_ROLE,
    SYNC_COMPONENT,
    WCM_COMPONENT,
    Prop,
    Site,
    SysRes,
    item_name,
    nal_path,
    nocase,
)

if TYPE_CHECKING:
    from cmproxy.emulator.engine.runspace import CallContext

P = ParamDef
NS = "Microsoft.ConfigurationManagement.Cmdlets.HS.Commands."
RESULT_TYPES = [
    "Microsoft.ConfigurationManagement.ManagementProvider.WqlQueryEngine.WqlResultObject",
    "Microsoft.ConfigurationManagement.ManagementProvider.IResultObject",
    "System.Object",
]
SYSRES = "IResultObject#SMS_SCI_SysResUse"
SITE_SYSTEM_TYPE = f"{SYSRES};RoleName={SITE_SYSTEM}"
CONNECTION_TYPES = ("Intranet", "Internet", "InternetAndIntranet")
SYNC_ACTIONS = {
    "synchronizefrommicrosoftupdate": 0,
    "synchronizefromanupstreamdatasourcelocation": 1,
    "donotsynchronizefrommicrosoftupdateorupstreamdatasource": 2,
}


def _cls(name: str) -> str:
    verb, noun = name.split("-", 1)
    return NS + verb + noun.removeprefix("CM") + "Command"


# ---- objects --------------------------------------------------------------------------------


def _mof(cls: str, props: dict[str, Any]) -> str:
    lines = [f"instance of {cls}", "{"]
    for k, v in props.items():
        if isinstance(v, list):
            continue
        shown = (
            f'"{v}"'
            if isinstance(v, str)
            else conv.to_str(v).lower()
            if isinstance(v, bool)
            else conv.to_str(v)
        )
        lines.append(f"\t{k} = {shown};")
    lines.append("};")
    return "\n".join(lines) + "\n"


def result_obj(wmi_class: str, props: dict[str, Any]) -> PSObj:
    """An IResultObject: live, so it serialises at depth 1 (nested parts as their text)."""
    return PSObj(
        [f"IResultObject#{wmi_class}", *RESULT_TYPES],
        props,
        live=True,
        string=lambda o: _mof(wmi_class, o.properties),
    )


def embedded(p: Prop) -> PSObj:
    return result_obj(
        "SMS_EmbeddedProperty",
        {"PropertyName": p.name, "Value": p.value, "Value1": p.value1, "Value2": p.value2},
    )


def _type_code(site: Site | None, server: str) -> int:
    if site is not None and site.server.lower() == server.lower():
        return site.type_code
    return 8


def sysres_obj(ctx: CallContext, row: SysRes) -> PSObj:
    return _sysres_obj(row, ctx.state.site(row.site), ctx.state.role_count(row.site, row.server))


def sysres_objs(ctx: CallContext, rows: Sequence[SysRes]) -> list[PSObj]:
    """Many rows: the sites and the role counts read once for all (a listing of a big site
    would otherwise query both per row)."""
    if len(rows) < 2:
        return [sysres_obj(ctx, r) for r in rows]
    sites = {s.code.upper(): s for s in ctx.state.sites()}
    counts = ctx.state.role_counts({r.site for r in rows})
    return [
        _sysres_obj(r, sites.get(r.site.upper()), counts[nocase(r.site), nocase(r.server)])
        for r in rows
    ]


def _sysres_obj(row: SysRes, site: Site | None, role_count: int) -> PSObj:
    return result_obj(
        "SMS_SCI_SysResUse",
        {
            "FileType": 2,
            "ItemName": item_name(row.server, row.site, row.role),
            "ItemType": "System Resource Usage",
            "NALPath": nal_path(row.server, row.site),
            "NALType": "Windows NT Server",
            "NetworkOSPath": f"\\\\{row.server}",
            "PropLists": [],
            "Props": [embedded(p) for p in row.props],
            "RoleCount": role_count,
            "RoleName": row.role,
            "ServiceWindows": [],
            "SiteCode": row.site,
            "SslState": row.ssl_state,
            "Type": _type_code(site, row.server),
        },
    )


def site_obj(s: Site, cim: bool = False) -> PSObj:
    props = {
        "BuildNumber": s.build,
        "Features": "0" * 64,
        "InstallDir": "C:\\Program Files\\Microsoft Configuration Manager",
        "Mode": 0,
        "ReportingSiteCode": s.parent,
        "RequestedStatus": 110,
        "ServerName": s.server,
        "SiteCode": s.code,
        "SiteName": s.name,
        "Status": 1,
        "TimeZoneInfo": "000001E0 0000 000B 0000 0001 0002 0000 0000 0000 00000000 0000 0003",
        "Type": s.type_code,
        "Version": s.version,
    }
    if cim:
        return PSObj(
            [
                f"Microsoft.Management.Infrastructure.CimInstance#root/sms/site_{s.code}/SMS_Site",
                "Microsoft.Management.Infrastructure.CimInstance",
                "System.Object",
            ],
            props,
        )
    return result_obj("SMS_Site", props)


def account_obj(site: str, username: str) -> PSObj:
    return result_obj(
        "SMS_SCI_Reserved",
        {
            "AccountUsage": [],
            "Availability": 0,
            "FileType": 2,
            "ItemName": f"{username}|{site}",
            "ItemType": "User",
            "PropLists": [],
            "Props": [],
            "SiteCode": site,
            "UserName": username,
        },
    )


def component_obj(site: str, name: str, server: str, props: tuple[Prop, ...]) -> PSObj:
    return result_obj(
        "SMS_SCI_Component",
        {
            "ComponentName": name,
            "FileType": 2,
            "Flag": 6,
            "ItemName": f"{name}|{server.upper()}",
            "ItemType": "Component",
            "Name": server.upper(),
            "PropLists": [],
            "Props": [embedded(p) for p in props],
            "SiteCode": site,
        },
    )


# ---- helpers --------------------------------------------------------------------------------


def _sites_for(ctx: CallContext, a: dict[str, Any]) -> list[str] | None:
    """Site filter: -AllSite → None (all); -SiteCode; else the current drive's site."""
    if a.get("AllSite"):
        return None
    if a.get("SiteCode"):
        return [a["SiteCode"]]
    return [ctx.site_from_location()]


def _name_ok(value: str, pattern: str | None, a: dict[str, Any]) -> bool:
    if pattern is None:
        return True
    if a.get("DisableWildcardHandling"):
        return value.lower() == pattern.lower()
    return conv.name_matches(value, pattern)


def _server_of(o: PSObj) -> tuple[str, str]:
    path = conv.to_str(o.properties.get("NetworkOSPath", ""))
    return conv.to_str(o.properties.get("SiteCode", "")), path.lstrip("\\")


#: `_rows` asks SQLite (indexed) for an exact server name and a single site.
INDEXED_ROWS = True


def _rows(ctx: CallContext, a: dict[str, Any], role: str | None) -> list[SysRes]:
    sites = _sites_for(ctx, a)
    name = a.get("SiteSystemServerName")
    # An exact, ASCII name (SQLite's NOCASE folds ASCII only) and one site are filtered in SQL;
    # the Python filter below still runs, so the rows and their order are the same as before.
    exact = (
        isinstance(name, str)
        and name.isascii()
        and (bool(a.get("DisableWildcardHandling")) or not conv.has_wildcard(name))
    )
    one_site = sites[0] if sites is not None and len(sites) == 1 else None
    if isinstance(one_site, str) and not one_site.isascii():
        one_site = None
    out = []
    for r in ctx.state.sysres(site=one_site, server=name if exact else None, role=role):
        if sites is not None and r.site.upper() not in (s.upper() for s in sites):
            continue
        if not _name_ok(r.server, name, a):
            continue
        out.append(r)
    return out


def _not_found(ctx: CallContext, target: Any) -> None:
    ctx.write_error(
        ctx.error(
            "No object corresponds to the specified parameters.",
            "ItemNotFound",
            category="ObjectNotFound",
            exception="System.Management.Automation.ItemNotFoundException",
            target=target,
        )
    )


def _target_row(ctx: CallContext, a: dict[str, Any], role: str) -> SysRes | None:
    """The row a Set cmdlet works on: from -InputObject or -SiteSystemServerName/-SiteCode."""
    obj = a.get("InputObject")
    if obj is not None:
        site, server = _server_of(obj)
    else:
        site = a.get("SiteCode") or ctx.site_from_location()
        server = a["SiteSystemServerName"]
        if conv.has_wildcard(server) and not a.get("DisableWildcardHandling"):
            matches = [
                r for r in ctx.state.sysres(site=site, role=role) if conv.like(r.server, server)
            ]
            return matches[0] if len(matches) == 1 else None
    return ctx.state.get_sysres(site, server, role)


def _whatif(ctx: CallContext, target: str, action: str = "Set") -> bool:
    if ctx.whatif:
        ctx.rs.current.information.append(
            f'What if: Performing the operation "{action}" on target "{target}".'
        )
        return True
    return False


def _seen(ctx: CallContext, rows: list[SysRes]) -> list[SysRes]:
    """Rows as reading cmdlets see them: with replication lag, a write not yet visible is not
    shown ([UNCONFIRMED], `settings.Replication`)."""
    return ctx.engine.replica.views(rows)


def _replicate(ctx: CallContext, before: SysRes) -> None:
    """A Set wrote `before`'s row: with replication lag at its site, reads see it later."""
    lag = ctx.engine.settings.replication.lag_for(before.site)
    after = ctx.state.get_sysres(before.site, before.server, before.role)
    if after is not None:
        ctx.engine.replica.written(before, after, lag)


def _cost_get(ctx: CallContext) -> None:
    return None


# ---- Get-CMSite / Get-CMSiteRole / Get-CMSiteSystemServer -----------------------------------


def get_site(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    out = []
    for s in ctx.state.sites():
        if a.get("SiteCode") and not _name_ok(s.code, a["SiteCode"], a):
            continue
        if a.get("Name") and not _name_ok(s.name, a["Name"], a):
            continue
        out.append(site_obj(s))
    return out


def get_site_role(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    if obj is not None:
        site, server = _server_of(obj)
        rows = ctx.state.sysres(site=None if a.get("AllSite") else site, server=server)
    else:
        rows = _rows(ctx, a, None)
    role = a.get("RoleName")
    return sysres_objs(ctx, _seen(ctx, [r for r in rows if _name_ok(r.role, role, a)]))


def get_site_system_server(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    if obj is not None:
        site, server = _server_of(obj)
        row = ctx.state.get_sysres(site, server, SITE_SYSTEM)
        return sysres_objs(ctx, _seen(ctx, [row] if row is not None else []))
    return sysres_objs(ctx, _seen(ctx, _rows(ctx, a, SITE_SYSTEM)))


# ---- proxy semantics (reference §8.3) -------------------------------------------------------


def proxy_updates(ctx: CallContext, a: dict[str, Any], cur: dict[str, Prop]) -> list[Prop]:
    """Props written by -EnableProxy/-ProxyServerName/-ProxyServerPort/-ProxyAccessAccount."""
    b = ctx.engine.settings.behaviour
    explicit = ctx.bound.explicit
    upd: dict[str, Prop] = {}

    def cur_v2(name: str) -> str:
        p = cur.get(name)
        return p.value2 if p is not None else ""

    def account(obj: Any) -> None:
        if obj is None:
            if b.null_proxy_account_clears:
                upd["ProxyUserName"] = Prop("ProxyUserName", 0, "", "")
                upd["AnonymousProxyAccess"] = Prop("AnonymousProxyAccess", 1)
            return
        user = conv.to_str(obj.properties.get("UserName", ""))
        upd["ProxyUserName"] = Prop("ProxyUserName", 0, "", user)
        upd["AnonymousProxyAccess"] = Prop("AnonymousProxyAccess", 0)

    enable = a.get("EnableProxy") if "EnableProxy" in explicit else None
    if enable is True:
        upd["UseProxy"] = Prop("UseProxy", 1)
        if "ProxyServerName" in explicit:
            upd["ProxyName"] = Prop("ProxyName", 0, "", a["ProxyServerName"])
        if "ProxyServerPort" in explicit:
            upd["ProxyServerPort"] = Prop("ProxyServerPort", a["ProxyServerPort"])
        elif b.enable_without_port_resets_to_80:
            upd["ProxyServerPort"] = Prop("ProxyServerPort", 80)
        if "ProxyAccessAccount" in explicit:
            account(a["ProxyAccessAccount"])
        elif b.enable_without_account_resets_to_system:
            upd["ProxyUserName"] = Prop("ProxyUserName", 0, "", "")
            upd["AnonymousProxyAccess"] = Prop("AnonymousProxyAccess", 1)
        return list(upd.values())
    if enable is False:
        upd["UseProxy"] = Prop("UseProxy", 0)
        if b.disable_clears_proxy_fields:
            upd["ProxyName"] = Prop("ProxyName", 0, "", "")
            upd["ProxyServerPort"] = Prop("ProxyServerPort", 80)
            upd["ProxyUserName"] = Prop("ProxyUserName", 0, "", "")
            upd["AnonymousProxyAccess"] = Prop("AnonymousProxyAccess", 1)
    # Proxy fields given without -EnableProxy $true: written as given ([UNCONFIRMED]).
    if "ProxyServerName" in explicit:
        upd["ProxyName"] = Prop("ProxyName", 0, "", a["ProxyServerName"])
    if "ProxyServerPort" in explicit:
        upd["ProxyServerPort"] = Prop("ProxyServerPort", a["ProxyServerPort"])
    if "ProxyAccessAccount" in explicit:
        account(a["ProxyAccessAccount"])
    del cur_v2
    return list(upd.values())


def _server_updates(ctx: CallContext, a: dict[str, Any]) -> list[Prop]:
    explicit = ctx.bound.explicit
    upd: list[Prop] = []
    if "PublicFqdn" in explicit:
        upd.append(Prop("Server Remote Public Name", 0, a["PublicFqdn"] or "", ""))
    if "FdmOperation" in explicit:
        upd.append(Prop("FDMOperation", int(a["FdmOperation"])))
    if a.get("UseSiteServerAccount"):
        upd += [Prop("UseMachineAccount", 1), Prop("UserName", 0, "", "")]
    elif "AccountName" in explicit and a["AccountName"] is not None:
        upd += [Prop("UseMachineAccount", 0), Prop("UserName", 0, "", a["AccountName"])]
    return upd


def set_site_system_server(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    row = _target_row(ctx, a, SITE_SYSTEM)
    if row is None:
        _not_found(ctx, a.get("SiteSystemServerName") or a.get("InputObject"))
        return None
    cur = {p.name: p for p in row.props}
    upd = _server_updates(ctx, a) + proxy_updates(ctx, a, cur)
    if not _whatif(ctx, row.server):
        ctx.write_verbose(f"Updating site system server {row.server} in site {row.site}.")
        ctx.commit(row.site, lambda: ctx.state.set_props(row.site, row.server, SITE_SYSTEM, upd))
        _replicate(ctx, row)
    if a.get("PassThru"):
        new = ctx.state.get_sysres(row.site, row.server, SITE_SYSTEM)
        return sysres_obj(ctx, new) if new is not None else None
    return None


def new_site_system_server(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:

    site = a.get("SiteCode") or ctx.site_from_location()
    server = a["SiteSystemServerName"]
    if ctx.state.site(site) is None:
        _not_found(ctx, site)
        return None
    if ctx.state.get_sysres(site, server, SITE_SYSTEM) is not None:
        # [emulator] message: the real text for this case was not found.
        raise PSError(
            ctx.error(
                f"The site system server '{server}' already exists in site '{site}'.",
                "ItemAlreadyExists",
                category="ResourceExists",
                exception="System.InvalidOperationException",
                target=server,
            )
        )
    base = site_system_props()
    cur = {p.name: p for p in base}
    upd = _server_updates(ctx, a) + proxy_updates(ctx, a, cur)
    if _whatif(ctx, server, "New"):
        return None

    def write() -> None:
        ctx.state.put_sysres(site, server, SITE_SYSTEM, base)
        ctx.state.set_props(site, server, SITE_SYSTEM, upd)

    ctx.commit(site, write)
    row = ctx.state.get_sysres(site, server, SITE_SYSTEM)
    return sysres_obj(ctx, row) if row is not None else None


# ---- software update point ------------------------------------------------------------------


def get_sup(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    if obj is not None:
        site, server = _server_of(obj)
        row = ctx.state.get_sysres(site, server, SUP_ROLE)
        return sysres_objs(ctx, _seen(ctx, [row] if row is not None else []))
    return sysres_objs(ctx, _seen(ctx, _rows(ctx, a, SUP_ROLE)))


def _sup_updates(ctx: CallContext, a: dict[str, Any], add: bool) -> list[Prop]:
    ex = ctx.bound.explicit
    upd: list[Prop] = []

    def flag(param: str, prop: str) -> None:
        if param in ex and a[param] is not None:
            upd.append(Prop(prop, int(bool(a[param]))))

    flag("UseProxy", "UseProxy")
    flag("UseProxyForAutoDeploymentRule", "UseProxyForADR")
    flag("EnableCloudGateway", "AllowProxyTraffic")
    flag("EnableSsl", "SSLWSUS")
    flag("WsusSsl", "SSLWSUS")
    for param, prop in (
        ("HttpPort", "WSUSIISPort"),
        ("HttpsPort", "WSUSIISSSLPort"),
        ("WsusIisPort", "WSUSIISPort"),
        ("WsusIisSslPort", "WSUSIISSSLPort"),
    ):
        if param in ex and a[param] is not None:
            upd.append(Prop(prop, a[param]))
    if "ClientConnectionType" in ex and a["ClientConnectionType"] is not None:
        t = conv.to_str(a["ClientConnectionType"]).lower()
        upd.append(Prop("IsIntranet", int(t in ("intranet", "internetandintranet"))))
        upd.append(Prop("IsINF", int(t in ("internet", "internetandintranet"))))
    if a.get("AnonymousWsusAccess"):
        upd.append(Prop("WSUSAccessAccount", 0, "", ""))
    acct = a.get("WsusAccessAccount") if not add else a.get("ConnectionAccountUserName")
    if acct:
        upd.append(Prop("WSUSAccessAccount", 0, "", acct))
    for param, prop in (("NlbVirtualIP", "NLBVIP"), ("PublicVirtualIP", "PublicVIP")):
        if param in ex:
            upd.append(Prop(prop, 0, "", a[param] or ""))
    return upd


def _check_sup_proxy(ctx: CallContext, site: str, server: str, upd: list[Prop]) -> None:
    """Issue #33: SUP proxy flags on a server without a proxy. Accepted; WSUS fails later."""
    wants = any(p.name in ("UseProxy", "UseProxyForADR") and p.value for p in upd)
    if not wants:
        return
    sysprops = ctx.state.server_props(site, server, SITE_SYSTEM)
    use = sysprops.get("UseProxy")
    name = sysprops.get("ProxyName")
    if use is not None and use.value and name is not None and name.value2:
        return
    if not ctx.engine.settings.behaviour.sup_flags_without_server_proxy_accepted:
        # [emulator] text: only used when the setting says the product refuses it.
        raise PSError(
            ctx.error(
                "A proxy server must be configured on the site system server before the "
                "software update point can use it.",
                "InvalidOperation",
                category="InvalidOperation",
                exception="System.InvalidOperationException",
                target=server,
            )
        )
    stamp = time.strftime('%H:%M:%S.000+000" date="%m-%d-%Y')
    line = (
        "<![LOG[ERROR: Failed to set Proxy settings on WSUS Server. Error:"
        "Microsoft.UpdateServices.Administration.WsusInvalidDataException: The address of the "
        'proxy server cannot be empty]LOG]!><time="' + stamp + '" component="SMS_WSUS_CONTROL_'
        'MANAGER" context="" type="3" thread="3120" file="wsusctrl.cpp:1432">'
    )
    ctx.state.append_log(server, "WSUSCtrl.log", line)


def set_sup(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    row = _target_row(ctx, a, SUP_ROLE)
    if row is None:
        _not_found(ctx, a.get("SiteSystemServerName") or a.get("InputObject"))
        return None
    upd = _sup_updates(ctx, a, add=False)
    if not _whatif(ctx, row.server):

        def write() -> None:
            _check_sup_proxy(ctx, row.site, row.server, upd)
            ctx.state.set_props(row.site, row.server, SUP_ROLE, upd)

        ctx.commit(row.site, write)
        _replicate(ctx, row)
    if a.get("PassThru"):
        new = ctx.state.get_sysres(row.site, row.server, SUP_ROLE)
        return sysres_obj(ctx, new) if new is not None else None
    return None


def add_sup(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:

    obj = a.get("InputObject")
    if obj is not None:
        site, server = _server_of(obj)
    else:
        site = a.get("SiteCode") or ctx.site_from_location()
        server = a["SiteSystemServerName"]
    if ctx.state.get_sysres(site, server, SITE_SYSTEM) is None:
        _not_found(ctx, server)
        return None
    if ctx.state.get_sysres(site, server, SUP_ROLE) is not None:
        raise PSError(
            ctx.error(
                f"The software update point role already exists on '{server}'.",
                "ItemAlreadyExists",
                category="ResourceExists",
                exception="System.InvalidOperationException",
                target=server,
            )
        )
    upd = _sup_updates(ctx, a, add=True)
    if _whatif(ctx, server, "Add"):
        return None

    def write() -> None:
        _check_sup_proxy(ctx, site, server, upd)
        ctx.state.put_sysres(site, server, SUP_ROLE, sup_props())
        ctx.state.set_props(site, server, SUP_ROLE, upd)

    ctx.commit(site, write)
    row = ctx.state.get_sysres(site, server, SUP_ROLE)
    return sysres_obj(ctx, row) if row is not None else None


# ---- SUP component --------------------------------------------------------------------------


def get_sup_component(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    site = a.get("SiteCode") or ctx.site_from_location()
    name = SYNC_COMPONENT if a.get("WsusSyncManager") else WCM_COMPONENT
    comp = ctx.state.component(site, name)
    if comp is None:
        return None
    server, props = comp
    if a.get("SiteSystemServerName") and not _name_ok(server, a["SiteSystemServerName"], a):
        return None
    return component_obj(site, name, server, props)


def set_sup_component(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    ex = ctx.bound.explicit
    obj = a.get("InputObject")
    if obj is not None:
        site = conv.to_str(obj.properties.get("SiteCode"))
    elif a.get("Name"):
        rows = [r for r in ctx.state.sysres(role=SUP_ROLE) if _name_ok(r.server, a["Name"], a)]
        site = rows[0].site if rows else ""
    else:
        site = a.get("SiteCode") or ctx.site_from_location()
    if ctx.state.component(site, WCM_COMPONENT) is None:
        _not_found(ctx, site)
        return None
    upd: list[Prop] = []
    if "SynchronizeAction" in ex and a["SynchronizeAction"] is not None:
        upd.append(Prop("DefaultUseParentWSUS", SYNC_ACTIONS[a["SynchronizeAction"].lower()]))
    if "UpstreamSourceLocation" in ex:
        upd.append(Prop("ParentWSUS", 0, "", a["UpstreamSourceLocation"] or ""))
    if "DefaultWsusServer" in ex:
        upd.append(Prop("DefaultWSUS", 0, "", a["DefaultWsusServer"] or ""))
    if "EnableCallWsusCleanupWizard" in ex:
        upd.append(Prop("Call WSUS Cleanup", int(bool(a["EnableCallWsusCleanupWizard"]))))
    for param, prop in (
        ("WaitMonth", "Sync Supersedence Age For NonFeature"),
        ("WaitMonthForFeature", "Sync Supersedence Age For Feature"),
    ):
        if param in ex and a[param] is not None:
            upd.append(Prop(prop, a[param]))
    for param, prop in (
        ("ImmediatelyExpireSupersedence", "Sync Supersedence Mode For NonFeature"),
        ("ImmediatelyExpireSupersedenceForFeature", "Sync Supersedence Mode For Feature"),
    ):
        if param in ex and a[param] is not None:
            upd.append(Prop(prop, int(not a[param])))
    cur = ctx.state.component_props(site, WCM_COMPONENT)
    langs = [x for x in cur.get("SupportedUpdateLanguages", Prop("x")).value2.split(",") if x]
    for lang in a.get("AddLanguageUpdateFile") or []:
        if lang.lower() not in (x.lower() for x in langs):
            langs.append(lang)
    for lang in a.get("RemoveLanguageUpdateFile") or []:
        langs = [x for x in langs if x.lower() != lang.lower()]
    if a.get("AddLanguageUpdateFile") or a.get("RemoveLanguageUpdateFile"):
        upd.append(Prop("SupportedUpdateLanguages", 0, "", ",".join(langs)))
    sync_upd: list[Prop] = []
    if "EnableThirdPartyUpdates" in ex and a["EnableThirdPartyUpdates"] is not None:
        sync_upd.append(Prop("EnableThirdPartyUpdates", int(bool(a["EnableThirdPartyUpdates"]))))
    if not _whatif(ctx, site):

        def write() -> None:
            ctx.state.set_component_props(site, WCM_COMPONENT, upd)
            if sync_upd and ctx.state.component(site, SYNC_COMPONENT) is not None:
                ctx.state.set_component_props(site, SYNC_COMPONENT, sync_upd)

        ctx.commit(site, write)
    if a.get("PassThru"):
        comp = ctx.state.component(site, WCM_COMPONENT)
        return component_obj(site, WCM_COMPONENT, comp[0], comp[1]) if comp else None
    return None


def get_site_component(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    sites = [a["SiteCode"]] if a.get("SiteCode") else [ctx.site_from_location()]
    out = []
    for site in sites:
        for name in (WCM_COMPONENT, SYNC_COMPONENT):
            if a.get("ComponentName") and not _name_ok(name, a["ComponentName"], a):
                continue
            comp = ctx.state.component(site, name)
            if comp is None:
                continue
            if a.get("SiteSystemServerName") and not _name_ok(
                comp[0], a["SiteSystemServerName"], a
            ):
                continue
            out.append(component_obj(site, name, comp[0], comp[1]))
    return out


# ---- accounts -------------------------------------------------------------------------------


def get_account(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    site = a.get("SiteCode") or ctx.site_from_location()
    name = a.get("UserName")
    return [
        account_obj(acc.site, acc.username)
        for acc in ctx.state.accounts(site)
        if _name_ok(acc.username, name, a)
    ]


def new_account(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    site = a.get("SiteCode") or ctx.site_from_location()
    user = a["UserName"]
    if any(acc.username.lower() == user.lower() for acc in ctx.state.accounts(site)):
        raise PSError(
            ctx.error(
                f"An object with the specified name already exists: {user}",
                "ItemAlreadyExists",
                category="ResourceExists",
                exception="System.ArgumentException",
                target=user,
            )
        )
    if _whatif(ctx, user, "New"):
        return None
    pw = a["Password"].reveal()
    ctx.commit(site, lambda: ctx.state.add_account(site, user, pw))
    return account_obj(site, user)


# ---- definitions ----------------------------------------------------------------------------

WILDCARD = (
    P("DisableWildcardHandling", "switch"),
    P("ForceWildcardHandling", "switch"),
)
SERVER_NAME = ("Name", "ServerName")


def _def(
    name: str,
    params: list[ParamDef],
    run: Callable[..., Any],
    default_set: str | None = None,
    writes: bool = False,
) -> CommandDef:
    return CommandDef(
        name,
        [*params, *WILDCARD],
        _cls(name),
        run,
        default_set=default_set,
        should_process=writes,
        configmgr=True,
        writes=writes,
    )


def _proxy_params(set_cmd: bool) -> list[ParamDef]:
    return [
        P("PublicFqdn", "string", not_null_or_empty=not set_cmd),
        P("FdmOperation", "bool"),
        P("UseSiteServerAccount", "switch"),
        P("AccountName", "string"),
        P("EnableProxy", "bool"),
        P("ProxyServerName", "string", not_null_or_empty=True),
        P("ProxyServerPort", "uint32", validate_range=(1, 65535)),
        P("ProxyAccessAccount", "object", ps_type_name="IResultObject#SMS_SCI_Reserved"),
    ]


def commands() -> list[CommandDef]:
    by_name, by_value = "SearchByName", "SearchByValue"
    sup_common = [
        P(
            "ClientConnectionType",
            "string",
            choices=CONNECTION_TYPES,
            enum_type="Microsoft.ConfigurationManagement.Cmdlets.HS.Commands.ClientConnectionTypes",
        ),
        P("UseProxy", "bool"),
        P("UseProxyForAutoDeploymentRule", "bool"),
        P("AnonymousWsusAccess", "switch"),
    ]
    return [
        _def(
            "Get-CMSite",
            [P("SiteCode", "string", position=0), P("Name", "string", aliases=("SiteName",))],
            get_site,
        ),
        _def(
            "Get-CMSiteRole",
            [
                P("RoleName", "string", sets=(by_name,)),
                P("SiteCode", "string", sets=(by_name,)),
                P(
                    "SiteSystemServerName",
                    "string",
                    sets=(by_name,),
                    position=0,
                    aliases=SERVER_NAME,
                ),
                P("AllSite", "switch", aliases=("AllSites",)),
                P(
                    "InputObject",
                    "object",
                    sets=(by_value,),
                    mandatory=True,
                    pipeline=True,
                    ps_type_name=SYSRES,
                ),
            ],
            get_site_role,
            by_name,
        ),
        _def(
            "Get-CMSiteSystemServer",
            [
                P("SiteCode", "string", sets=(by_name,)),
                P(
                    "SiteSystemServerName",
                    "string",
                    sets=(by_name,),
                    position=0,
                    aliases=SERVER_NAME,
                ),
                P("AllSite", "switch", aliases=("AllSites",)),
                P(
                    "InputObject",
                    "object",
                    sets=(by_value,),
                    mandatory=True,
                    pipeline=True,
                    ps_type_name=SITE_SYSTEM_TYPE,
                ),
            ],
            get_site_system_server,
            by_name,
        ),
        _def(
            "New-CMSiteSystemServer",
            [
                P("SiteCode", "string", not_null_or_empty=True),
                P(
                    "SiteSystemServerName",
                    "string",
                    mandatory=True,
                    position=0,
                    aliases=("ServerName", "Name"),
                ),
                *_proxy_params(set_cmd=False),
            ],
            new_site_system_server,
            writes=True,
        ),
        _def(
            "Set-CMSiteSystemServer",
            [
                P(
                    "InputObject",
                    "object",
                    sets=("SearchByValueMandatory",),
                    mandatory=True,
                    pipeline=True,
                    aliases=("SiteSystemServer",),
                    ps_type_name=SITE_SYSTEM_TYPE,
                ),
                P(
                    "SiteSystemServerName",
                    "string",
                    sets=("SearchByNameMandatory",),
                    mandatory=True,
                    position=0,
                    aliases=SERVER_NAME,
                ),
                P("SiteCode", "string", sets=("SearchByNameMandatory",)),
                *_proxy_params(set_cmd=True),
                P("PassThru", "switch"),
            ],
            set_site_system_server,
            "SearchByValueMandatory",
            writes=True,
        ),
        _def(
            "Get-CMSoftwareUpdatePoint",
            [
                P(
                    "SiteSystemServerName",
                    "string",
                    sets=(by_name,),
                    position=0,
                    aliases=SERVER_NAME,
                ),
                P("SiteCode", "string", sets=(by_name,)),
                P("AllSite", "switch", sets=(by_name,), aliases=("AllSites",)),
                P(
                    "InputObject",
                    "object",
                    sets=(by_value,),
                    mandatory=True,
                    pipeline=True,
                    ps_type_name=SITE_SYSTEM_TYPE,
                ),
            ],
            get_sup,
            by_name,
        ),
        _def(
            "Add-CMSoftwareUpdatePoint",
            [
                P(
                    "InputObject",
                    "object",
                    sets=("SumPByValueWithWsus",),
                    mandatory=True,
                    pipeline=True,
                    ps_type_name=SYSRES,
                ),
                P(
                    "SiteSystemServerName",
                    "string",
                    sets=("SumPWithWsus",),
                    mandatory=True,
                    position=0,
                    aliases=SERVER_NAME,
                ),
                P("SiteCode", "string", sets=("SumPWithWsus",)),
                P("WsusIisPort", "int"),
                P("WsusIisSslPort", "int"),
                P("EnableCloudGateway", "switch"),
                P("WsusSsl", "bool", aliases=("SslWsus",)),
                P("ConnectionAccountUserName", "string", aliases=("UserName",)),
                *sup_common,
            ],
            add_sup,
            "SumPByValueWithWsus",
            writes=True,
        ),
        _def(
            "Set-CMSoftwareUpdatePoint",
            [
                P(
                    "InputObject",
                    "object",
                    sets=("ByValue",),
                    mandatory=True,
                    pipeline=True,
                    aliases=("SoftwareUpdatePoint",),
                    ps_type_name=SYSRES,
                ),
                P(
                    "SiteSystemServerName",
                    "string",
                    sets=("ByName",),
                    mandatory=True,
                    position=0,
                    aliases=SERVER_NAME,
                ),
                P("SiteCode", "string", sets=("ByName",)),
                P("HttpPort", "int", aliases=("WsusIisPort",)),
                P("HttpsPort", "int", aliases=("WsusIisSslPort",)),
                P("EnableSsl", "bool", aliases=("SslWsus", "WsusSsl")),
                P("EnableCloudGateway", "bool"),
                P("WsusAccessAccount", "string"),
                P("NlbVirtualIP", "string"),
                P("PublicVirtualIP", "string"),
                P("PassThru", "switch"),
                *sup_common,
            ],
            set_sup,
            "ByValue",
            writes=True,
        ),
        _def(
            "Get-CMSoftwareUpdatePointComponent",
            [
                P("SiteSystemServerName", "string", aliases=("Name",)),
                P("SiteCode", "string"),
                P("WsusSyncManager", "switch"),
            ],
            get_sup_component,
        ),
        _def(
            "Set-CMSoftwareUpdatePointComponent",
            [
                P("SiteCode", "string", sets=("SearchBySiteCodeMandatory",)),
                P(
                    "Name",
                    "string",
                    sets=("SearchByNameMandatory",),
                    mandatory=True,
                    aliases=("SiteName",),
                ),
                P(
                    "InputObject",
                    "object",
                    sets=("SearchByValueMandatory",),
                    mandatory=True,
                    pipeline=True,
                    aliases=("Site", "SiteComponent"),
                    ps_type_name="IResultObject#SMS_SCI_Component",
                ),
                P("DefaultWsusServer", "string"),
                P(
                    "SynchronizeAction",
                    "string",
                    choices=(
                        "SynchronizeFromMicrosoftUpdate",
                        "SynchronizeFromAnUpstreamDataSourceLocation",
                        "DoNotSynchronizeFromMicrosoftUpdateOrUpstreamDataSource",
                    ),
                    enum_type="Microsoft.ConfigurationManagement.Cmdlets.Sum.Commands."
                    "SynchronizeActionType",
                ),
                P("UpstreamSourceLocation", "string"),
                P("ReportingEvent", "string"),
                *(
                    P(f"{op}{what}", "string[]")
                    for op in ("Add", "Remove")
                    for what in (
                        "UpdateClassification",
                        "Company",
                        "ProductFamily",
                        "Product",
                        "LanguageUpdateFile",
                        "LanguageSummaryDetail",
                    )
                ),
                P("Schedule", "object", ps_type_name="IResultObject#SMS_ScheduleToken"),
                P("EnableSyncFailureAlert", "bool"),
                P(
                    "ImmediatelyExpireSupersedence",
                    "bool",
                    aliases=("ImmediatelyExpireSupersedenceForNonFeature",),
                ),
                P("ImmediatelyExpireSupersedenceForFeature", "bool"),
                P("EnableCallWsusCleanupWizard", "bool"),
                P("WaitMonth", "int", aliases=("WaitMonthForNonFeature",)),
                P("WaitMonthForFeature", "int"),
                P("ContentFileOption", "string"),
                P("EnableThirdPartyUpdates", "bool"),
                P("EnableManualCertManagement", "bool"),
                P("FeatureUpdateMaxRuntimeMins", "int"),
                P("NonFeatureUpdateMaxRuntimeMins", "int"),
                P("NonWindowsUpdateMaxRuntimeMins", "int"),
                P("PassThru", "switch"),
            ],
            set_sup_component,
            "SearchBySiteCodeMandatory",
            writes=True,
        ),
        _def(
            "Get-CMSiteComponent",
            [
                P("ComponentName", "string", position=0, aliases=("Name",)),
                P("SiteCode", "string"),
                P("SiteSystemServerName", "string"),
            ],
            get_site_component,
        ),
        _def(
            "Get-CMAccount",
            [P("UserName", "string", position=0, aliases=("Name",)), P("SiteCode", "string")],
            get_account,
        ),
        _def(
            "New-CMAccount",
            [
                P("UserName", "string", mandatory=True, aliases=("Name",)),
                P("Password", "securestring", mandatory=True, secret=True),
                P("SiteCode", "string"),
            ],
            new_account,
            writes=True,
        ),
    ]
