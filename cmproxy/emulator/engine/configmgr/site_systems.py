"""Get-CMSite, Get-CMSiteRole and the site system server cmdlets (New/Get/Set), with the
proxy semantics of reference §8.3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.configmgr.common import (
    SERVER_NAME,
    as_seen,
    name_ok,
    pass_thru,
    server_of,
    site_system_rows,
    target_row,
    what_if,
    write_not_found,
    write_row,
)
from cmproxy.emulator.engine.configmgr.objects import (
    SITE_SYSTEM_TYPE,
    SYSRES,
    site_obj,
    sysres_obj,
    sysres_objs,
)
from cmproxy.emulator.engine.configmgr.table import BY_NAME, BY_VALUE, cmdlet
from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import PSError
from cmproxy.emulator.engine.language.values import PSObj
from cmproxy.emulator.seeds import site_system_props
from cmproxy.emulator.state import SITE_SYSTEM, Prop

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext


def proxy_params(set_cmd: bool) -> list[ParamDef]:
    return [
        ParamDef("PublicFqdn", "string", not_null_or_empty=not set_cmd),
        ParamDef("FdmOperation", "bool"),
        ParamDef("UseSiteServerAccount", "switch"),
        ParamDef("AccountName", "string"),
        ParamDef("EnableProxy", "bool"),
        ParamDef("ProxyServerName", "string", not_null_or_empty=True),
        ParamDef("ProxyServerPort", "uint32", validate_range=(1, 65535)),
        ParamDef("ProxyAccessAccount", "object", ps_type_name="IResultObject#SMS_SCI_Reserved"),
    ]


@cmdlet(
    "Get-CMSite",
    [ParamDef("SiteCode", "string", position=0), ParamDef("Name", "string", aliases=("SiteName",))],
)
def get_site(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    out = []
    for s in ctx.state.sites():
        if a.get("SiteCode") and not name_ok(s.code, a["SiteCode"], a):
            continue
        if a.get("Name") and not name_ok(s.name, a["Name"], a):
            continue
        out.append(site_obj(s))
    return out


@cmdlet(
    "Get-CMSiteRole",
    [
        ParamDef("RoleName", "string", sets=(BY_NAME,)),
        ParamDef("SiteCode", "string", sets=(BY_NAME,)),
        ParamDef(
            "SiteSystemServerName",
            "string",
            sets=(BY_NAME,),
            position=0,
            aliases=SERVER_NAME,
        ),
        ParamDef("AllSite", "switch", aliases=("AllSites",)),
        ParamDef(
            "InputObject",
            "object",
            sets=(BY_VALUE,),
            mandatory=True,
            pipeline=True,
            ps_type_name=SYSRES,
        ),
    ],
    default_set=BY_NAME,
)
def get_site_role(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    if obj is not None:
        site, server = server_of(obj)
        rows = ctx.state.sysres(site=None if a.get("AllSite") else site, server=server)
    else:
        rows = site_system_rows(ctx, a, None)
    role = a.get("RoleName")
    return sysres_objs(ctx, as_seen(ctx, [r for r in rows if name_ok(r.role, role, a)]))


@cmdlet(
    "Get-CMSiteSystemServer",
    [
        ParamDef("SiteCode", "string", sets=(BY_NAME,)),
        ParamDef(
            "SiteSystemServerName",
            "string",
            sets=(BY_NAME,),
            position=0,
            aliases=SERVER_NAME,
        ),
        ParamDef("AllSite", "switch", aliases=("AllSites",)),
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
def get_site_system_server(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    return role_objects(ctx, a, SITE_SYSTEM)


def role_objects(ctx: SiteCallContext, a: dict[str, Any], role: str) -> list[PSObj]:
    """The `role` rows a Get-CM<role> call names (-InputObject: that server's), as objects."""
    obj = a.get("InputObject")
    if obj is not None:
        site, server = server_of(obj)
        row = ctx.state.get_sysres(site, server, role)
        return sysres_objs(ctx, as_seen(ctx, [row] if row is not None else []))
    return sysres_objs(ctx, as_seen(ctx, site_system_rows(ctx, a, role)))


def proxy_updates(ctx: SiteCallContext, a: dict[str, Any]) -> list[Prop]:
    """Props written by -EnableProxy/-ProxyServerName/-ProxyServerPort/-ProxyAccessAccount."""
    b = ctx.engine.settings.behaviour
    explicit = ctx.bound.explicit
    upd: dict[str, Prop] = {}

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
    return list(upd.values())


def _server_updates(ctx: SiteCallContext, a: dict[str, Any]) -> list[Prop]:
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


@cmdlet(
    "Set-CMSiteSystemServer",
    [
        ParamDef(
            "InputObject",
            "object",
            sets=("SearchByValueMandatory",),
            mandatory=True,
            pipeline=True,
            aliases=("SiteSystemServer",),
            ps_type_name=SITE_SYSTEM_TYPE,
        ),
        ParamDef(
            "SiteSystemServerName",
            "string",
            sets=("SearchByNameMandatory",),
            mandatory=True,
            position=0,
            aliases=SERVER_NAME,
        ),
        ParamDef("SiteCode", "string", sets=("SearchByNameMandatory",)),
        *proxy_params(set_cmd=True),
        ParamDef("PassThru", "switch"),
    ],
    default_set="SearchByValueMandatory",
    writes=True,
)
def set_site_system_server(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    row = target_row(ctx, a, SITE_SYSTEM)
    if row is None:
        write_not_found(ctx, a.get("SiteSystemServerName") or a.get("InputObject"))
        return None
    upd = _server_updates(ctx, a) + proxy_updates(ctx, a)
    verbose = f"Updating site system server {row.server} in site {row.site}."
    write_row(ctx, row, upd, verbose=verbose)
    return pass_thru(ctx, a, row)


@cmdlet(
    "New-CMSiteSystemServer",
    [
        ParamDef("SiteCode", "string", not_null_or_empty=True),
        ParamDef(
            "SiteSystemServerName",
            "string",
            mandatory=True,
            position=0,
            aliases=("ServerName", "Name"),
        ),
        *proxy_params(set_cmd=False),
    ],
    writes=True,
)
def new_site_system_server(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:

    site = a.get("SiteCode") or ctx.site_from_location()
    server = a["SiteSystemServerName"]
    if ctx.state.site(site) is None:
        write_not_found(ctx, site)
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
    upd = _server_updates(ctx, a) + proxy_updates(ctx, a)
    if what_if(ctx, server, "New"):
        return None

    def write() -> None:
        ctx.state.put_sysres(site, server, SITE_SYSTEM, base)
        ctx.state.set_props(site, server, SITE_SYSTEM, upd)

    ctx.commit(site, write)
    row = ctx.state.get_sysres(site, server, SITE_SYSTEM)
    return sysres_obj(ctx, row) if row is not None else None
