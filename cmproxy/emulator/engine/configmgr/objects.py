"""ConfigMgr objects as the cmdlets return them: IResultObject wrappers of SMS_* WMI
instances (live: they serialise at depth 1, nested parts as text)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.values import PSObj
from cmproxy.emulator.state import SITE_SYSTEM, Prop, Site, SysRes, item_name, nal_path, nocase

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext


RESULT_TYPES = [
    "Microsoft.ConfigurationManagement.ManagementProvider.WqlQueryEngine.WqlResultObject",
    "Microsoft.ConfigurationManagement.ManagementProvider.IResultObject",
    "System.Object",
]


SYSRES = "IResultObject#SMS_SCI_SysResUse"


SITE_SYSTEM_TYPE = f"{SYSRES};RoleName={SITE_SYSTEM}"


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


def sysres_obj(ctx: SiteCallContext, row: SysRes) -> PSObj:
    return _sysres_obj(row, ctx.state.site(row.site), ctx.state.role_count(row.site, row.server))


def sysres_objs(ctx: SiteCallContext, rows: Sequence[SysRes]) -> list[PSObj]:
    """Many rows: the sites and the role counts read once for all (a listing of a big site
    would otherwise query both per row)."""
    if len(rows) < 2:
        return [sysres_obj(ctx, r) for r in rows]
    sites = {s.code.upper(): s for s in ctx.state.sites()}
    servers = {(nocase(r.site), nocase(r.server)) for r in rows}
    if len(servers) <= _FEW_SERVERS:  # a few servers' roles: counted per server, not per site
        counts = {key: ctx.state.role_count(*key) for key in servers}
    else:
        counts = ctx.state.role_counts({r.site for r in rows})
    return [
        _sysres_obj(r, sites.get(r.site.upper()), counts[nocase(r.site), nocase(r.server)])
        for r in rows
    ]


#: Up to this many servers, `sysres_objs` counts each server's roles on its own (one indexed
#: COUNT each) instead of every server's of their sites; the counts are the same (NOCASE).
_FEW_SERVERS = 4


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
