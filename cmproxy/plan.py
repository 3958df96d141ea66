"""The planner: current state × desired state → an ordered `Plan`. Pure: no I/O.

It encodes the product rules so that the plan refuses what the product would silently get
wrong (proxy-rules.md):

- R1: one proxy per server; two different proxies wanted for one server is an error.
- R2: a new proxy replaces the old one whole; every field that changes is in the plan, with a
  note where a value falls back to a default (port 80, the System account).
- R5: a proxy wanted for a cloud DP is planned on its managing primary site server.
- R9/R11: SUP options need the server proxy; server proxy first, SUP options after (reverse
  when removing); removing a proxy under SUP options that are on is refused or planned.
- R9: the ADR option at a secondary site is flagged as having no effect.
- Idempotence: desired == current gives an empty plan.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, Protocol

import attrs

from cmproxy._exceptions import RuleViolation, ValidationError
from cmproxy.invocation import Invocation
from cmproxy.kinds import ChangeKind
from cmproxy.model import (
    DEFAULT_PROXY_PORT,
    Account,
    ProxySettings,
    Secret,
    SiteState,
    SiteSystemServer,
    SiteType,
    SupFlags,
    validate_server_name,
)
from cmproxy.render import (
    DESIRED_STATE_COLUMNS,
    PLAN_COLUMNS,
    dataframe,
    desired_state_rows,
    html_table,
    options_text,
    plan_html,
    plan_rows,
)
from cmproxy.roles import CloudDistributionPoint, Role, SoftwareUpdatePoint, SupSyncSource
from cmproxy.settings import (
    proxy_invocation,
    role_settings,
    setting_named,
    sup_flags_invocation,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Change",
    "ChangeKind",
    "DesiredSource",
    "DesiredState",
    "FieldChange",
    "Plan",
    "PlanOptions",
    "PlanWarning",
    "ProxyRequest",
    "SettingRequest",
    "SupFlagsRequest",
    "plan",
    "resolve_desired",
]


def _request_server(value: Any) -> str:
    return validate_server_name(value, "request.server")


@attrs.frozen
class FieldChange:
    """One field that a change modifies, with a note where the product default steps in."""

    field: str
    before: Any
    after: Any
    note: str = ""


@attrs.frozen
class PlanWarning:
    """Something that will be written as asked but will not do what one might expect."""

    rule: str
    server: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.server}: {self.message}"


@attrs.frozen
class Change:
    """One write: its target, its before/after values, and the cmdlet invocation it needs."""

    kind: ChangeKind
    site_code: str
    target: str
    #: ProxySettings, SupFlags, the account name, or a role setting's value (`cmproxy.settings`).
    before: ProxySettings | SupFlags | object | None
    after: ProxySettings | SupFlags | str | object
    fields: tuple[FieldChange, ...]
    invocation: Invocation
    reasons: tuple[str, ...] = ()
    #: What asked for it (a request's `role`, such as a file's "site PS1 default").
    requested_by: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"{self.kind.value} on {self.target} ({self.site_code})"]
        parts += [f"{f.field}: {f.before!r} → {f.after!r}" for f in self.fields]
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; secrets are never included (the invocation masks them)."""

        def plain(value: object) -> Any:
            if isinstance(value, ProxySettings | SupFlags):
                return value.to_dict()
            return value

        return {
            "kind": self.kind.name,
            "site_code": self.site_code,
            "target": self.target,
            "before": plain(self.before),
            "after": plain(self.after),
            "fields": [attrs.asdict(f) for f in self.fields],
            "invocation": self.invocation.to_dict(),
            "reasons": list(self.reasons),
        }


@attrs.frozen
class Plan:
    """Ordered changes plus warnings. Empty when the desired state is already in place."""

    changes: tuple[Change, ...] = ()
    warnings: tuple[PlanWarning, ...] = ()

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    @property
    def is_empty(self) -> bool:
        return not self.changes

    def for_server(self, name: str) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.target.lower() == name.lower())

    def render(self) -> str:
        """A plain-text plan for terminals and logs (secrets masked)."""
        if self.is_empty and not self.warnings:
            return "No changes: the site is already in the desired state."
        lines: list[str] = []
        for n, change in enumerate(self.changes, 1):
            lines.append(f"{n}. {change.kind.value} on {change.target} [{change.site_code}]")
            for f in change.fields:
                note = f"   ({f.note})" if f.note else ""
                lines.append(f"     {f.field}: {f.before!r} -> {f.after!r}{note}")
            lines.extend(f"     because {r}" for r in change.reasons)
            lines.append(f"     > {change.invocation.render()}")
        lines.extend(f"warning: {w}" for w in self.warnings)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return plan_html(self)

    def to_dataframe(self) -> pd.DataFrame:
        """One row per change, values as an admin writes them (`pandas` extra)."""
        return dataframe(plan_rows(self), PLAN_COLUMNS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": [c.to_dict() for c in self.changes],
            "warnings": [attrs.asdict(w) for w in self.warnings],
        }


@attrs.frozen
class ProxyRequest:
    """ "Server `server` should have `proxy`", optionally for one of its roles (named in R1
    and R5 messages)."""

    server: str = attrs.field(converter=_request_server)
    proxy: ProxySettings
    role: str | None = None


@attrs.frozen
class SupFlagsRequest:
    """The SUP options wanted on a server; None leaves an option as it is."""

    server: str = attrs.field(converter=_request_server)
    use_proxy: bool | None = None
    use_proxy_for_adr: bool | None = None


def _proxy_requests(value: Iterable[ProxyRequest]) -> tuple[ProxyRequest, ...]:
    return tuple(value)


def _sup_requests(value: Iterable[SupFlagsRequest]) -> tuple[SupFlagsRequest, ...]:
    return tuple(value)


def _accounts(value: Iterable[Account]) -> tuple[Account, ...]:
    return tuple(value)


@attrs.frozen
class SettingRequest:
    """The value wanted for a setting a role carries of its own (`cmproxy.settings.register`)."""

    server: str = attrs.field(converter=_request_server)
    setting: str
    value: Any


def _setting_requests(value: Iterable[SettingRequest]) -> tuple[SettingRequest, ...]:
    return tuple(value)


@attrs.frozen
class DesiredState:
    """What the caller wants. Accounts carry passwords for those that must be created.

    `options`: the choices that came with it (a desired-state file's `options:`); `plan` uses
    them unless it is given its own.
    """

    proxies: tuple[ProxyRequest, ...] = attrs.field(factory=tuple, converter=_proxy_requests)
    sup_flags: tuple[SupFlagsRequest, ...] = attrs.field(factory=tuple, converter=_sup_requests)
    accounts: tuple[Account, ...] = attrs.field(factory=tuple, converter=_accounts)
    settings: tuple[SettingRequest, ...] = attrs.field(factory=tuple, converter=_setting_requests)
    options: PlanOptions | None = None

    @property
    def servers(self) -> list[str]:
        """Every server asked for (proxy, SUP options or a role's setting), lower-case, once
        each, in order."""
        names = [r.server for r in self.proxies] + [r.server for r in self.sup_flags]
        names += [r.server for r in self.settings]
        return list(dict.fromkeys(n.lower() for n in names))

    def _repr_html_(self) -> str:
        caption = options_text(self.options) if self.options is not None else ""
        accounts = ", ".join(a.name for a in self.accounts)
        tail = f"<p>accounts: {html.escape(accounts)}</p>" if accounts else ""
        rows = desired_state_rows(self)
        table = html_table(rows, DESIRED_STATE_COLUMNS, "cmproxy-desired", caption=caption)
        return table + tail

    def to_dataframe(self) -> pd.DataFrame:
        """One row per server asked for (`pandas` extra)."""
        return dataframe(desired_state_rows(self), DESIRED_STATE_COLUMNS)


@attrs.frozen
class PlanOptions:
    """Choices the rules leave to the caller.

    `sup_flags_on_proxy_removal`: what to do when a server proxy is removed while its SUP
    options are on and the caller did not say (R11): "refuse" (default) or "turn_off".

    `restore`: the desired state is a snapshot being put back (rollback, recovery, undo). A
    snapshot is what the site held, even if it broke R11 (SUP options on without a proxy), so
    R11 does not refuse it; the R11 order of writes still holds.
    """

    sup_flags_on_proxy_removal: Literal["refuse", "turn_off"] = "refuse"
    restore: bool = False


class DesiredSource(Protocol):
    """A desired state still to be met with a site: what `cmproxy.load_desired` returns (a
    `DesiredSpec`, whose site defaults expand over the servers the site holds)."""

    def resolve(self, state: SiteState) -> DesiredState: ...


def resolve_desired(current: SiteState, desired: DesiredState | DesiredSource) -> DesiredState:
    """`desired` as requests for the servers of `current` (a `DesiredState` is one already)."""
    return desired if isinstance(desired, DesiredState) else desired.resolve(current)


def plan(
    current: SiteState,
    desired: DesiredState | DesiredSource,
    options: PlanOptions | None = None,
) -> Plan:
    """Plan the changes that take `current` to `desired`, or raise a `ValidationError`.

    `desired` is a `DesiredState` or what `load_desired` returns; `options` default to the
    ones it carries (a file's `options:`), then to `PlanOptions()`.

    Raises `RuleViolation` (a `ValidationError`) naming the rule when the desired state breaks
    one; nothing is ever partly planned.
    """
    wanted = resolve_desired(current, desired)
    return _Planner(current, wanted, options or wanted.options or PlanOptions()).run()


@attrs.define
class _Target:
    server: SiteSystemServer
    proxy: ProxySettings
    labels: list[str]
    reasons: list[str]
    asked: list[str] = attrs.field(factory=list)


class _Planner:
    def __init__(self, current: SiteState, desired: DesiredState, options: PlanOptions) -> None:
        self.current = current
        self.desired = desired
        self.options = options
        self.warnings: list[PlanWarning] = []

    def run(self) -> Plan:
        targets = self._resolve_proxy_requests()
        sup_after = self._resolve_sup_requests(targets)
        accounts = self._account_changes(targets)
        proxy_changes = [
            c
            for t in sorted(targets.values(), key=lambda t: t.server.key)
            if (c := self._proxy_change(t)) is not None
        ]
        sup_off: list[Change] = []
        sup_other: list[Change] = []
        for server, after in sorted(sup_after.items(), key=lambda i: i[0].key):
            change = self._sup_change(server, after)
            if change is None:
                continue
            (sup_other if after.any else sup_off).append(change)
        # R11 order: SUP options off before a proxy goes away, on only after it exists.
        return Plan(
            changes=(*accounts, *sup_off, *proxy_changes, *sup_other, *self._setting_changes()),
            warnings=tuple(self.warnings),
        )

    # -- the settings roles carry of their own (cmproxy.settings) --------------------------

    def _setting_changes(self) -> list[Change]:
        changes: list[Change] = []
        for n, request in enumerate(self.desired.settings):
            server = self._server(request.server, f"settings[{n}].server")
            setting = setting_named(request.setting)
            build = setting.invocation
            if build is None or setting not in role_settings() or not setting.carried(server):
                raise ValidationError(
                    f"settings[{n}].setting",
                    request.setting,
                    f"{server.name} has no role that carries it",
                )
            before = setting.value(server)
            if setting.same(before, request.value):
                continue
            changes.append(
                Change(
                    kind=ChangeKind.SET_ROLE_SETTING,
                    site_code=server.site_code,
                    target=server.name,
                    before=before,
                    after=request.value,
                    fields=(FieldChange(setting.name, before, request.value),),
                    invocation=build(server, request.value),
                )
            )
        return changes

    # -- server proxies (R1, R2, R5) ------------------------------------------------------

    def _server(self, name: str, field: str) -> SiteSystemServer:
        server = self.current.server(name)
        if server is None:
            raise ValidationError(
                field, name, "is not a site system server in the state that was read"
            )
        return server

    def _resolve_proxy_requests(self) -> dict[str, _Target]:
        targets: dict[str, _Target] = {}
        for n, request in enumerate(self.desired.proxies):
            field = f"proxies[{n}].server"
            server = self._server(request.server, field)
            label = f"{request.role or 'the server'} on {server.name}"
            reasons: list[str] = []
            cloud_dp = server.role(CloudDistributionPoint)
            if isinstance(cloud_dp, CloudDistributionPoint):
                server, reason = self._redirect_cloud_dp(server, cloud_dp, request, field)
                label = f"cloud distribution point {request.server}"
                reasons.append(reason)
            self._check_role_refusals(server, request.proxy, f"proxies[{n}].proxy")
            target = targets.get(server.key)
            if target is None:
                target = targets[server.key] = _Target(server, request.proxy, [label], reasons)
                target.asked.extend([request.role] if request.role else [])
                continue
            if not target.proxy.same_as(request.proxy):
                raise RuleViolation(
                    "R1",
                    f"proxies[{n}]",
                    server.name,
                    f"two different proxies are wanted for one server: "
                    f"{target.proxy.describe()} (for {target.labels[0]}) and "
                    f"{request.proxy.describe()} (for {label}). A site system server has one "
                    "proxy shared by all its roles; put these roles on separate site system "
                    "servers.",
                )
            if target.proxy.password is None and request.proxy.password is not None:
                target.proxy = request.proxy
            target.labels.append(label)
            target.reasons.extend(reasons)
            target.asked.extend([request.role] if request.role else [])
        return targets

    def _redirect_cloud_dp(
        self,
        server: SiteSystemServer,
        cloud_dp: CloudDistributionPoint,
        request: ProxyRequest,
        field: str,
    ) -> tuple[SiteSystemServer, str]:
        managing = cloud_dp.managing_site_server
        if managing is None:
            site = self.current.site(server.site_code)
            managing = site.server if site is not None else None
        managing_server = self.current.server(managing) if managing else None
        if managing_server is None:
            raise RuleViolation(
                "R5",
                field,
                request.server,
                "a proxy cannot be configured on a cloud distribution point in Azure, and the "
                "primary site server that manages it is unknown; set the proxy on that "
                "primary site server instead",
            )
        return managing_server, (
            f"R5: the proxy of cloud distribution point {server.name} is configured on the "
            f"primary site server that manages it ({managing_server.name})"
        )

    def _check_role_refusals(
        self, server: SiteSystemServer, proxy: ProxySettings, field: str
    ) -> None:
        for role in server.roles:
            if isinstance(role, CloudDistributionPoint):
                continue  # requests to cloud DPs were redirected (R5)
            reason = role.refusal(proxy)
            if reason is not None:
                raise ValidationError(
                    field, proxy.describe(), f"{server.name}: {reason}", rule=_rule_of(role)
                )

    def _proxy_change(self, target: _Target) -> Change | None:
        before = target.server.proxy
        after = target.proxy
        if before.same_as(after):
            return None
        server = target.server
        invocation = proxy_invocation(server, after)
        reasons = [*target.reasons]
        if len(target.labels) > 1:
            reasons.append("R1: one proxy for " + ", ".join(target.labels))
        return Change(
            kind=ChangeKind.SET_SERVER_PROXY,
            site_code=server.site_code,
            target=server.name,
            before=before,
            after=after,
            fields=_proxy_fields(before, after),
            invocation=invocation,
            reasons=tuple(reasons),
            requested_by=tuple(dict.fromkeys(target.asked)),
        )

    # -- accounts ---------------------------------------------------------------------------

    def _account_changes(self, targets: dict[str, _Target]) -> list[Change]:
        passwords: dict[str, Secret] = {
            a.name.lower(): a.password for a in self.desired.accounts if a.password is not None
        }
        needed: dict[tuple[str, str], Change] = {}
        for target in sorted(targets.values(), key=lambda t: t.server.key):
            proxy, site = target.proxy, target.server.site_code
            if not proxy.enabled or proxy.account is None:
                continue
            if self.current.has_account(proxy.account, site):
                continue
            key = (proxy.account.lower(), site)
            if key in needed:
                continue
            password = proxy.password or passwords.get(proxy.account.lower())
            if password is None:
                raise ValidationError(
                    "proxy.password",
                    None,
                    f"account {proxy.account} does not exist at site {site}; give its password "
                    "so cmproxy can create it with New-CMAccount",
                )
            needed[key] = Change(
                kind=ChangeKind.CREATE_ACCOUNT,
                site_code=site,
                target=proxy.account,
                before=None,
                after=proxy.account,
                fields=(FieldChange("account", None, proxy.account),),
                invocation=Invocation.of(
                    "New-CMAccount", UserName=proxy.account, Password=password, SiteCode=site
                ),
                reasons=(f"the proxy of {target.server.name} authenticates as {proxy.account}",),
            )
        return list(needed.values())

    # -- software update point options (R9, R10, R11) ----------------------------------------

    def _resolve_sup_requests(
        self, targets: dict[str, _Target]
    ) -> dict[SiteSystemServer, SupFlags]:
        wanted: dict[SiteSystemServer, SupFlags] = {}
        for n, request in enumerate(self.desired.sup_flags):
            field = f"sup_flags[{n}]"
            server = self._server(request.server, f"{field}.server")
            sup = server.role(SoftwareUpdatePoint)
            if not isinstance(sup, SoftwareUpdatePoint):
                raise ValidationError(
                    f"{field}.server", server.name, "does not host a software update point"
                )
            base = wanted.get(server, _flags(sup))
            after = SupFlags(
                base.use_proxy if request.use_proxy is None else request.use_proxy,
                base.use_proxy_for_adr
                if request.use_proxy_for_adr is None
                else request.use_proxy_for_adr,
            )
            wanted[server] = after
            self._check_sup(server, sup, after, targets, field)
        # Servers whose proxy goes away while their SUP options stay on (R11).
        for target in targets.values():
            server = target.server
            sup = server.role(SoftwareUpdatePoint)
            if target.proxy.enabled or not isinstance(sup, SoftwareUpdatePoint):
                continue
            flags = wanted.get(server, _flags(sup))
            if not flags.any:
                continue
            if self.options.restore:
                continue  # the snapshot had them on without a proxy: put it back as it was
            if server in wanted or self.options.sup_flags_on_proxy_removal == "refuse":
                raise RuleViolation(
                    "R11",
                    "proxies",
                    server.name,
                    f"the server proxy would be removed while its software update point still "
                    f"uses it ({flags.describe()}); turn the SUP options off in the same change "
                    "(sup_flags) or plan with sup_flags_on_proxy_removal='turn_off'",
                )
            wanted[server] = SupFlags(False, False)
        return wanted

    def _check_sup(
        self,
        server: SiteSystemServer,
        sup: SoftwareUpdatePoint,
        after: SupFlags,
        targets: dict[str, _Target],
        field: str,
    ) -> None:
        target = targets.get(server.key)
        proxy = target.proxy if target is not None else server.proxy
        if after.any and not proxy.enabled and not self.options.restore:
            raise RuleViolation(
                "R11",
                field,
                after.describe(),
                server.name + " has no server proxy; the software update point options can "
                "only be used once a proxy is configured on the site system server (WSUS would "
                "fail with 'The address of the proxy server cannot be empty'). Configure the "
                "server proxy in the same change.",
            )
        site = self.current.site(server.site_code)
        if after.use_proxy_for_adr and site is not None and site.type is SiteType.SECONDARY:
            self.warnings.append(
                PlanWarning(
                    "R9",
                    server.name,
                    "the ADR proxy option is set on a SUP at secondary site "
                    f"{site.code}, where it has no effect (only CAS/primary SUPs download "
                    "ADR content)",
                )
            )
        if after.use_proxy and sup.sync_source is SupSyncSource.UPSTREAM:
            self.warnings.append(
                PlanWarning(
                    "R9",
                    server.name,
                    "this SUP synchronises from an upstream server "
                    f"({sup.upstream_server or 'unknown'}), not from Microsoft Update, so the "
                    "sync proxy option is not used",
                )
            )

    def _sup_change(self, server: SiteSystemServer, after: SupFlags) -> Change | None:
        sup = server.role(SoftwareUpdatePoint)
        assert isinstance(sup, SoftwareUpdatePoint)
        before = _flags(sup)
        if before == after:
            return None
        fields = tuple(
            FieldChange(name, getattr(before, name), getattr(after, name))
            for name in ("use_proxy", "use_proxy_for_adr")
            if getattr(before, name) != getattr(after, name)
        )
        reasons = () if after.any else ("R11: SUP options off before the server proxy changes",)
        return Change(
            kind=ChangeKind.SET_SUP_FLAGS,
            site_code=server.site_code,
            target=server.name,
            before=before,
            after=after,
            fields=fields,
            invocation=sup_flags_invocation(server, after),
            reasons=reasons,
        )


def _flags(sup: SoftwareUpdatePoint) -> SupFlags:
    return SupFlags(sup.use_proxy, sup.use_proxy_for_adr)


def _rule_of(role: Role) -> str:
    return role.RULE.split(",")[0].strip() or "R1"


def _proxy_fields(before: ProxySettings, after: ProxySettings) -> tuple[FieldChange, ...]:
    """Every field that differs, with R2 notes where a default replaces a kept value."""
    b, a = before.normalized(), after.normalized()
    changes: list[FieldChange] = []
    if b.enabled != a.enabled:
        changes.append(FieldChange("enabled", b.enabled, a.enabled))
    if not a.enabled:
        return tuple(changes)
    if b.server != a.server:
        changes.append(FieldChange("server", b.server, a.server))
    if b.port != a.port:
        note = ""
        if b.enabled and a.port == DEFAULT_PROXY_PORT:
            note = "R2: the new proxy replaces the old one whole; the port falls back to 80"
        changes.append(FieldChange("port", b.port if b.enabled else None, a.port, note))
    if b.account != a.account:
        note = ""
        if b.enabled and b.account is not None and a.account is None:
            note = "R2/R3: the account falls back to the server's System account"
        changes.append(FieldChange("account", b.account, a.account, note))
    return tuple(changes)
