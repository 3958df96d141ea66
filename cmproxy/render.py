"""Tables for notebooks: HTML (`_repr_html_`) and pandas DataFrames (`to_dataframe`).

One set of rows per object, written the way an admin writes the values — `CONTOSO\\svc-proxy`,
`proxy.contoso.com:8080`, `off` — never Python reprs (`None`, quotes, doubled backslashes).
The HTML table and the DataFrame are built from the same rows, so they always agree. Pure:
nothing here reads a site, and nothing here ever sees a password (values come as names).

It imports no other cmproxy module at run time (model, roles and plan import it for their
`_repr_html_`): values are recognised by their shape (`_ProxyLike`, `_SupLike`), as in
microsoft.ad's or pandas' formatters, and the classes are named for type checking only.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from cmproxy.model import ProxySettings, SiteState
    from cmproxy.plan import Change, DesiredState, Plan


@runtime_checkable
class _ProxyLike(Protocol):
    """A server proxy (`model.ProxySettings`)."""

    enabled: bool
    server: str | None
    port: int
    account: str | None


@runtime_checkable
class _SupLike(Protocol):
    """The software update point's proxy options (`model.SupFlags`, `roles.SoftwareUpdatePoint`)."""

    use_proxy: bool
    use_proxy_for_adr: bool


__all__ = [
    "DESIRED_STATE_COLUMNS",
    "PLAN_COLUMNS",
    "STATE_COLUMNS",
    "account_text",
    "admin_text",
    "change_row",
    "dataframe",
    "desired_state_rows",
    "html_table",
    "onoff",
    "options_text",
    "plan_html",
    "plan_rows",
    "proxy_text",
    "snapshot_text",
    "state_html",
    "state_rows",
    "state_summary",
]

#: Field names as the console labels them.
_FIELD_NAMES = {
    "enabled": "on/off",
    "use_proxy": "sync",
    "use_proxy_for_adr": "ADR",
}

#: Shown for "nothing there" (no value before a change, an option left as it is).
NOTHING = "—"

PLAN_COLUMNS = ("#", "change", "server", "site", "before", "after", "why", "cmdlet")
STATE_COLUMNS = ("site", "server", "roles", "proxy", "account", "SUP sync", "SUP ADR")
DESIRED_STATE_COLUMNS = ("server", "proxy", "account", "SUP sync", "SUP ADR", "asked by")


def onoff(flag: bool | None) -> str:
    """`on` / `off`, or "—" for an option left as it is."""
    if flag is None:
        return NOTHING
    return "on" if flag else "off"


def proxy_text(proxy: ProxySettings | _ProxyLike | None) -> str:
    """`proxy.contoso.com:8080`, or `off` for no proxy (the account is a column of its own)."""
    if proxy is None:
        return NOTHING
    if not proxy.enabled:
        return "off"
    return f"{proxy.server}:{proxy.port}"


def account_text(proxy: ProxySettings | _ProxyLike | None) -> str:
    """The account a proxy authenticates as: a name, or the server's System account (R3)."""
    if proxy is None or not proxy.enabled:
        return NOTHING
    return proxy.account or "System account"


def admin_text(value: object) -> str:
    """A value as an admin writes it: no quotes, single backslashes, on/off, "—" for none."""
    if value is None:
        return NOTHING
    if isinstance(value, bool):
        return onoff(value)
    if isinstance(value, _ProxyLike):
        if not value.enabled:
            return "off"
        return f"{proxy_text(value)} as {account_text(value)}"
    if isinstance(value, _SupLike):
        return f"sync {onoff(value.use_proxy)}, ADR {onoff(value.use_proxy_for_adr)}"
    return str(value)  # a Secret renders masked by itself


def snapshot_text(snapshot: Any) -> str:
    """A server's proxy and SUP options (a `ServerSnapshot`): `off; SUP sync off, ADR off`."""
    if snapshot is None:
        return "?"
    sup = f"; SUP {admin_text(snapshot.sup)}" if snapshot.sup is not None else ""
    return admin_text(snapshot.proxy) + sup


def html_table(
    rows: Sequence[Mapping[str, object]],
    columns: Sequence[str],
    css_class: str,
    *,
    caption: str = "",
    row_styles: Sequence[str] = (),
) -> str:
    """An escaped HTML table; multi-line cells keep their lines."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for n, row in enumerate(rows):
        style = f' style="{html.escape(row_styles[n])}"' if n < len(row_styles) else ""
        cells = "".join(
            "<td>" + html.escape(str(row.get(c, ""))).replace("\n", "<br>") + "</td>"
            for c in columns
        )
        body.append(f"<tr{style}>{cells}</tr>")
    top = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<table class="{html.escape(css_class)}">{top}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def dataframe(rows: Iterable[Mapping[str, object]], columns: Sequence[str]) -> pd.DataFrame:
    """A DataFrame of `rows` (needs the `pandas` extra)."""
    try:
        import pandas as pd  # noqa: PLC0415 - optional extra
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("to_dataframe() needs pandas: pip install 'cmproxy[pandas]'") from error
    return pd.DataFrame.from_records(list(rows), columns=list(columns))


# -- plans ------------------------------------------------------------------------------------


def _why(change: Change) -> str:
    """Why the change is in the plan: its rules and notes, else what asked for it."""
    lines = [*change.reasons]
    lines += [f"{f.field}: {f.note}" for f in change.fields if f.note]
    if lines:
        return "\n".join(lines)
    asked = ", ".join(change.requested_by) if change.requested_by else ""
    fields = ", ".join(_FIELD_NAMES.get(f.field, f.field) for f in change.fields)
    what = {
        "CREATE_ACCOUNT": "the new proxy authenticates as this account",
        "SET_SERVER_PROXY": f"the desired proxy differs in {fields}",
        "SET_SUP_FLAGS": f"the desired SUP options differ in {fields}",
    }[change.kind.name]
    return f"{what} ({asked})" if asked else what


def change_row(n: int, change: Change) -> dict[str, object]:
    """One plan row: the whole value before and after, as an admin reads it."""
    before: object = change.before
    after: object = change.after
    if change.kind.name == "CREATE_ACCOUNT":
        before, after = "not registered", f"{change.after} (site {change.site_code})"
    return {
        "#": n,
        "change": change.kind.value,
        "server": change.target,
        "site": change.site_code,
        "before": admin_text(before),
        "after": admin_text(after),
        "why": _why(change),
        "cmdlet": change.invocation.render(),
    }


def plan_rows(plan: Plan) -> list[dict[str, object]]:
    return [change_row(n, change) for n, change in enumerate(plan.changes, 1)]


def plan_html(plan: Plan) -> str:
    """An HTML table of a plan: one row per change, warnings below."""
    if plan.is_empty and not plan.warnings:
        return "<p>No changes: the site is already in the desired state.</p>"
    table = html_table(plan_rows(plan), PLAN_COLUMNS, "cmproxy-plan")
    warnings = "".join(f"<li>{html.escape(str(w))}</li>" for w in plan.warnings)
    tail = f"<ul class='cmproxy-warnings'>{warnings}</ul>" if warnings else ""
    return f"<p>{len(plan)} change(s)</p>{table}{tail}"


# -- the hierarchy and desired states ---------------------------------------------------------


def state_rows(state: SiteState) -> list[dict[str, object]]:
    """One row per site system server: its roles, its proxy, its SUP options."""
    rows: list[dict[str, object]] = []
    for server in sorted(state.servers, key=lambda s: (s.site_code, s.key)):
        sup = next((r for r in server.roles if isinstance(r, _SupLike)), None)
        sync = adr = ""
        if sup is not None:
            sync, adr = onoff(sup.use_proxy), onoff(sup.use_proxy_for_adr)
        rows.append(
            {
                "site": server.site_code,
                "server": server.name,
                "roles": ", ".join(r.name for r in server.roles),
                "proxy": proxy_text(server.proxy),
                "account": account_text(server.proxy),
                "SUP sync": sync,
                "SUP ADR": adr,
            }
        )
    return rows


def state_summary(state: SiteState) -> str:
    """`3 site(s) (CAS, PS1, SS1), 40 server(s), 2 account(s)`."""
    codes = ", ".join(s.code for s in state.sites)
    return (
        f"{len(state.sites)} site(s) ({codes}), {len(state.servers)} server(s), "
        f"{len(state.accounts)} account(s)"
    )


def state_html(state: SiteState) -> str:
    sites = ", ".join(
        f"{s.code} ({s.type.value}{', under ' + s.parent if s.parent else ''})" for s in state.sites
    )
    return f"<p>{html.escape(state_summary(state))}: {html.escape(sites)}</p>" + html_table(
        state_rows(state), STATE_COLUMNS, "cmproxy-state"
    )


def desired_state_rows(desired: DesiredState) -> list[dict[str, object]]:
    """One row per server asked for: its proxy and SUP options (— where left as they are)."""
    rows: dict[str, dict[str, object]] = {}

    def row(name: str) -> dict[str, object]:
        empty: dict[str, object] = dict.fromkeys(DESIRED_STATE_COLUMNS, NOTHING)
        return rows.setdefault(
            name.lower(),
            empty | {"server": name, "asked by": ""},
        )

    for request in desired.proxies:
        r = row(request.server)
        r["proxy"] = proxy_text(request.proxy)
        r["account"] = account_text(request.proxy)
        r["asked by"] = request.role or ""
    for flags in desired.sup_flags:
        r = row(flags.server)
        r["SUP sync"] = onoff(flags.use_proxy)
        r["SUP ADR"] = onoff(flags.use_proxy_for_adr)
    return list(rows.values())


def options_text(options: Any) -> str:
    """`sup_flags_on_proxy_removal: turn_off` as the file writes it."""
    return f"sup_flags_on_proxy_removal: {options.sup_flags_on_proxy_removal}"
