"""Rich renderers of the SDK's values: tables for the CLI and the demo (no typer, no commands).

The demo imports this module, not the CLI's commands, so `cmproxy.cli.demo` and the commands do
not import each other.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

import cmproxy
from cmproxy import SUP_OPTIONS, BulkPlan, Diagnosis, Outcome, Results, SiteState

__all__ = [
    "CHECK_STYLES",
    "OUTCOME_STYLES",
    "SEVERITY_STYLES",
    "diagnosis_table",
    "doctor_renderables",
    "emit",
    "emit_json",
    "make_console",
    "plan_tables",
    "results_table",
    "state_tables",
    "state_to_dict",
]

#: Rich styles per outcome (the HTML table uses `cmproxy.results.OUTCOME_COLOURS`).
OUTCOME_STYLES: dict[Outcome, str] = {
    Outcome.CHANGED: "bold green",
    Outcome.UNCHANGED: "dim",
    Outcome.ROLLED_BACK: "bold yellow",
    Outcome.FAILED: "bold red",
    Outcome.NOT_VISIBLE: "bold magenta",
}
SEVERITY_STYLES = {"error": "bold red", "warning": "yellow", "info": "cyan"}
CHECK_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "skipped": "dim"}


def make_console(*, stderr: bool = False) -> Console:
    """A console for tables; wide enough for server names when not writing to a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 160
    return Console(stderr=stderr, width=width, highlight=False)


def emit_json(data: Any) -> None:
    """JSON on stdout, for scripts."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def emit(output: str, data: Any) -> None:
    """`data` on stdout as JSON or YAML (`--output json|yaml`), for scripts."""
    if output == "yaml":
        plain = json.loads(json.dumps(data, default=str))  # the same values as the JSON
        sys.stdout.write(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
        sys.stdout.flush()
    else:
        emit_json(data)


def _onoff(flag: bool) -> Text:
    return Text("on", style="green") if flag else Text("off", style="dim")


def state_to_dict(state: SiteState) -> dict[str, Any]:
    """The hierarchy as plain data (no secrets)."""
    servers = []
    for server in state.servers:
        sup = SUP_OPTIONS.value(server)
        servers.append(
            {
                "site": server.site_code,
                "name": server.name,
                "roles": [r.name for r in server.roles],
                "proxy": server.proxy.normalized().to_dict(),
                "sup": sup.to_dict() if sup is not None else None,
            }
        )
    return {"sites": [s.to_dict() for s in state.sites], "servers": servers}


def state_tables(state: SiteState, site_codes: Sequence[str] = ()) -> list[Table]:
    """A sites table and a servers table (grouped by site)."""
    wanted = {c.upper() for c in site_codes}
    sites = Table(title="Sites", title_justify="left")
    for col in ("site", "type", "parent", "site server", "name"):
        sites.add_column(col)
    for s in state.sites:
        if not wanted or s.code in wanted:
            sites.add_row(s.code, s.type.value, s.parent or "", s.server or "", s.name)
    servers = [s for s in state.servers if not wanted or s.site_code in wanted]
    table = Table(
        title=f"Site system servers ({len(servers)})", title_justify="left", show_lines=False
    )
    table.add_column("site")
    table.add_column("server", no_wrap=True)
    table.add_column("roles")
    table.add_column("proxy", no_wrap=True)
    table.add_column("account")
    table.add_column("SUP sync")
    table.add_column("SUP ADR")
    last = None
    for server in sorted(servers, key=lambda s: (s.site_code, s.name)):
        if last is not None and server.site_code != last:
            table.add_section()
        last = server.site_code
        proxy = server.proxy
        sup = SUP_OPTIONS.value(server)
        table.add_row(
            server.site_code,
            server.name,
            ", ".join(r.name for r in server.roles),
            Text(f"{proxy.server}:{proxy.port}") if proxy.enabled else Text("none", style="dim"),
            (proxy.account or "System") if proxy.enabled else "",
            _onoff(sup.use_proxy) if sup is not None else "",
            _onoff(sup.use_proxy_for_adr) if sup is not None else "",
        )
    return [sites, table]


def _value(value: object) -> str:
    if value is None:
        return "none"
    return str(value)


def plan_tables(bulk: BulkPlan) -> list[Table | Text]:
    """One table per SMS Provider: each change with its fields before → after."""
    out: list[Table | Text] = []
    for endpoint, the_plan in bulk.plans:
        if the_plan.is_empty:
            out.append(Text(f"{endpoint}: no changes, the site is already in the desired state."))
        else:
            table = Table(
                title=f"Plan for {endpoint}: {len(the_plan)} change(s)",
                title_justify="left",
                show_lines=True,
            )
            table.add_column("#", justify="right")
            table.add_column("change")
            table.add_column("target", no_wrap=True)
            table.add_column("site")
            table.add_column("before → after")
            for n, change in enumerate(the_plan, 1):
                fields = Text()
                for i, f in enumerate(change.fields):
                    if i:
                        fields.append("\n")
                    fields.append(f"{f.field}: ")
                    fields.append(_value(f.before), style="red")
                    fields.append(" → ")
                    fields.append(_value(f.after), style="green")
                    if f.note:
                        fields.append(f" ({f.note})", style="dim")
                what = Text(change.kind.value)
                for reason in change.reasons:
                    what.append(f"\nbecause {reason}", style="dim")
                table.add_row(str(n), what, change.target, change.site_code, fields)
            out.append(table)
        out.extend(Text(f"warning: {w}", style="yellow") for w in the_plan.warnings)
    return out


def results_table(results: Results, title: str = "Results") -> Table:
    """One row per server, coloured by outcome."""
    table = Table(title=f"{title}: {results.summary()}", title_justify="left")
    table.add_column("site")
    table.add_column("server", no_wrap=True)
    table.add_column("outcome", no_wrap=True)
    table.add_column("before")
    table.add_column("after")
    table.add_column("reason")
    for item in results:
        o = item.outcome
        style = OUTCOME_STYLES[o.outcome]
        table.add_row(
            item.site_code,
            o.server,
            Text(o.outcome.value, style=style),
            o.before.describe() if o.before else "?",
            o.after.describe() if o.after else "?",
            o.reason,
            style="" if o.outcome is not Outcome.FAILED else "red",
        )
    return table


def diagnosis_table(diagnosis: Diagnosis) -> Table:
    table = Table(title=f"Findings ({len(diagnosis)})", title_justify="left", show_lines=True)
    table.add_column("severity")
    table.add_column("rule")
    table.add_column("server", no_wrap=True)
    table.add_column("site")
    table.add_column("finding")
    table.add_column("fix")
    for f in diagnosis:
        table.add_row(
            Text(f.severity, style=SEVERITY_STYLES.get(f.severity, "")),
            f.rule,
            f.server,
            f.site_code,
            f.message,
            f.fix,
        )
    return table


def _doctor_facts(report: cmproxy.DoctorReport) -> list[Table | Text]:
    """The session's facts, then the footnotes of unreadable quotas."""
    facts = Table(title="Session", title_justify="left", show_header=False)
    facts.add_column("what")
    facts.add_column("value")
    for section, values in (
        ("connection", report.connection),
        ("bootstrap", report.bootstrap),
        ("host", report.host),
    ):
        for key, value in values.items():
            facts.add_row(f"{section}.{key}", "" if value is None else str(value))
    for drive in report.drives:
        facts.add_row(
            f"drive {drive.get('Name')}", f"{drive.get('Root')} ({drive.get('Provider')})"
        )
    for obj in report.objects:
        found = f"{obj['count']} found by {obj['read']}"
        facts.add_row(
            f"object {obj['object']}", found + (f": {obj['reason']}" if obj["reason"] else "")
        )
    reasons = list(dict.fromkeys(q["reason"] for q in report.quotas if not q["readable"]))
    for quota in report.quotas:
        shown = (
            quota["value"]
            if quota["readable"]
            else f"not readable [{reasons.index(quota['reason']) + 1}]"
        )
        facts.add_row(quota["path"], shown)
    out: list[Table | Text] = [facts]
    out += [Text(f"  [{n}] {reason}", style="dim") for n, reason in enumerate(reasons, 1)]
    return out


def doctor_renderables(report: cmproxy.DoctorReport) -> list[Table | Text]:
    """The doctor's report as rich tables: facts, where each proxy setting lives, checks."""
    out = _doctor_facts(report)
    shapes = Table(title="Proxy settings: where they live", title_justify="left")
    for col in ("", "setting", "object", "property", "reads", "found in", "value", "note"):
        shapes.add_column(col)
    for shape in report.shapes:
        e = shape.expected
        shapes.add_row(
            Text(shape.status, style=CHECK_STYLES[shape.status]),
            e.setting,
            e.object,
            e.property,
            e.field,
            shape.found_in,
            "" if shape.value is None else str(shape.value),
            shape.detail,
        )
    out.append(shapes)
    if report.write_test is not None:
        w = report.write_test
        text = Text(f"Write test on {w.server}: ")
        text.append(w.status, style=CHECK_STYLES[w.status])
        for line in w.detail_lines():
            text.append(f"\n  {line}")
        out.append(text)
    checks = Table(title="Checks", title_justify="left")
    for col in ("", "check", "detail"):
        checks.add_column(col)
    for check in report.checks:
        checks.add_row(
            Text(check.status, style=CHECK_STYLES[check.status]), check.name, check.detail
        )
    out.append(checks)
    verdict = "all checks passed" if report.ok else f"{len(report.failed())} check(s) FAILED"
    out.append(Text(f"cmproxy doctor: {verdict}", style="bold green" if report.ok else "bold red"))
    return out
