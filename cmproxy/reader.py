"""Projected objects (from `ps_templates/Get-SiteState.ps1`) → the typed model. Pure.

The templates flatten live IResultObjects into plain records with a `Kind` (`Site`, `Role`,
`SupComponent`, `Account`), because nested `Props` do not survive remoting. This module turns
those records into `cmproxy.model` values; it knows the embedded-property encodings of the
reference (configmgr-cmdlets.md §2.2-§2.4) and nothing about the wire.

A site can hold data the model refuses (an enabled proxy without a name, a UPN as proxy
account). Such a server is reported with a `ReadIssue` and its proxy read as disabled, rather
than failing the whole read; the issue names the server and what to fix.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from cmproxy._exceptions import ValidationError
from cmproxy.model import (
    DEFAULT_PROXY_PORT,
    KnownAccount,
    ProxySettings,
    Site,
    SiteState,
    SiteSystemServer,
    SiteType,
    SupFlags,
    validate_account_name,
)
from cmproxy.roles import (
    CloudDistributionPoint,
    ConnectedCacheDistributionPoint,
    DistributionPoint,
    OtherRole,
    Role,
    SoftwareUpdatePoint,
    SupSyncSource,
    role_for_name,
)

__all__ = [
    "SITE_SYSTEM_ROLE",
    "ReadIssue",
    "RoleSetting",
    "SiteRead",
    "proxy_from_record",
    "read_site_state",
    "server_name",
    "sup_flags_from_record",
    "sync_source_from_record",
]

log = logging.getLogger(__name__)

#: The role row that carries a server's proxy (configmgr-cmdlets.md §2.2).
SITE_SYSTEM_ROLE = "SMS Site System"
_SITE_TYPES = {1: SiteType.SECONDARY, 2: SiteType.PRIMARY, 4: SiteType.CAS}
_SYNC_SOURCES = {
    0: SupSyncSource.MICROSOFT_UPDATE,
    1: SupSyncSource.UPSTREAM,
    2: SupSyncSource.NONE,
}


@attrs.frozen
class ReadIssue:
    """Something on the site the model cannot represent as read; what was assumed instead."""

    site_code: str
    target: str
    message: str

    def __str__(self) -> str:
        return f"{self.target} ({self.site_code}): {self.message}"


@attrs.frozen
class SiteRead:
    """A read hierarchy and the issues met while reading it."""

    state: SiteState
    issues: tuple[ReadIssue, ...] = ()


def _int(value: Any, default: int = 0) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return int(value)
    try:
        return int(str(value).strip())
    except ValueError:
        return default


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def server_name(value: Any) -> str:
    r"""A server name from `NetworkOSPath` (`\\server`) or a plain name."""
    return _text(value).strip("\\")


def proxy_from_record(record: Mapping[str, Any]) -> ProxySettings:
    """The server proxy from an `SMS Site System` row (UseProxy, ProxyName, …; §2.2).

    `AnonymousProxyAccess=1` means the System account, whatever `ProxyUserName` still holds.
    Raises ValidationError when the row holds values the model refuses.
    """
    if _int(record.get("UseProxy")) != 1:
        return ProxySettings.disabled()
    account: str | None = _text(record.get("ProxyUserName")) or None
    if _int(record.get("AnonymousProxyAccess"), 1) == 1:
        account = None
    name = _text(record.get("ProxyName")) or None
    port = _int(record.get("ProxyServerPort"), DEFAULT_PROXY_PORT) or DEFAULT_PROXY_PORT
    return ProxySettings(server=name, port=port, account=account, enabled=True)


def sup_flags_from_record(record: Mapping[str, Any]) -> SupFlags:
    """The SUP options from an `SMS Software Update Point` row (UseProxy, UseProxyForADR)."""
    return SupFlags(
        use_proxy=_int(record.get("UseProxy")) == 1,
        use_proxy_for_adr=_int(record.get("UseProxyForADR")) == 1,
    )


def sync_source_from_record(
    record: Mapping[str, Any] | None,
) -> tuple[SupSyncSource, str | None]:
    """The SUP component's sync source (`DefaultUseParentWSUS`, `ParentWSUS`; §2.4)."""
    if record is None:
        return SupSyncSource.MICROSOFT_UPDATE, None
    source = _SYNC_SOURCES.get(_int(record.get("DefaultUseParentWSUS")), SupSyncSource.NONE)
    upstream = _text(record.get("ParentWSUS")) or None
    return source, upstream if source is SupSyncSource.UPSTREAM else None


def _site(record: Mapping[str, Any]) -> Site:
    code = _text(record.get("SiteCode"))
    site_type = _SITE_TYPES.get(_int(record.get("Type")))
    if site_type is None:
        raise ValidationError(
            "site.type", record.get("Type"), f"site {code}: unknown SMS_Site.Type (1, 2 or 4)"
        )
    parent = _text(record.get("ReportingSiteCode")) or None
    server = server_name(record.get("ServerName")) or None
    return Site(
        code=code,
        type=site_type,
        parent=None if site_type is SiteType.CAS else parent,
        server=server,
        name=_text(record.get("SiteName")),
    )


@attrs.define
class _ServerRows:
    site_code: str
    name: str
    system_row: Mapping[str, Any] | None = None
    role_rows: list[Mapping[str, Any]] = attrs.field(factory=list)


class RoleSetting(Protocol):
    """A setting a role carries of its own (`cmproxy.settings.Setting`), as the reader uses
    it: the role class that carries it, the value its role row projects, that value shown."""

    @property
    def role(self) -> type[Role] | None: ...

    @property
    def from_record(self) -> Callable[[Mapping[str, Any]], Any]: ...

    @property
    def show(self) -> Callable[[SiteSystemServer, Any], SiteSystemServer]: ...


def read_site_state(
    records: Iterable[Mapping[str, Any]], settings: Sequence[RoleSetting] = ()
) -> SiteRead:
    """Build a `SiteState` from the records of `Get-SiteState.ps1` (any order).

    `settings`: the settings roles carry of their own (`cmproxy.settings.role_settings()`):
    a role row of a role that carries one is that role, showing the value its row holds.
    """
    sites: dict[str, Site] = {}
    servers: dict[str, _ServerRows] = {}
    components: dict[str, Mapping[str, Any]] = {}
    accounts: set[KnownAccount] = set()
    issues: list[ReadIssue] = []

    for record in records:
        kind = record.get("Kind")
        code = _text(record.get("SiteCode")).upper()
        if kind == "Site":
            site = _site(record)
            sites[site.code] = site
        elif kind == "Role":
            _take_role(servers, code, record)
        elif kind == "SupComponent":
            components.setdefault(code, record)
        elif kind == "Account":
            accounts.update(_account(code, record))

    built: list[SiteSystemServer] = []
    for rows in servers.values():
        server = _server(rows, sites, components, issues)
        if server is not None:
            built.append(_with_settings(server, rows, settings))
    built.sort(key=lambda s: (s.site_code, s.key))
    state = SiteState(
        sites=sorted(sites.values(), key=lambda s: s.code), servers=built, accounts=accounts
    )
    for issue in issues:
        log.warning("read: %s", issue)
    return SiteRead(state, tuple(issues))


def _with_settings(
    server: SiteSystemServer, rows: _ServerRows, settings: Sequence[RoleSetting]
) -> SiteSystemServer:
    """`server` with each role that carries a setting of its own, showing its row's value."""
    for setting in settings:
        carrier = setting.role
        if carrier is None:
            continue
        name = carrier.ROLE_NAME.lower()
        for row in rows.role_rows:
            if _text(row.get("RoleName")).lower() == name:
                if not server.has_role(carrier):  # read as an OtherRole of that name
                    others = tuple(
                        r
                        for r in server.roles
                        if not (isinstance(r, OtherRole) and r.name.lower() == name)
                    )
                    server = attrs.evolve(server, roles=(*others, carrier()))
                server = setting.show(server, setting.from_record(row))
    return server


def _take_role(servers: dict[str, _ServerRows], code: str, record: Mapping[str, Any]) -> None:
    """File a role row under its server (the site system role's row holds the proxy)."""
    name = server_name(record.get("ServerName"))
    if not name:
        return
    rows = servers.setdefault(name.lower(), _ServerRows(code, name))
    if _text(record.get("RoleName")).lower() != SITE_SYSTEM_ROLE.lower():
        rows.role_rows.append(record)
    elif rows.system_row is None:
        rows.system_row = record
        rows.site_code = code


def _account(code: str, record: Mapping[str, Any]) -> list[KnownAccount]:
    """The account of an Account row; none (logged) when its name is not one."""
    user = _text(record.get("UserName"))
    try:
        validate_account_name(user, "account.name")
    except ValidationError as exc:
        log.debug("skipping account %r at %s: %s", user, code, exc.reason)
        return []
    return [KnownAccount(user, code)]


def _server(
    rows: _ServerRows,
    sites: Mapping[str, Site],
    components: Mapping[str, Mapping[str, Any]],
    issues: list[ReadIssue],
) -> SiteSystemServer | None:
    proxy = ProxySettings.disabled()
    if rows.system_row is not None:
        try:
            proxy = proxy_from_record(rows.system_row)
        except ValidationError as exc:
            issues.append(
                ReadIssue(
                    rows.site_code,
                    rows.name,
                    f"its proxy cannot be used as read ({exc}); treated as no proxy. Set the "
                    "proxy again (or remove it) to repair it.",
                )
            )
    roles = [_role(r, rows, sites, components) for r in rows.role_rows]
    try:
        return SiteSystemServer(
            name=rows.name, site_code=rows.site_code, proxy=proxy, roles=tuple(roles)
        )
    except ValidationError as exc:
        issues.append(ReadIssue(rows.site_code, rows.name, f"skipped: {exc}"))
        return None


def _role(
    record: Mapping[str, Any],
    rows: _ServerRows,
    sites: Mapping[str, Site],
    components: Mapping[str, Mapping[str, Any]],
) -> Role:
    role_name = _text(record.get("RoleName"))
    code = _text(record.get("SiteCode")).upper() or rows.site_code
    if role_name.lower() == SoftwareUpdatePoint.ROLE_NAME.lower():
        flags = sup_flags_from_record(record)
        site = sites.get(code)
        component = components.get(code)
        if component is None and site is not None and site.type is SiteType.SECONDARY:
            # A secondary site's SUP always synchronises from its parent's SUP.
            source, upstream = SupSyncSource.UPSTREAM, None
        else:
            source, upstream = sync_source_from_record(component)
        return SoftwareUpdatePoint(
            use_proxy=flags.use_proxy,
            use_proxy_for_adr=flags.use_proxy_for_adr,
            sync_source=source,
            upstream_server=upstream,
        )
    if role_name.lower() == DistributionPoint.ROLE_NAME.lower():
        if _int(record.get("IsCloud")) == 1 or rows.name.lower().endswith(".cloudapp.net"):
            site = sites.get(code)
            managing = site.server if site is not None and site.type is SiteType.PRIMARY else None
            return CloudDistributionPoint(managing_site_server=managing)
        if _int(record.get("ConnectedCacheEnabled")) == 1:
            return ConnectedCacheDistributionPoint()
        return DistributionPoint()
    return role_for_name(role_name)
