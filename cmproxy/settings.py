"""One `Setting` per proxy knob of a server: what every layer needs to know about it, once.

As microsoft.ad's `PropertyInfo` drives its modules from one table, a `Setting` says where a
knob lives on a server and in a snapshot, how two values compare, which cmdlet and template
write it (and how the invocation's parameters map onto the template's), how the template's
read-back record projects onto a value, and which row of the batch template carries it. The
writer (templates, read-back, batches, compare-and-set), the transaction (`settling.shows`,
`settling.expected_after`) and the rollback (`rollback.showing`) read this table instead of
switching on `ChangeKind`. Roles declare which settings they carry (`Role.SETTINGS`).

Accounts are not settings (a `CREATE_ACCOUNT` change creates an object, it sets no knob).

The server proxy and the SUP options are planned by the planner's rules (R1–R11); a role that
carries a setting of its own registers it (`register`): the planner then plans it from a
`SettingRequest`, the writer runs its template, the transaction verifies it, the snapshot
journals it (`ServerSnapshot.settings`), a rollback puts it back and the prelude projects its
role's row as its `row` declares, with no other change (tests/contract/test_new_setting.py is
the worked example; docs/architecture.md counts the files).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import attrs

from cmproxy._exceptions import ValidationError
from cmproxy.invocation import AccountLookup, Invocation
from cmproxy.kinds import ChangeKind
from cmproxy.model import ProxySettings, Role, SiteSystemServer, SupFlags
from cmproxy.reader import proxy_from_record, sup_flags_from_record
from cmproxy.roles import SoftwareUpdatePoint

__all__ = [
    "SERVER_PROXY",
    "SETTINGS",
    "SUP_OPTIONS",
    "Setting",
    "proxy_invocation",
    "register",
    "registered",
    "role_settings",
    "row_projection",
    "setting_for",
    "setting_named",
    "sup_flags_invocation",
]

#: The settings a `ServerSnapshot` holds as fields of their own; others are in its `settings`.
_SNAPSHOT_FIELDS = frozenset({"proxy", "sup"})

_Snapshot = TypeVar("_Snapshot")


@attrs.frozen(eq=False)
class Setting:
    """A proxy knob of a site system server (see the module docstring)."""

    #: The name roles declare it by (`Role.SETTINGS`) and its `ServerSnapshot` field.
    name: str
    #: Carried by every site system server (not by one of its roles)?
    per_server: bool
    #: The change that writes it.
    kind: ChangeKind
    #: The ConfigMgr cmdlet that sets it, and the template that runs that cmdlet.
    cmdlet: str
    template: str
    #: The cmdlet's parameters → the template's parameters.
    parameters: Mapping[str, str]
    #: Its row kind and its compare-and-set column in `Set-ProxyBatch.ps1`.
    batch_kind: str
    batch_column: str
    #: Do two values mean the same (the second may be anything a change holds)?
    same: Callable[[Any, Any], bool]
    #: The value a template's read-back record holds (its projection).
    from_record: Callable[[Mapping[str, Any]], Any]
    #: The value as the batch template's compare-and-set key writes it.
    key: Callable[[Any], str]
    #: Its value on a server that carries it.
    read: Callable[[SiteSystemServer], Any]
    #: `server` showing `value`.
    show: Callable[[SiteSystemServer, Any], SiteSystemServer]
    #: What a site keeps of a value written (a proxy's password cannot be read back).
    stored: Callable[[Any], Any] = lambda value: value
    #: The invocation that sets `value` on `server` (the planner plans the server proxy and
    #: the SUP options by their rules, R1–R11, then builds theirs with it too).
    invocation: Callable[[SiteSystemServer, Any], Invocation] | None = None
    #: Its value as JSON (journals, results) and back.
    encode: Callable[[Any], Any] = lambda value: value
    decode: Callable[[Any], Any] = lambda value: value
    #: A role's own setting: the role class that carries it (the reader builds it from its
    #: role row, showing the row's value).
    role: type[Role] | None = None
    #: A role's own setting: the embedded properties its role row carries to the reader (its
    #: read projection), property name → "Value" or "Value2". The prelude's
    #: ConvertTo-CMProxyRow projects them (`row_projection`); no template is edited for it.
    row: Mapping[str, str] = attrs.field(factory=dict)

    def carried(self, server: SiteSystemServer) -> bool:
        """Does `server` carry it (itself, or one of its roles declares it)?"""
        return self.per_server or any(self.name in role.SETTINGS for role in server.roles)

    def value(self, server: SiteSystemServer) -> Any:
        """Its value on `server`; None when the server does not carry it."""
        return self.read(server) if self.carried(server) else None

    def in_snapshot(self, snapshot: object) -> Any:
        """Its value in a `ServerSnapshot` (a field of its name, or in its `settings`)."""
        if self.name in _SNAPSHOT_FIELDS:
            return getattr(snapshot, self.name)
        return dict(getattr(snapshot, "settings", ())).get(self.name)

    def into_snapshot(self, snapshot: _Snapshot, value: Any) -> _Snapshot:
        """A `ServerSnapshot` holding `value` for it."""
        if self.name in _SNAPSHOT_FIELDS:
            return attrs.evolve(snapshot, **{self.name: value})  # type: ignore[misc]
        values = dict(getattr(snapshot, "settings", ()))
        values[self.name] = value
        return attrs.evolve(snapshot, settings=tuple(sorted(values.items())))  # type: ignore[misc]


def _same_proxy(a: Any, b: Any) -> bool:
    return isinstance(a, ProxySettings) and isinstance(b, ProxySettings) and a.same_as(b)


def proxy_key(proxy: ProxySettings) -> str:
    """A server proxy as the batch template's `Get-ProxyKey` writes it: what the reader
    (`proxy_from_record`) would make of the row, host and account compared case-insensitively
    (DNS and Windows account names are)."""
    if not proxy.enabled:
        return "off"
    return f"on|{(proxy.server or '').lower()}|{proxy.port}|{(proxy.account or '').lower()}"


def sup_key(flags: SupFlags) -> str:
    """SUP options as the batch template's `Get-SupKey` writes them."""
    return f"sup|{int(flags.use_proxy)}|{int(flags.use_proxy_for_adr)}"


def _sup_flags(server: SiteSystemServer) -> SupFlags:
    sup = server.role(SoftwareUpdatePoint)
    assert isinstance(sup, SoftwareUpdatePoint)
    return SupFlags(sup.use_proxy, sup.use_proxy_for_adr)


def _show_sup(server: SiteSystemServer, flags: SupFlags) -> SiteSystemServer:
    roles = tuple(
        attrs.evolve(r, use_proxy=flags.use_proxy, use_proxy_for_adr=flags.use_proxy_for_adr)
        if isinstance(r, SoftwareUpdatePoint)
        else r
        for r in server.roles
    )
    return attrs.evolve(server, roles=roles)


def proxy_invocation(server: SiteSystemServer, after: ProxySettings) -> Invocation:
    """The `Set-CMSiteSystemServer` that gives `server` the proxy `after` (the account is
    looked up by name at the site, so no password is needed for a registered one)."""
    if not after.enabled:
        return Invocation.of(
            "Set-CMSiteSystemServer",
            SiteSystemServerName=server.name,
            SiteCode=server.site_code,
            EnableProxy=False,
        )
    return Invocation.of(
        "Set-CMSiteSystemServer",
        SiteSystemServerName=server.name,
        SiteCode=server.site_code,
        EnableProxy=True,
        ProxyServerName=after.server,
        ProxyServerPort=after.port,
        ProxyAccessAccount=(
            AccountLookup(after.account, server.site_code) if after.account else None
        ),
    )


def sup_flags_invocation(server: SiteSystemServer, after: SupFlags) -> Invocation:
    """The `Set-CMSoftwareUpdatePoint` that gives `server` the SUP options `after`."""
    return Invocation.of(
        "Set-CMSoftwareUpdatePoint",
        SiteSystemServerName=server.name,
        SiteCode=server.site_code,
        UseProxy=after.use_proxy,
        UseProxyForAutoDeploymentRule=after.use_proxy_for_adr,
    )


#: The site system server's one proxy (R1), set with `Set-CMSiteSystemServer`.
SERVER_PROXY = Setting(
    name="proxy",
    per_server=True,
    kind=ChangeKind.SET_SERVER_PROXY,
    cmdlet="Set-CMSiteSystemServer",
    template="Set-ServerProxy",
    parameters={
        "SiteCode": "SiteCode",
        "SiteSystemServerName": "SiteSystemServerName",
        "EnableProxy": "EnableProxy",
        "ProxyServerName": "ProxyServerName",
        "ProxyServerPort": "ProxyServerPort",
        "ProxyAccessAccount": "ProxyAccessAccountName",
    },
    batch_kind="Proxy",
    batch_column="ProxyOk",
    same=_same_proxy,
    from_record=proxy_from_record,
    key=proxy_key,
    read=lambda server: server.proxy,
    show=lambda server, proxy: attrs.evolve(server, proxy=proxy),
    stored=lambda proxy: proxy.replace(password=None),
    invocation=proxy_invocation,
)

#: The software update point's two proxy options (R9), set with `Set-CMSoftwareUpdatePoint`.
SUP_OPTIONS = Setting(
    name="sup",
    per_server=False,
    kind=ChangeKind.SET_SUP_FLAGS,
    cmdlet="Set-CMSoftwareUpdatePoint",
    template="Set-SupProxyFlags",
    parameters={
        "SiteCode": "SiteCode",
        "SiteSystemServerName": "SiteSystemServerName",
        "UseProxy": "UseProxy",
        "UseProxyForAutoDeploymentRule": "UseProxyForAutoDeploymentRule",
    },
    batch_kind="Sup",
    batch_column="SupOk",
    same=lambda a, b: a == b,
    from_record=sup_flags_from_record,
    key=sup_key,
    read=_sup_flags,
    show=_show_sup,
    invocation=sup_flags_invocation,
)

#: The server proxy and the SUP options, in the order of the batch template's compare-and-set
#: columns.
SETTINGS: tuple[Setting, ...] = (SERVER_PROXY, SUP_OPTIONS)

_REGISTRY: dict[str, Setting] = {s.name: s for s in SETTINGS}


def register(setting: Setting) -> Setting:
    """Add a role's own setting (its `invocation` says how to set it); returns it."""
    if setting.invocation is None:
        raise ValidationError("setting.invocation", None, f"{setting.name} needs an invocation")
    for known in _REGISTRY.values():
        if setting.name == known.name or setting.cmdlet == known.cmdlet:
            raise ValidationError(
                "setting", setting.name, f"its name or cmdlet is {known.name}'s already"
            )
    _check_row(setting)
    _REGISTRY[setting.name] = attrs.evolve(setting, kind=ChangeKind.SET_ROLE_SETTING)
    return _REGISTRY[setting.name]


_PROPERTY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


def _check_row(setting: Setting) -> None:
    """A read projection names real properties of a role's row: it becomes PowerShell text."""
    if setting.row and setting.role is None:
        raise ValidationError("setting.row", dict(setting.row), "a read projection needs a role")
    for prop, field in setting.row.items():
        if not _PROPERTY.fullmatch(prop):
            raise ValidationError("setting.row", prop, "is not a property name")
        if field not in ("Value", "Value2"):
            raise ValidationError(f"setting.row.{prop}", field, "is neither Value nor Value2")
    if setting.role is not None and "'" in setting.role.ROLE_NAME:
        raise ValidationError("setting.role", setting.role.ROLE_NAME, "a role name has no quote")


def row_projection() -> str:
    """The read projections of the roles' own settings, as PowerShell statements for the
    prelude's ConvertTo-CMProxyRow (in scope: `$roleName`, `$Role`, `$row`, and `$props`, the
    role's embedded properties by name, built once per row); empty when no role registered
    one. `cmproxy.templates.load_prelude` inserts them."""
    rows: dict[str, dict[str, str]] = {}
    for setting in role_settings():
        if setting.role is not None and setting.row:
            rows.setdefault(setting.role.ROLE_NAME, {}).update(setting.row)
    lines = []
    for role_name, fields in rows.items():
        lines.append(f"    if ($roleName -eq '{role_name}') {{")
        lines.extend(f"        $row['{p}'] = $props['{p}'].{f}" for p, f in fields.items())
        lines.append("    }")
    return "".join(f"{line}\n" for line in lines)


def registered() -> tuple[Setting, ...]:
    """Every setting: the server proxy, the SUP options, then the roles' own."""
    return tuple(_REGISTRY.values())


def role_settings() -> tuple[Setting, ...]:
    """The settings roles registered of their own (the reader maps their role rows)."""
    return tuple(s for s in _REGISTRY.values() if s not in SETTINGS)


def setting_named(name: str) -> Setting:
    """The setting registered as `name`, or a `ValidationError` naming the known ones."""
    found = _REGISTRY.get(name)
    if found is None:
        raise ValidationError("setting", name, f"is not a setting (known: {sorted(_REGISTRY)})")
    return found


class _Command(Protocol):
    @property
    def command(self) -> str: ...


class _ChangeLike(Protocol):
    @property
    def kind(self) -> ChangeKind: ...

    @property
    def invocation(self) -> _Command: ...


def setting_for(change: _ChangeLike | ChangeKind) -> Setting | None:
    """The setting a change writes (None: it writes none, an account creation). A role's own
    setting is known by its change's cmdlet."""
    kind = change if isinstance(change, ChangeKind) else change.kind
    if kind is ChangeKind.SET_ROLE_SETTING and not isinstance(change, ChangeKind):
        return next((s for s in _REGISTRY.values() if s.cmdlet == change.invocation.command), None)
    return next((s for s in SETTINGS if s.kind is kind), None)
