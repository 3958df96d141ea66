"""The commands: each opens one `Session` to the SMS Provider, calls the public API
(`cmproxy.__all__`) and hands what comes back to the renderers. `cmproxy.cli.app` registers
them; only `emulator serve` and `demo` reach into `cmproxy.emulator`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.table import Table
from rich.text import Text

import cmproxy
from cmproxy import DesiredSpec, Results, Session
from cmproxy.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from cmproxy.cli.options import Common, interactive, with_common
from cmproxy.cli.render import (
    OUTCOME_STYLES,
    diagnosis_table,
    doctor_renderables,
    emit,
    make_console,
    plan_tables,
    results_table,
    state_tables,
    state_to_dict,
)
from cmproxy.transaction import RECOVERED


def _prompt_password(text: str) -> str:
    return str(typer.prompt(text.rstrip(": "), hide_input=True))


def load_spec(path: Path) -> DesiredSpec:
    """Load a desired-state file; account passwords come from env vars or a prompt."""
    return cmproxy.load_desired(path, prompt=_prompt_password if interactive() else None)


@contextmanager
def open_session(common: Common) -> Iterator[Session]:
    info = common.connection(interactive=interactive())
    with Session(info) as session:
        yield session


def _exit(code: int) -> NoReturn:
    raise typer.Exit(code)


DesiredFile = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        help="Desired-state YAML file (see examples/)",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]

# -- commands ---------------------------------------------------------------------------------


@with_common
def show(
    common: Common,
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="Only these sites (repeatable); default: the hierarchy"),
    ] = None,
) -> None:
    """Show servers, roles, proxies and SUP proxy options of a site or the whole hierarchy."""
    codes = [c.upper() for c in site or []]
    with open_session(common) as session:
        state = session.read_state(site_codes=codes or None)
    if common.structured:
        data = state_to_dict(state)
        if codes:
            data["sites"] = [s for s in data["sites"] if s["code"] in codes]
            data["servers"] = [s for s in data["servers"] if s["site"] in codes]
        emit(common.output, data)
        return
    console = make_console()
    for table in state_tables(state, codes):
        console.print(table)


@with_common
def plan(common: Common, file: DesiredFile) -> None:
    """Plan the changes a desired-state file needs; nothing is written.

    A desired state that breaks a rule (R1–R14) exits 2 and names the rule and field.
    """
    spec = load_spec(file)
    with open_session(common) as session:
        bulk = cmproxy.plan_bulk([session], spec)
    if common.structured:
        emit(common.output, {"ok": True, "changes": bulk.changes, **bulk.to_dict()})
        return
    console = make_console()
    for part in plan_tables(bulk):
        console.print(part)
    console.print(f"{bulk.changes} change(s) planned. Nothing was written.")


@with_common
def apply(
    common: Common,
    file: DesiredFile,
    *,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking")] = False,
    all_or_nothing: Annotated[
        bool,
        typer.Option("--all-or-nothing", help="If any server fails, put every changed server back"),
    ] = False,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            min=1,
            max=8,
            help="Batches of servers in flight per site (each server its own transaction)",
        ),
    ] = 2,
) -> None:
    """Plan, confirm and apply a desired-state file: one transaction per server.

    A server whose change fails is rolled back to how it was; the others keep their change
    (or are put back too with --all-or-nothing). Exits 1 when any server did not change.
    """
    spec = load_spec(file)
    console = make_console()
    with open_session(common) as session:
        bulk = cmproxy.plan_bulk([session], spec)
        if bulk.is_empty:
            if common.structured:
                emit(
                    common.output,
                    {"ok": True, "plan": bulk.to_dict(), "results": Results().to_dict()},
                )
            else:
                console.print("No changes: the site is already in the desired state.")
            return
        if not common.structured:
            for part in plan_tables(bulk):
                console.print(part)
        if not yes:
            if not interactive():
                raise UsageError(
                    "stdin is not a terminal, so the change cannot be confirmed: pass --yes. "
                    "Nothing was written."
                )
            if not typer.confirm(f"Apply {bulk.changes} change(s)?", default=False):
                make_console(stderr=True).print("Declined. Nothing was written.")
                _exit(EXIT_FAILED)
        journal = common.open_journal()
        try:
            results = cmproxy.apply_bulk(
                [session],
                spec,
                journal=journal,
                all_or_nothing=all_or_nothing,
                per_site=parallel,
                progress=False if common.structured else None,
            )
        finally:
            journal.close()
    if common.structured:
        emit(
            common.output, {"ok": results.ok, "plan": bulk.to_dict(), "results": results.to_dict()}
        )
    else:
        console.print(results_table(results))
        if not results.ok:
            console.print(
                Text(
                    "Some servers were not changed: see the reasons above. Rolled-back servers "
                    "are as they were; a failed one needs a look (then `cmproxy recover`).",
                    style="yellow",
                )
            )
    _exit(EXIT_OK if results.ok else EXIT_FAILED)


@with_common
def recover(
    common: Common,
    quiet_timeout: Annotated[
        float,
        typer.Option(
            "--quiet-timeout",
            min=0.0,
            help="Seconds to spend stopping what the killed run left running on the server "
            "before giving up (the transactions then stay open)",
        ),
    ] = 60.0,
) -> None:
    """Finish transactions a killed run left open in the journal (roll forward or back)."""
    journal = common.open_journal()
    try:
        with open_session(common) as session:
            outcomes = cmproxy.recover(session, journal, quiet_timeout=quiet_timeout)
            endpoint = session.endpoint
    finally:
        journal.close()
    # A transaction left open because what its killed run left running could not be
    # stopped ("not quiet") needs another recover later: not ok, like a failed one.
    ok = all(o.status in RECOVERED for o in outcomes)
    if common.structured:
        emit(
            common.output,
            {
                "ok": ok,
                "endpoint": endpoint,
                "transactions": [
                    {
                        "transaction_id": o.transaction_id,
                        "status": o.status,
                        "detail": o.detail,
                        "servers": [s.to_dict() for s in o.servers],
                    }
                    for o in outcomes
                ],
            },
        )
        _exit(EXIT_OK if ok else EXIT_FAILED)
    console = make_console()
    if not outcomes:
        console.print(f"No unfinished transactions for {endpoint}.")
        return
    table = Table(title=f"Recovered {len(outcomes)} transaction(s)", title_justify="left")
    for col in ("transaction", "status", "server", "outcome", "now", "reason"):
        table.add_column(col)
    for o in outcomes:
        for s in o.servers:
            table.add_row(
                o.transaction_id,
                o.status,
                s.server,
                Text(s.outcome.value, style=OUTCOME_STYLES[s.outcome]),
                s.after.describe() if s.after else "?",
                s.reason,
            )
    console.print(table)
    for o in outcomes:
        if o.status == "not quiet":
            console.print(
                f"[red]Transaction {o.transaction_id} left open:[/red] {o.detail}. "
                "Nothing was decided; run `cmproxy recover` again."
            )
    _exit(EXIT_OK if ok else EXIT_FAILED)


@with_common
def diagnose(
    common: Common,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="Also check a desired-state file for conflicts (R1)",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    log_lines: Annotated[
        int, typer.Option("--log-lines", help="Lines of ruleengine.log to read per site server")
    ] = 2000,
) -> None:
    """Find proxy problems (SUP options without proxy, 12007 ADR failures, …), citing rules.

    Exits 1 when an error is found.
    """
    spec = load_spec(file) if file is not None else None
    with open_session(common) as session:
        desired = spec.resolve(session.read_state()) if spec is not None else None
        diagnosis = cmproxy.diagnose(session, desired, log_lines=log_lines)
    if common.structured:
        emit(common.output, diagnosis.to_dict())
    else:
        console = make_console()
        if not diagnosis.findings:
            console.print("No proxy problems found.")
        else:
            console.print(diagnosis_table(diagnosis))
    _exit(EXIT_OK if diagnosis.ok else EXIT_FAILED)


@with_common
def doctor(
    common: Common,
    write_test: Annotated[
        str | None,
        typer.Option(
            "--write-test",
            metavar="SERVER",
            help="Also write SERVER's own proxy (and SUP options) back as they are, measure "
            "the read after write, and check the site is as it was",
        ),
    ] = None,
    proxy_server: Annotated[
        str | None,
        typer.Option("--proxy-server", help="Server whose proxy object's shape is checked"),
    ] = None,
    sup_server: Annotated[
        str | None,
        typer.Option("--sup-server", help="Software update point whose object is checked"),
    ] = None,
) -> None:
    """Self-check a live site before trusting cmproxy with it; read-only unless --write-test.

    Reports the connection, the session bootstrap, the PowerShell host, the CMSite drives,
    which embedded property holds each proxy setting, and the WinRM quotas where readable.
    Attach the --json output to a bug report: it holds no password. Exits 1 when a check fails.
    """
    with open_session(common) as session:
        journal = common.open_journal() if write_test is not None else None
        try:
            report = cmproxy.doctor(
                session,
                write_test,
                proxy_server=proxy_server,
                sup_server=sup_server,
                journal=journal,
            )
        finally:
            if journal is not None:
                journal.close()
    if common.structured:
        emit(common.output, report.to_dict())
    else:
        console = make_console()
        for part in doctor_renderables(report):
            console.print(part)
    _exit(EXIT_OK if report.ok else EXIT_FAILED)
