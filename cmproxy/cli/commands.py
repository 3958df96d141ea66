"""The commands: each opens one `Session` to the SMS Provider, calls the public API
(`cmproxy.__all__`) and hands what comes back to the renderers. `cmproxy.cli.typer_app` registers
them; only `emulator serve` and `demo` reach into `cmproxy.emulator`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.table import Table
from rich.text import Text

import cmproxy
from cmproxy import BulkPlan, DesiredSpec, Results, Session, SiteState
from cmproxy.cli.connect import open_session
from cmproxy.cli.errors import EXIT_FAILED, EXIT_OK, RefusedError, UsageError
from cmproxy.cli.options import Common, interactive, with_common
from cmproxy.cli.planfile import SavedPlan, differences, load_plan, save_plan
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
from cmproxy.cli.ui import Ui
from cmproxy.desired import examples_dir
from cmproxy.transaction import RECOVERED

#: Exit code of `plan --detailed-exitcode` when changes are planned (as terraform's).
EXIT_CHANGES = 2
#: Stands in for an account password a read-only plan does not need: a plan writes nothing,
#: so the value never leaves this process (`apply` reads the real one).
_NOT_READ = "not-read-by-a-read-only-plan"


def _ui(common: Common) -> Ui:
    return Ui(live=not common.quiet and not common.structured)


def _prompt_password(text: str) -> str:
    return str(typer.prompt(text.rstrip(": "), hide_input=True))


def _password_sources(text: str) -> tuple[list[str], list[str]]:
    """The accounts of a desired-state text: the variables they read, the ones they prompt."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return [], []  # the parser reports it, with its line
    accounts = doc.get("accounts") if isinstance(doc, dict) else None
    variables: list[str] = []
    prompted: list[str] = []
    for account in accounts if isinstance(accounts, list) else []:
        if isinstance(account, dict) and isinstance(account.get("password_env"), str):
            variables.append(account["password_env"])
        elif isinstance(account, dict) and account.get("prompt") is True:
            prompted.append(str(account.get("name")))
    return variables, prompted


@contextmanager
def _standing_in(variables: Sequence[str]) -> Iterator[list[str]]:
    """Unset password variables set to `_NOT_READ` for the block (yields their names)."""
    missing = [v for v in variables if not os.environ.get(v)]
    for name in missing:
        os.environ[name] = _NOT_READ
    try:
        yield missing
    finally:
        for name in missing:
            os.environ.pop(name, None)


def parse_spec(text: str, source: str, *, passwords: bool = True) -> tuple[DesiredSpec, list[str]]:
    """A desired state and notes for the user. With `passwords=False` (a read-only plan) no
    account password is asked for or required: each one not set is noted instead."""
    if passwords:
        prompt = _prompt_password if interactive() else None
        return cmproxy.parse_desired(text, source=source, prompt=prompt), []
    variables, prompted = _password_sources(text)
    with _standing_in(variables) as missing:
        spec = cmproxy.parse_desired(text, source=source, prompt=lambda _text: _NOT_READ)
    notes = [f"${name} is not set: `apply` needs it (a plan writes nothing)" for name in missing]
    notes += [
        f"the password of {name} is asked by `apply` (a plan writes nothing)" for name in prompted
    ]
    return spec, notes


def load_spec(path: Path, *, passwords: bool = True) -> tuple[DesiredSpec, str, list[str]]:
    """A desired-state file: the spec, its text, and notes (see `parse_spec`)."""
    text = path.read_text(encoding="utf-8")
    spec, notes = parse_spec(text, str(path), passwords=passwords)
    return spec, text, notes


def _exit(code: int) -> NoReturn:
    raise typer.Exit(code)


def _single(codes: Sequence[str]) -> str | None:
    return codes[0] if len(codes) == 1 else None


def _check_sites(state: SiteState, codes: Sequence[str]) -> None:
    """An asked-for site that is not in the hierarchy is an error, not an empty table."""
    known = [s.code for s in state.sites]
    unknown = [c for c in codes if c not in known]
    if unknown:
        raise UsageError(
            f"--site {', '.join(unknown)}: no such site in the hierarchy "
            f"(sites: {', '.join(known) or 'none'})"
        )


#: `--file`/`-f`, required by `plan` (DesiredFile) and optional for `apply` (OptionalDesiredFile,
#: which may apply a saved plan instead); typer copies an option's info for each parameter.
_DESIRED_FILE_OPTION = typer.Option(
    "--file",
    "-f",
    help=f"Desired-state YAML file (examples: {examples_dir()})",
    exists=True,
    dir_okay=False,
    readable=True,
)
DesiredFile = Annotated[Path, _DESIRED_FILE_OPTION]


@with_common
def show(
    common: Common,
    site: Annotated[
        list[str] | None,
        typer.Option(
            "--site",
            help="Only these sites (repeatable); default: the hierarchy. One --site is also "
            "the session's site when --site-code is not given",
        ),
    ] = None,
) -> None:
    """Show servers, roles, proxies and SUP proxy options of a site or the whole hierarchy.

    A site that is not in the hierarchy is an error (exit 2).
    """
    codes = [c.upper() for c in site or []]
    ui = _ui(common)
    with open_session(common, ui, site_code=_single(codes)) as session:
        with ui.status(f"Reading {', '.join(codes) or 'the hierarchy'} from {session.endpoint}…"):
            state = session.read_state(site_codes=codes or None)
        _check_sites(state, codes)
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


def _plan(common: Common, ui: Ui, session: Session, spec: DesiredSpec) -> BulkPlan:
    with ui.status(f"Reading the site from {session.endpoint} and planning…"):
        return cmproxy.plan_bulk([session], spec)


def _print_plan(common: Common, bulk: BulkPlan, notes: Sequence[str]) -> None:
    console = make_console()
    for part in plan_tables(bulk):
        console.print(part)
    for note in notes:
        console.print(Text(f"note: {note}", style="yellow"))


@with_common
def plan(
    common: Common,
    file: DesiredFile,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Save the plan to this file, for `cmproxy apply FILE` (refused there if the "
            "site changed meanwhile)",
            dir_okay=False,
        ),
    ] = None,
    detailed_exitcode: Annotated[
        bool,
        typer.Option(
            "--detailed-exitcode",
            help="Exit 0 when there is nothing to change, 2 when there are changes, 1 on any "
            "error (as terraform plan)",
        ),
    ] = False,
) -> None:
    """Plan the changes a desired-state file needs; nothing is written, no account password
    is needed.

    A desired state that breaks a rule (R1–R14) exits 2 and names the rule and field (1 with
    --detailed-exitcode, where 2 means changes).
    """
    spec, text, notes = load_spec(file, passwords=False)
    ui = _ui(common)
    with open_session(common, ui) as session:
        bulk = _plan(common, ui, session, spec)
        endpoint, site_code = session.endpoint, session.site_code
    if out is not None:
        save_plan(
            out,
            desired_file=file.resolve(),
            desired_text=text,
            bulk=bulk,
            made_on=(endpoint, site_code),
        )
    if common.structured:
        emit(common.output, {"ok": True, "changes": bulk.changes, **bulk.to_dict()})
    else:
        _print_plan(common, bulk, notes)
        make_console().print(f"{bulk.changes} change(s) planned. Nothing was written.")
        if out is not None:
            make_console().print(
                f"Plan saved to {out}: apply it with `cmproxy apply {out}`.", soft_wrap=True
            )
    if detailed_exitcode and not bulk.is_empty:
        _exit(EXIT_CHANGES)


def _confirm(bulk: BulkPlan) -> None:
    if not interactive():
        raise UsageError(
            "stdin is not a terminal, so the change cannot be confirmed: pass --yes. "
            "Nothing was written."
        )
    if not typer.confirm(f"Apply {bulk.changes} change(s)?", default=False):
        make_console(stderr=True).print("Declined. Nothing was written.")
        _exit(EXIT_FAILED)


def _apply(
    common: Common,
    ui: Ui,
    session: Session,
    spec: DesiredSpec,
    bulk: BulkPlan,
    **options: Any,
) -> Results:
    journal = common.open_journal()
    try:
        with ui.apply_progress(bulk) as progress:
            results = cmproxy.apply_bulk(
                [session], spec, journal=journal, progress=False, hooks=[progress.hook], **options
            )
            progress.settle([item.outcome.server for item in results])
    finally:
        journal.close()
    return results


#: `cmproxy apply`'s arguments and options (a table: one entry per option).
SavedPlanArgument = Annotated[
    Path | None,
    typer.Argument(
        help="A plan saved by `cmproxy plan --out`: applied only if the site still gives "
        "the same plan",
        exists=True,
        dir_okay=False,
        show_default=False,
    ),
]
OptionalDesiredFile = Annotated[Path | None, _DESIRED_FILE_OPTION]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking")]
AllOrNothing = Annotated[
    bool,
    typer.Option("--all-or-nothing", help="If any server fails, put every changed server back"),
]
Parallel = Annotated[
    int,
    typer.Option(
        "--parallel",
        min=1,
        max=8,
        help="Batches of servers in flight per site (each server its own transaction)",
    ),
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        max=64,
        help="Servers of a site whose transactions share their round trips; the bar "
        "moves once per batch",
    ),
]


@with_common
def apply(  # noqa: PLR0913 - one parameter per CLI option (declared above)
    common: Common,
    plan_file: SavedPlanArgument = None,
    file: OptionalDesiredFile = None,
    *,
    yes: Yes = False,
    all_or_nothing: AllOrNothing = False,
    parallel: Parallel = 2,
    batch_size: BatchSize = 4,
) -> None:
    """Plan, confirm and apply a desired-state file (or a saved plan): one transaction per
    server.

    A server whose change fails is rolled back to how it was; the others keep their change
    (or are put back too with --all-or-nothing). Exits 1 when any server did not change.
    A saved plan is refused (exit 1, nothing written) when the site has changed since it was
    made: the differences are printed.
    """
    saved, spec, site_code = _apply_input(plan_file, file)
    ui = _ui(common)
    console = make_console()
    with open_session(common, ui, site_code=site_code) as session:
        bulk = _plan(common, ui, session, spec)
        if saved is not None:
            _refuse_drift(saved.plan, bulk, common, saved.endpoint, session.endpoint)
        if bulk.is_empty:
            if common.structured:
                data = {"ok": True, "plan": bulk.to_dict(), "results": Results().to_dict()}
                emit(common.output, data)
            else:
                console.print("No changes: the site is already in the desired state.")
            return
        if not common.structured:
            _print_plan(common, bulk, ())
        if not yes:
            _confirm(bulk)
        results = _apply(
            common,
            ui,
            session,
            spec,
            bulk,
            all_or_nothing=all_or_nothing,
            per_site=parallel,
            batch_size=batch_size,
        )
    _report_applied(common, console, bulk, results)
    _exit(EXIT_OK if results.ok else EXIT_FAILED)


def _apply_input(
    plan_file: Path | None, file: Path | None
) -> tuple[SavedPlan | None, DesiredSpec, str | None]:
    """What `apply` applies: a saved plan (its desired state and site) or a desired-state
    file, exactly one of them."""
    if (plan_file is None) == (file is None):
        raise UsageError("give a desired-state file (-f FILE) or a saved plan (PLAN), not both")
    if plan_file is not None:
        saved = load_plan(plan_file)
        spec, _notes = parse_spec(saved.desired_text, saved.source)
        return saved, spec, saved.site_code
    assert file is not None
    spec, _text, _notes = load_spec(file)
    return None, spec, None


def _report_applied(common: Common, console: Any, bulk: BulkPlan, results: Results) -> None:
    """Each server's outcome, as a table or structured data."""
    if common.structured:
        data = {"ok": results.ok, "plan": bulk.to_dict(), "results": results.to_dict()}
        emit(common.output, data)
        return
    console.print(results_table(results))
    if not results.ok:
        console.print(
            Text(
                "Some servers were not changed: see the reasons above. Rolled-back servers "
                "are as they were; a failed one needs a look (then `cmproxy recover`).",
                style="yellow",
            )
        )


def _refuse_drift(
    saved: dict[str, Any], bulk: BulkPlan, common: Common, was: str, now: str
) -> None:
    found = differences(saved, bulk.to_dict())
    if not found and was in ("", now):
        return
    if was not in ("", now):
        found.insert(0, f"the plan was made against {was}, this is {now}")
    lines = "\n  ".join(found)
    raise RefusedError(
        f"the site has changed since the plan was made; nothing was written. "
        f"Differences:\n  {lines}\nMake a new plan with `cmproxy plan -f FILE --out PLAN`."
    )


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
        ui = _ui(common)
        with open_session(common, ui) as session:
            with ui.status("Finishing the transactions left open in the journal…"):
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
    spec = load_spec(file)[0] if file is not None else None
    ui = _ui(common)
    with open_session(common, ui) as session, ui.status("Reading the site and its logs…"):
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
    ui = _ui(common)
    with open_session(common, ui) as session, ui.status("Checking the site…"):
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
