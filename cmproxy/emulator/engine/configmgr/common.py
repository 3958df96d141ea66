"""What the ConfigMgr cmdlets share: site filters, wildcard name matching, the row a Set
cmdlet works on, -WhatIf, replication lag."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.configmgr.objects import sysres_obj
from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.values import PSObj
from cmproxy.emulator.state import Prop, SysRes

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext


#: -ClientConnectionType values of the software update point cmdlets.
CONNECTION_TYPES = ("Intranet", "Internet", "InternetAndIntranet")
#: -SynchronizeAction names (lower case) → the DefaultUseParentWSUS value the component stores.
SYNC_ACTIONS = {
    "synchronizefrommicrosoftupdate": 0,
    "synchronizefromanupstreamdatasourcelocation": 1,
    "donotsynchronizefrommicrosoftupdateorupstreamdatasource": 2,
}


def name_matches(value: str, pattern: str | None) -> bool:
    """ConfigMgr name filters: wildcards when present, else case-insensitive equality."""
    if pattern is None:
        return True
    if conv.has_wildcard(pattern):
        return conv.like(value, pattern)
    return value.lower() == pattern.lower()


def _sites_for(ctx: SiteCallContext, a: dict[str, Any]) -> list[str] | None:
    """Site filter: -AllSite → None (all); -SiteCode; else the current drive's site."""
    if a.get("AllSite"):
        return None
    if a.get("SiteCode"):
        return [a["SiteCode"]]
    return [ctx.site_from_location()]


def name_ok(value: str, pattern: str | None, a: dict[str, Any]) -> bool:
    if pattern is None:
        return True
    if a.get("DisableWildcardHandling"):
        return value.lower() == pattern.lower()
    return name_matches(value, pattern)


def server_of(o: PSObj) -> tuple[str, str]:
    path = conv.to_str(o.properties.get("NetworkOSPath", ""))
    return conv.to_str(o.properties.get("SiteCode", "")), path.lstrip("\\")


#: `site_system_rows` asks SQLite (indexed) for an exact server name and a single site.
INDEXED_ROWS = True


def site_system_rows(ctx: SiteCallContext, a: dict[str, Any], role: str | None) -> list[SysRes]:
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
        if not name_ok(r.server, name, a):
            continue
        out.append(r)
    return out


def write_not_found(ctx: SiteCallContext, target: Any) -> None:
    ctx.write_error(
        ctx.error(
            "No object corresponds to the specified parameters.",
            "ItemNotFound",
            category="ObjectNotFound",
            exception="System.Management.Automation.ItemNotFoundException",
            target=target,
        )
    )


def target_of(ctx: SiteCallContext, a: dict[str, Any]) -> tuple[str, str]:
    """(site, server) a Set/Add cmdlet names: -InputObject's, else -SiteSystemServerName in
    -SiteCode or the current site drive's site."""
    obj = a.get("InputObject")
    if obj is not None:
        return server_of(obj)
    return a.get("SiteCode") or ctx.site_from_location(), a["SiteSystemServerName"]


def target_row(ctx: SiteCallContext, a: dict[str, Any], role: str) -> SysRes | None:
    """The row a Set cmdlet works on; a wildcard -SiteSystemServerName must match one row."""
    site, server = target_of(ctx, a)
    by_name = a.get("InputObject") is None
    if by_name and conv.has_wildcard(server) and not a.get("DisableWildcardHandling"):
        matches = [r for r in ctx.state.sysres(site=site, role=role) if conv.like(r.server, server)]
        return matches[0] if len(matches) == 1 else None
    return ctx.state.get_sysres(site, server, role)


def what_if(ctx: SiteCallContext, target: str, action: str = "Set") -> bool:
    if ctx.whatif:
        ctx.rs.current.information.append(
            f'What if: Performing the operation "{action}" on target "{target}".'
        )
        return True
    return False


def as_seen(ctx: SiteCallContext, rows: list[SysRes]) -> list[SysRes]:
    """Rows as reading cmdlets see them: with replication lag, a write not yet visible is not
    shown ([UNCONFIRMED], `settings.Replication`)."""
    return ctx.engine.replica.views(rows)


def replicate_write(ctx: SiteCallContext, before: SysRes) -> None:
    """A Set wrote `before`'s row: with replication lag at its site, reads see it later."""
    lag = ctx.engine.settings.replication.lag_for(before.site)
    after = ctx.state.get_sysres(before.site, before.server, before.role)
    if after is not None:
        ctx.engine.replica.written(before, after, lag)


def write_row(
    ctx: SiteCallContext,
    row: SysRes,
    upd: list[Prop],
    *,
    verbose: str = "",
    check: Callable[[], None] | None = None,
) -> None:
    """A Set-CM<role> cmdlet's write of `upd` to its row: nothing under -WhatIf, else
    `verbose`, then `check` and the write in one commit, seen late under replication lag."""
    if what_if(ctx, row.server):
        return
    if verbose:
        ctx.write_verbose(verbose)

    def write() -> None:
        if check is not None:
            check()
        ctx.state.set_props(row.site, row.server, row.role, upd)

    ctx.commit(row.site, write)
    replicate_write(ctx, row)


def pass_thru(ctx: SiteCallContext, a: dict[str, Any], row: SysRes) -> PSObj | None:
    """-PassThru's output of a Set-CM<role> cmdlet: its row as now stored."""
    if not a.get("PassThru"):
        return None
    new = ctx.state.get_sysres(row.site, row.server, row.role)
    return sysres_obj(ctx, new) if new is not None else None


#: The aliases of -SiteSystemServerName.
SERVER_NAME = ("Name", "ServerName")
