"""The `cmproxy` command: show, plan, apply, recover and diagnose the proxies of a ConfigMgr site.

A thin face over the public API (`cmproxy.__all__`): every command opens one `Session` to the
SMS Provider, calls the SDK, and renders what comes back as a rich table or, with `--json`,
as JSON on stdout. Only `emulator serve` and `demo` reach into `cmproxy.emulator`.

Connection options fall back to `CMPROXY_*` environment variables (`ConnectionInfo.from_env`);
the password is best given as `CMPROXY_PASSWORD` or typed at the prompt, and never printed.

Exit codes: 0 done; 1 a change or check failed, the user declined, or the site could not be
reached; 2 bad usage or a desired state that is invalid or refused by a rule (nothing written);
130 interrupted.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
import traceback
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

import cmproxy
from cmproxy import (
    AuthenticationError,
    BulkPlan,
    CMProxyError,
    ConnectionInfo,
    DesiredSpec,
    DesiredStateError,
    Diagnosis,
    Journal,
    Outcome,
    Results,
    RuleViolation,
    Secret,
    Session,
    SiteState,
    SoftwareUpdatePoint,
    ValidationError,
)
from cmproxy.desired import examples_dir
from cmproxy.transaction import RECOVERED

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "app", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Auth protocols that need a password (kerberos may use a ticket; certificate a key).
_PASSWORD_AUTHS = frozenset({"negotiate", "ntlm", "credssp", "basic"})
_MASK = "********"

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

app = typer.Typer(
    name="cmproxy",
    help="Manage the proxy settings of ConfigMgr (SCCM/MECM) site system servers over WinRM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
emulator_app = typer.Typer(
    help="Run the emulated ConfigMgr site (a real WinRM endpoint on this machine).",
    no_args_is_help=True,
)
app.add_typer(emulator_app, name="emulator")


# -- consoles and output ----------------------------------------------------------------------


def make_console(*, stderr: bool = False) -> Console:
    """A console for tables; wide enough for server names when not writing to a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else 160
    return Console(stderr=stderr, width=width, highlight=False)


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


# -- options shared by every command that connects ----------------------------------------------

_CONN = "Connection (default: CMPROXY_* environment variables)"


@dataclasses.dataclass(frozen=True)
class Common:
    """The connection, journal and debug options of a command."""

    server: str | None = None
    port: int | None = None
    scheme: str | None = None
    auth: str | None = None
    username: str | None = None
    #: A `Secret`, so the options' repr / `dataclasses.asdict` never show it.
    password: Secret | None = None
    transport: str | None = None
    ca_cert: str | None = None
    no_cert_validation: bool = False
    site_code: str | None = None
    journal: Path | None = None
    debug: bool = False

    def secrets(self) -> list[str]:
        """Values that must never be printed."""
        found = [
            self.password.reveal() if self.password else "",
            os.environ.get("CMPROXY_PASSWORD", ""),
        ]
        return [s for s in found if s]

    def connection(self, *, interactive: bool) -> ConnectionInfo:
        """The ConnectionInfo: flags first, then CMPROXY_* variables, then a password prompt."""
        overrides: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "server",
                "port",
                "scheme",
                "auth",
                "username",
                "password",
                "transport",
                "ca_cert",
                "site_code",
            )
            if getattr(self, name) is not None
        }
        if self.no_cert_validation:
            overrides["cert_validation"] = False
            overrides["ca_cert"] = None
        info = ConnectionInfo.from_env(**overrides)
        if info.password is None and info.auth in _PASSWORD_AUTHS:
            if not interactive:
                raise ValidationError(
                    "password",
                    None,
                    f"is not set for {info.username}: set CMPROXY_PASSWORD, or run in a "
                    "terminal to be asked",
                )
            typed = typer.prompt(f"Password for {info.username}", hide_input=True)
            info = info.evolve(password=typed)
        return info

    def open_journal(self) -> Journal:
        return Journal(self.journal) if self.journal is not None else Journal()


def common_from(options: dict[str, Any]) -> Common:
    """The shared options as typer gives them; the password becomes a `Secret` at once (an
    empty `--password` is none: the variable or the prompt comes next)."""
    password = options.get("password")
    return Common(**{**options, "password": Secret(password) if password else None})


_COMMON_OPTIONS: list[tuple[str, Any, Any]] = [
    (
        "server",
        str | None,
        typer.Option(
            "--server", help="SMS Provider host name (env CMPROXY_SERVER)", rich_help_panel=_CONN
        ),
    ),
    (
        "port",
        int | None,
        typer.Option(
            "--port",
            help="WinRM port (default 5986 https, 5985 http) (env CMPROXY_PORT)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "scheme",
        str | None,
        typer.Option(
            "--scheme", help="https (default) or http (env CMPROXY_SCHEME)", rich_help_panel=_CONN
        ),
    ),
    (
        "auth",
        str | None,
        typer.Option(
            "--auth",
            help="negotiate (default), ntlm, kerberos, credssp, basic, certificate "
            "(env CMPROXY_AUTH)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "username",
        str | None,
        typer.Option(
            "--username", "-u", help="DOMAIN\\user (env CMPROXY_USERNAME)", rich_help_panel=_CONN
        ),
    ),
    (
        "password",
        str | None,
        typer.Option(
            "--password",
            help="Prefer CMPROXY_PASSWORD or the prompt: a flag is visible to other users "
            "(env CMPROXY_PASSWORD)",
            rich_help_panel=_CONN,
            show_default=False,
        ),
    ),
    (
        "transport",
        str | None,
        typer.Option(
            "--transport",
            help="psrp (default) or winrm (env CMPROXY_TRANSPORT)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "ca_cert",
        str | None,
        typer.Option(
            "--ca-cert",
            help="PEM bundle of the CA that signed the server certificate (env CMPROXY_CA_CERT)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "no_cert_validation",
        bool,
        typer.Option(
            "--no-cert-validation",
            help="Do not verify the server certificate (unsafe; prefer --ca-cert)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "site_code",
        str | None,
        typer.Option(
            "--site-code",
            help="Site code of the provider's site (default: discovered) (env CMPROXY_SITE_CODE)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "journal",
        Path | None,
        typer.Option(
            "--journal",
            help="Transaction journal (env CMPROXY_JOURNAL; default ~/.cmproxy/journal.sqlite3)",
            rich_help_panel=_CONN,
            dir_okay=False,
        ),
    ),
    (
        "debug",
        bool,
        typer.Option("--debug", help="Show tracebacks on errors", envvar="CMPROXY_DEBUG"),
    ),
]

F = typing.TypeVar("F", bound=Callable[..., Any])


def with_common(func: F) -> F:
    """Give a command the shared options; it receives them as `common: Common`.

    Typer reads parameters from the signature, so the wrapper's signature is the command's own
    parameters (minus `common`) followed by the shared options.
    """
    hints = typing.get_type_hints(func, include_extras=True)
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "common"]
    params = [p.replace(annotation=hints[p.name]) for p in own]
    for name, kind, option in _COMMON_OPTIONS:
        default = False if kind is bool else None
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, option],
            )
        )
    names = {name for name, _k, _o in _COMMON_OPTIONS}

    def wrapper(**kwargs: Any) -> Any:
        common = common_from({k: kwargs.pop(k) for k in list(kwargs) if k in names})
        with handled(common, json_output=bool(kwargs.get("json_output"))):
            return func(common=common, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    wrapper.__doc__ = func.__doc__
    wrapper.__module__ = func.__module__
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return typing.cast(F, wrapper)


# -- errors -----------------------------------------------------------------------------------


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _MASK)
    return text


def _error_record(error: BaseException) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, ValidationError):
        record.update(rule=error.rule, field=error.field, reason=error.reason)
    if isinstance(error, DesiredStateError):
        record.update(source=error.source, line=error.line, column=error.column)
    return record


class UsageError(Exception):
    """The command line cannot be acted on (exit 2)."""


def _describe_error(error: BaseException) -> tuple[str, int]:
    """The message to print and the exit code."""
    if isinstance(error, UsageError):
        return str(error), EXIT_USAGE
    if isinstance(error, DesiredStateError):
        return f"invalid desired state: {error}. Nothing was written.", EXIT_USAGE
    if isinstance(error, RuleViolation):
        return (
            f"refused by rule {error.rule}: {error.field} = {error.value!r}: {error.reason} "
            "Nothing was written.",
            EXIT_USAGE,
        )
    if isinstance(error, ValidationError):
        rule = f" (rule {error.rule})" if error.rule else ""
        return (
            f"invalid {error.field}{rule}: {error.reason} (got {error.value!r}). "
            "Nothing was written.",
            EXIT_USAGE,
        )
    if isinstance(error, AuthenticationError):
        return f"authentication failed: {error}", EXIT_FAILED
    if isinstance(error, CMProxyError):
        return f"{type(error).__name__}: {error}", EXIT_FAILED
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error}", EXIT_FAILED
    return f"unexpected {type(error).__name__}: {error} (run with --debug for details)", EXIT_FAILED


@contextmanager
def handled(common: Common, *, json_output: bool = False) -> Iterator[None]:
    """Print errors without tracebacks (unless --debug) and never with a password."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        make_console(stderr=True).print("interrupted", style="bold red")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as error:  # the one place errors meet the user
        secrets = common.secrets()
        message, code = _describe_error(error)
        if common.debug:
            sys.stderr.write(_scrub(traceback.format_exc(), secrets))
        if json_output:
            record = {
                k: _scrub(str(v), secrets) if isinstance(v, str) else v
                for k, v in _error_record(error).items()
            }
            _emit_json({"ok": False, "error": record})
        err = make_console(stderr=True)
        # one line however narrow the terminal: scripts grep it, people copy it
        err.print(
            Text("error: ", style="bold red") + Text(_scrub(message, secrets)), soft_wrap=True
        )
        raise typer.Exit(code) from None


# -- rendering --------------------------------------------------------------------------------


def _onoff(flag: bool) -> Text:
    return Text("on", style="green") if flag else Text("off", style="dim")


def state_to_dict(state: SiteState) -> dict[str, Any]:
    """The hierarchy as plain data (no secrets)."""
    servers = []
    for server in state.servers:
        sup = server.role(SoftwareUpdatePoint)
        servers.append(
            {
                "site": server.site_code,
                "name": server.name,
                "roles": [r.name for r in server.roles],
                "proxy": server.proxy.normalized().to_dict(),
                "sup": {"use_proxy": sup.use_proxy, "use_proxy_for_adr": sup.use_proxy_for_adr}
                if isinstance(sup, SoftwareUpdatePoint)
                else None,
            }
        )
    sites = [
        {
            "code": s.code,
            "type": s.type.value,
            "parent": s.parent,
            "server": s.server,
            "name": s.name,
        }
        for s in state.sites
    ]
    return {"sites": sites, "servers": servers}


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
        sup = server.role(SoftwareUpdatePoint)
        table.add_row(
            server.site_code,
            server.name,
            ", ".join(r.name for r in server.roles),
            Text(f"{proxy.server}:{proxy.port}") if proxy.enabled else Text("none", style="dim"),
            (proxy.account or "System") if proxy.enabled else "",
            _onoff(sup.use_proxy) if isinstance(sup, SoftwareUpdatePoint) else "",
            _onoff(sup.use_proxy_for_adr) if isinstance(sup, SoftwareUpdatePoint) else "",
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


# -- shared steps -----------------------------------------------------------------------------


def _interactive() -> bool:
    return sys.stdin.isatty()


def _prompt_password(text: str) -> str:
    return str(typer.prompt(text.rstrip(": "), hide_input=True))


def load_spec(path: Path) -> DesiredSpec:
    """Load a desired-state file; account passwords come from env vars or a prompt."""
    return cmproxy.load_desired(path, prompt=_prompt_password if _interactive() else None)


@contextmanager
def open_session(common: Common) -> Iterator[Session]:
    info = common.connection(interactive=_interactive())
    with Session(info) as session:
        yield session


def _exit(code: int) -> NoReturn:
    raise typer.Exit(code)


JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of tables")]
DesiredFile = Annotated[
    Path,
    typer.Option(
        "--file",
        "-f",
        help=f"Desired-state YAML file (examples: {examples_dir()})",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]


# -- commands ---------------------------------------------------------------------------------


@app.command()
@with_common
def show(
    common: Common,
    site: Annotated[
        list[str] | None,
        typer.Option("--site", help="Only these sites (repeatable); default: the hierarchy"),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Show servers, roles, proxies and SUP proxy options of a site or the whole hierarchy."""
    codes = [c.upper() for c in site or []]
    with open_session(common) as session:
        state = session.read_state(site_codes=codes or None)
    if json_output:
        data = state_to_dict(state)
        if codes:
            data["sites"] = [s for s in data["sites"] if s["code"] in codes]
            data["servers"] = [s for s in data["servers"] if s["site"] in codes]
        _emit_json(data)
        return
    console = make_console()
    for table in state_tables(state, codes):
        console.print(table)


@app.command()
@with_common
def plan(common: Common, file: DesiredFile, json_output: JsonFlag = False) -> None:
    """Plan the changes a desired-state file needs; nothing is written.

    A desired state that breaks a rule (R1–R14) exits 2 and names the rule and field.
    """
    spec = load_spec(file)
    with open_session(common) as session:
        bulk = cmproxy.plan_bulk([session], spec)
    if json_output:
        _emit_json({"ok": True, "changes": bulk.changes, **bulk.to_dict()})
        return
    console = make_console()
    for part in plan_tables(bulk):
        console.print(part)
    console.print(f"{bulk.changes} change(s) planned. Nothing was written.")


@app.command()
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
    json_output: JsonFlag = False,
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
            if json_output:
                _emit_json({"ok": True, "plan": bulk.to_dict(), "results": Results().to_dict()})
            else:
                console.print("No changes: the site is already in the desired state.")
            return
        if not json_output:
            for part in plan_tables(bulk):
                console.print(part)
        if not yes:
            if not _interactive():
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
                progress=False if json_output else None,
            )
        finally:
            journal.close()
    if json_output:
        _emit_json({"ok": results.ok, "plan": bulk.to_dict(), "results": results.to_dict()})
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


@app.command()
@with_common
def recover(
    common: Common,
    json_output: JsonFlag = False,
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
    if json_output:
        _emit_json(
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
            }
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


@app.command()
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
    json_output: JsonFlag = False,
) -> None:
    """Find proxy problems (SUP options without proxy, 12007 ADR failures, …), citing rules.

    Exits 1 when an error is found.
    """
    spec = load_spec(file) if file is not None else None
    with open_session(common) as session:
        desired = spec.resolve(session.read_state()) if spec is not None else None
        diagnosis = cmproxy.diagnose(session, desired, log_lines=log_lines)
    if json_output:
        _emit_json(diagnosis.to_dict())
    else:
        console = make_console()
        if not diagnosis.findings:
            console.print("No proxy problems found.")
        else:
            console.print(diagnosis_table(diagnosis))
    _exit(EXIT_OK if diagnosis.ok else EXIT_FAILED)


def doctor_renderables(report: cmproxy.DoctorReport) -> list[Table | Text]:
    """The doctor's report as rich tables: facts, where each proxy setting lives, checks."""
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


@app.command()
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
    json_output: JsonFlag = False,
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
    if json_output:
        _emit_json(report.to_dict())
    else:
        console = make_console()
        for part in doctor_renderables(report):
            console.print(part)
    _exit(EXIT_OK if report.ok else EXIT_FAILED)


@emulator_app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def emulator_serve(ctx: typer.Context) -> None:
    """Serve the emulated site in the foreground until Ctrl-C (options: serve --help)."""
    require_emulator()
    from cmproxy.emulator import serve  # noqa: PLC0415 - the emulator is loaded only here

    raise typer.Exit(serve.main(["serve", *ctx.args]))


def require_emulator() -> None:
    """Exit 1 with one line naming the extra when the emulator's dependencies are missing
    (a base `pip install cmproxy` has none of them)."""
    try:
        import cmproxy.emulator._extra  # noqa: F401, PLC0415 - raises naming the extra
    except ImportError as error:
        make_console(stderr=True).print(
            Text("error: ", style="bold red") + Text(str(error)), soft_wrap=True
        )
        raise typer.Exit(EXIT_FAILED) from None


def start_demo_emulator(state_path: str) -> Any:
    """The emulated demo hierarchy over HTTPS, started (the CLI is the one SDK module that
    imports the emulator; `cmproxy.demo` gets it from here)."""
    from cmproxy.emulator.api import Emulator  # noqa: PLC0415 - the emulator is loaded only here

    return Emulator(seed="demo", https=True, state_path=state_path).start()


@app.command()
def demo() -> None:
    """Rehearse a proxy migration against a built-in emulated site (takes seconds)."""
    require_emulator()
    from cmproxy.demo import run_demo  # noqa: PLC0415 - the emulator is loaded only here

    raise typer.Exit(run_demo(make_console()))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cmproxy {cmproxy.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version"),
    ] = False,
) -> None:
    """Manage the proxy settings of ConfigMgr (SCCM/MECM) site system servers over WinRM.

    Exit codes: 0 done, 1 failed, 2 invalid input or refused by a rule (nothing written).
    """


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cmproxy` console script."""
    app(args=list(argv) if argv is not None else None, prog_name="cmproxy")


if __name__ == "__main__":  # pragma: no cover
    main()
