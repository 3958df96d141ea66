"""The software update point cmdlets (Get/Add/Set-CMSoftwareUpdatePoint), its component
(Get/Set-CMSoftwareUpdatePointComponent) and Get-CMSiteComponent."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.configmgr.common import (
    CONNECTION_TYPES,
    SERVER_NAME,
    SYNC_ACTIONS,
    name_ok,
    pass_thru,
    target_of,
    target_row,
    what_if,
    write_not_found,
    write_row,
)
from cmproxy.emulator.engine.configmgr.objects import (
    SITE_SYSTEM_TYPE,
    SYSRES,
    component_obj,
    sysres_obj,
)
from cmproxy.emulator.engine.configmgr.site_systems import role_objects
from cmproxy.emulator.engine.configmgr.table import BY_NAME, BY_VALUE, cmdlet
from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import PSError
from cmproxy.emulator.seeds import sup_props
from cmproxy.emulator.state import SITE_SYSTEM, SUP_ROLE, SYNC_COMPONENT, WCM_COMPONENT, Prop

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext


#: Parameters both Add- and Set-CMSoftwareUpdatePoint have.
SUP_COMMON_PARAMS = (
    ParamDef(
        "ClientConnectionType",
        "string",
        choices=CONNECTION_TYPES,
        enum_type="Microsoft.ConfigurationManagement.Cmdlets.HS.Commands.ClientConnectionTypes",
    ),
    ParamDef("UseProxy", "bool"),
    ParamDef("UseProxyForAutoDeploymentRule", "bool"),
    ParamDef("AnonymousWsusAccess", "switch"),
)


@cmdlet(
    "Get-CMSoftwareUpdatePoint",
    [
        ParamDef(
            "SiteSystemServerName",
            "string",
            sets=(BY_NAME,),
            position=0,
            aliases=SERVER_NAME,
        ),
        ParamDef("SiteCode", "string", sets=(BY_NAME,)),
        ParamDef("AllSite", "switch", sets=(BY_NAME,), aliases=("AllSites",)),
        ParamDef(
            "InputObject",
            "object",
            sets=(BY_VALUE,),
            mandatory=True,
            pipeline=True,
            ps_type_name=SITE_SYSTEM_TYPE,
        ),
    ],
    default_set=BY_NAME,
)
def get_sup(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    return role_objects(ctx, a, SUP_ROLE)


def _sup_updates(ctx: SiteCallContext, a: dict[str, Any], add: bool) -> list[Prop]:
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


def _check_sup_proxy(ctx: SiteCallContext, site: str, server: str, upd: list[Prop]) -> None:
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


@cmdlet(
    "Set-CMSoftwareUpdatePoint",
    [
        ParamDef(
            "InputObject",
            "object",
            sets=("ByValue",),
            mandatory=True,
            pipeline=True,
            aliases=("SoftwareUpdatePoint",),
            ps_type_name=SYSRES,
        ),
        ParamDef(
            "SiteSystemServerName",
            "string",
            sets=("ByName",),
            mandatory=True,
            position=0,
            aliases=SERVER_NAME,
        ),
        ParamDef("SiteCode", "string", sets=("ByName",)),
        ParamDef("HttpPort", "int", aliases=("WsusIisPort",)),
        ParamDef("HttpsPort", "int", aliases=("WsusIisSslPort",)),
        ParamDef("EnableSsl", "bool", aliases=("SslWsus", "WsusSsl")),
        ParamDef("EnableCloudGateway", "bool"),
        ParamDef("WsusAccessAccount", "string"),
        ParamDef("NlbVirtualIP", "string"),
        ParamDef("PublicVirtualIP", "string"),
        ParamDef("PassThru", "switch"),
        *SUP_COMMON_PARAMS,
    ],
    default_set="ByValue",
    writes=True,
)
def set_sup(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    row = target_row(ctx, a, SUP_ROLE)
    if row is None:
        write_not_found(ctx, a.get("SiteSystemServerName") or a.get("InputObject"))
        return None
    upd = _sup_updates(ctx, a, add=False)
    write_row(ctx, row, upd, check=lambda: _check_sup_proxy(ctx, row.site, row.server, upd))
    return pass_thru(ctx, a, row)


@cmdlet(
    "Add-CMSoftwareUpdatePoint",
    [
        ParamDef(
            "InputObject",
            "object",
            sets=("SumPByValueWithWsus",),
            mandatory=True,
            pipeline=True,
            ps_type_name=SYSRES,
        ),
        ParamDef(
            "SiteSystemServerName",
            "string",
            sets=("SumPWithWsus",),
            mandatory=True,
            position=0,
            aliases=SERVER_NAME,
        ),
        ParamDef("SiteCode", "string", sets=("SumPWithWsus",)),
        ParamDef("WsusIisPort", "int"),
        ParamDef("WsusIisSslPort", "int"),
        ParamDef("EnableCloudGateway", "switch"),
        ParamDef("WsusSsl", "bool", aliases=("SslWsus",)),
        ParamDef("ConnectionAccountUserName", "string", aliases=("UserName",)),
        *SUP_COMMON_PARAMS,
    ],
    default_set="SumPByValueWithWsus",
    writes=True,
)
def add_sup(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    site, server = target_of(ctx, a)
    if ctx.state.get_sysres(site, server, SITE_SYSTEM) is None:
        write_not_found(ctx, server)
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
    if what_if(ctx, server, "Add"):
        return None

    def write() -> None:
        _check_sup_proxy(ctx, site, server, upd)
        ctx.state.put_sysres(site, server, SUP_ROLE, sup_props())
        ctx.state.set_props(site, server, SUP_ROLE, upd)

    ctx.commit(site, write)
    row = ctx.state.get_sysres(site, server, SUP_ROLE)
    return sysres_obj(ctx, row) if row is not None else None


@cmdlet(
    "Get-CMSoftwareUpdatePointComponent",
    [
        ParamDef("SiteSystemServerName", "string", aliases=("Name",)),
        ParamDef("SiteCode", "string"),
        ParamDef("WsusSyncManager", "switch"),
    ],
)
def get_sup_component(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    site = a.get("SiteCode") or ctx.site_from_location()
    name = SYNC_COMPONENT if a.get("WsusSyncManager") else WCM_COMPONENT
    comp = ctx.state.component(site, name)
    if comp is None:
        return None
    server, props = comp
    if a.get("SiteSystemServerName") and not name_ok(server, a["SiteSystemServerName"], a):
        return None
    return component_obj(site, name, server, props)


@cmdlet(
    "Set-CMSoftwareUpdatePointComponent",
    [
        ParamDef("SiteCode", "string", sets=("SearchBySiteCodeMandatory",)),
        ParamDef(
            "Name",
            "string",
            sets=("SearchByNameMandatory",),
            mandatory=True,
            aliases=("SiteName",),
        ),
        ParamDef(
            "InputObject",
            "object",
            sets=("SearchByValueMandatory",),
            mandatory=True,
            pipeline=True,
            aliases=("Site", "SiteComponent"),
            ps_type_name="IResultObject#SMS_SCI_Component",
        ),
        ParamDef("DefaultWsusServer", "string"),
        ParamDef(
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
        ParamDef("UpstreamSourceLocation", "string"),
        ParamDef("ReportingEvent", "string"),
        *(
            ParamDef(f"{op}{what}", "string[]")
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
        ParamDef("Schedule", "object", ps_type_name="IResultObject#SMS_ScheduleToken"),
        ParamDef("EnableSyncFailureAlert", "bool"),
        ParamDef(
            "ImmediatelyExpireSupersedence",
            "bool",
            aliases=("ImmediatelyExpireSupersedenceForNonFeature",),
        ),
        ParamDef("ImmediatelyExpireSupersedenceForFeature", "bool"),
        ParamDef("EnableCallWsusCleanupWizard", "bool"),
        ParamDef("WaitMonth", "int", aliases=("WaitMonthForNonFeature",)),
        ParamDef("WaitMonthForFeature", "int"),
        ParamDef("ContentFileOption", "string"),
        ParamDef("EnableThirdPartyUpdates", "bool"),
        ParamDef("EnableManualCertManagement", "bool"),
        ParamDef("FeatureUpdateMaxRuntimeMins", "int"),
        ParamDef("NonFeatureUpdateMaxRuntimeMins", "int"),
        ParamDef("NonWindowsUpdateMaxRuntimeMins", "int"),
        ParamDef("PassThru", "switch"),
    ],
    default_set="SearchBySiteCodeMandatory",
    writes=True,
)
def set_sup_component(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    ex = ctx.bound.explicit
    site = _sup_component_site(ctx, a)
    if ctx.state.component(site, WCM_COMPONENT) is None:
        write_not_found(ctx, site)
        return None
    upd = _wcm_component_props(ctx, a, site)
    sync_upd: list[Prop] = []
    if "EnableThirdPartyUpdates" in ex and a["EnableThirdPartyUpdates"] is not None:
        sync_upd.append(Prop("EnableThirdPartyUpdates", int(bool(a["EnableThirdPartyUpdates"]))))
    if not what_if(ctx, site):

        def write() -> None:
            ctx.state.set_component_props(site, WCM_COMPONENT, upd)
            if sync_upd and ctx.state.component(site, SYNC_COMPONENT) is not None:
                ctx.state.set_component_props(site, SYNC_COMPONENT, sync_upd)

        ctx.commit(site, write)
    if a.get("PassThru"):
        comp = ctx.state.component(site, WCM_COMPONENT)
        return component_obj(site, WCM_COMPONENT, comp[0], comp[1]) if comp else None
    return None


def _sup_component_site(ctx: SiteCallContext, a: dict[str, Any]) -> str:
    """The site whose SUP component Set-CMSoftwareUpdatePointComponent changes: the input
    object's, the named SUP's, else -SiteCode or the current site drive's."""
    obj = a.get("InputObject")
    if obj is not None:
        return conv.to_str(obj.properties.get("SiteCode"))
    if a.get("Name"):
        rows = [r for r in ctx.state.sysres(role=SUP_ROLE) if name_ok(r.server, a["Name"], a)]
        return rows[0].site if rows else ""
    site: str = a.get("SiteCode") or ctx.site_from_location()
    return site


def _wcm_component_props(ctx: SiteCallContext, a: dict[str, Any], site: str) -> list[Prop]:
    """The SMS_WSUS_CONFIGURATION_MANAGER properties the explicit parameters change."""
    ex = ctx.bound.explicit
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
    if a.get("AddLanguageUpdateFile") or a.get("RemoveLanguageUpdateFile"):
        upd.append(_languages_prop(ctx, a, site))
    return upd


def _languages_prop(ctx: SiteCallContext, a: dict[str, Any], site: str) -> Prop:
    """SupportedUpdateLanguages after -AddLanguageUpdateFile, then -RemoveLanguageUpdateFile."""
    cur = ctx.state.component_props(site, WCM_COMPONENT)
    langs = [x for x in cur.get("SupportedUpdateLanguages", Prop("x")).value2.split(",") if x]
    for lang in a.get("AddLanguageUpdateFile") or []:
        if lang.lower() not in (x.lower() for x in langs):
            langs.append(lang)
    for lang in a.get("RemoveLanguageUpdateFile") or []:
        langs = [x for x in langs if x.lower() != lang.lower()]
    return Prop("SupportedUpdateLanguages", 0, "", ",".join(langs))


@cmdlet(
    "Get-CMSiteComponent",
    [
        ParamDef("ComponentName", "string", position=0, aliases=("Name",)),
        ParamDef("SiteCode", "string"),
        ParamDef("SiteSystemServerName", "string"),
    ],
)
def get_site_component(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    sites = [a["SiteCode"]] if a.get("SiteCode") else [ctx.site_from_location()]
    out = []
    for site in sites:
        for name in (WCM_COMPONENT, SYNC_COMPONENT):
            if a.get("ComponentName") and not name_ok(name, a["ComponentName"], a):
                continue
            comp = ctx.state.component(site, name)
            if comp is None:
                continue
            if a.get("SiteSystemServerName") and not name_ok(comp[0], a["SiteSystemServerName"], a):
                continue
            out.append(component_obj(site, name, comp[0], comp[1]))
    return out
