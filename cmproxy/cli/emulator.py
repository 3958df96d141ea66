"""`cmproxy emulator serve`: the emulated site in the foreground, with every fault of
`cmproxy.emulator.settings.Faults` armable from the command line.

Faults are armed when the emulator starts and count from then (a request or cmdlet call
number is 1-based and counts every request, the session bootstrap's included). To rehearse
another failure, stop the emulator and serve it again with other options (the state file
keeps the site as the last run left it when `--state` names one). The emulator is loaded only
when a command here runs: the SDK never imports it.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer
from rich.text import Text

from cmproxy.cli.errors import EXIT_FAILED
from cmproxy.cli.render import make_console

__all__ = ["emulator_app", "start_demo_emulator"]

emulator_app = typer.Typer(
    help="Run the emulated ConfigMgr site (a real WinRM endpoint on this machine).",
    no_args_is_help=True,
)

_COSTS = "Simulated costs (seconds)"
_FAULTS = "Faults (armed at start; counters are 1-based)"
_QUOTAS = "WinRM quotas"

#: The defaults of the emulator's settings, repeated so `--help` can show them without
#: loading the emulator; tests/cli/test_emulator_serve.py checks them against the settings.
DEFAULT_USER = "CONTOSO\\cmadmin"
DEFAULT_PASSWORD = "Emulat0r-Passw0rd!"  # noqa: S105 - the emulator's well-known test credential
DEFAULT_MAX_SHELLS_PER_USER = 30
DEFAULT_PLUGIN_MAX_SHELLS_PER_USER = 25
DEFAULT_WSMAN_FAULT_CODE = 2150858843
DEFAULT_FAIL_CMDLET_ERROR_ID = "ProviderBusy"


def _pairs(values: list[str] | None, option: str, sep: str, what: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for value in values or []:
        left, found, right = value.partition(sep)
        if not found or not left or not right:
            raise typer.BadParameter(f"needs {what}, got {value!r}", param_hint=option)
        pairs.append((left, right))
    return pairs


def _lags(values: list[str] | None) -> dict[str, float]:
    lags: dict[str, float] = {}
    for site, seconds in _pairs(values, "--replication-lag", "=", "SITE=SECONDS"):
        try:
            lag = float(seconds)
        except ValueError:
            lag = -1.0
        if lag < 0:
            raise typer.BadParameter(
                f"needs SITE=SECONDS with SECONDS >= 0, got {site}={seconds}",
                param_hint="--replication-lag",
            )
        lags[site.upper()] = lag
    return lags


@emulator_app.command("serve")
def emulator_serve(
    *,
    port: Annotated[int, typer.Option(help="Port to listen on", min=0, max=65535)] = 5985,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    https: Annotated[
        bool, typer.Option("--https", help="TLS with a generated self-signed certificate")
    ] = False,
    user: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME:PASSWORD",
            help=f"An accepted user (repeatable); default {DEFAULT_USER}:{DEFAULT_PASSWORD}",
        ),
    ] = None,
    state: Annotated[
        Path | None,
        typer.Option(help="SQLite state file, kept between runs (default: a temporary file)"),
    ] = None,
    seed: Annotated[
        str, typer.Option(help="The site to start from when the state is new: demo or empty")
    ] = "demo",
    no_unencrypted: Annotated[
        bool,
        typer.Option(
            "--no-unencrypted", help="Refuse Basic over plain HTTP (WinRM AllowUnencrypted=false)"
        ),
    ] = False,
    no_console: Annotated[
        bool,
        typer.Option(
            "--no-console",
            help="The ConfigMgr console (and its PowerShell module) is not installed",
        ),
    ] = False,
    keytab: Annotated[
        Path | None,
        typer.Option(
            help="Service keytab (HTTP/ and WSMAN/<host>) to accept Kerberos (sets KRB5_KTNAME); "
            "needs the kerberos extra",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    allow_credssp: Annotated[
        bool,
        typer.Option(
            "--allow-credssp",
            help="Accept CredSSP (off by default, as WinRM's Auth/CredSSP)",
        ),
    ] = False,
    receive_timeout: Annotated[
        float, typer.Option(help="Seconds a WSMan Receive waits for output", min=0.0)
    ] = 20.0,
    replication_lag: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SITE=SECONDS",
            help="[UNCONFIRMED] reads of SITE's roles show a Set only SECONDS after it "
            "(repeatable)",
        ),
    ] = None,
    latency: Annotated[
        float, typer.Option(help="Added to every HTTP exchange", min=0.0, rich_help_panel=_COSTS)
    ] = 0.0,
    module_import: Annotated[
        float, typer.Option(help="What Import-Module costs", min=0.0, rich_help_panel=_COSTS)
    ] = 0.0,
    get_cost: Annotated[
        float, typer.Option(help="What a Get-CM* cmdlet costs", min=0.0, rich_help_panel=_COSTS)
    ] = 0.0,
    set_cost: Annotated[
        float, typer.Option(help="What a Set-CM* cmdlet costs", min=0.0, rich_help_panel=_COSTS)
    ] = 0.0,
    max_shells_per_user: Annotated[
        int,
        typer.Option(
            help="WinRS MaxShellsPerUser: shells one user may hold, all kinds (0 = no limit)",
            min=0,
            rich_help_panel=_QUOTAS,
        ),
    ] = DEFAULT_MAX_SHELLS_PER_USER,
    plugin_max_shells_per_user: Annotated[
        int,
        typer.Option(
            help="The Microsoft.PowerShell plug-in's MaxShellsPerUser (0 = no limit)",
            min=0,
            rich_help_panel=_QUOTAS,
        ),
    ] = DEFAULT_PLUGIN_MAX_SHELLS_PER_USER,
    idle_timeout_ms: Annotated[
        int | None,
        typer.Option(
            help="IdleTimeout of WinRS and plug-in shells (default 7200000)",
            min=0,
            rich_help_panel=_QUOTAS,
        ),
    ] = None,
    drop_connection_on_request: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Drop the TCP connection instead of answering the Nth WSMan request",
            min=0,
            rich_help_panel=_FAULTS,
        ),
    ] = 0,
    http_error_on_request: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Answer the Nth WSMan request with --http-error-status",
            min=0,
            rich_help_panel=_FAULTS,
        ),
    ] = 0,
    http_error_status: Annotated[
        int,
        typer.Option(help="500 or 503", min=500, max=503, rich_help_panel=_FAULTS),
    ] = 503,
    wsman_fault_on_request: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="Answer the Nth WSMan request with a WSMan fault (--wsman-fault-code)",
            min=0,
            rich_help_panel=_FAULTS,
        ),
    ] = 0,
    wsman_fault_code: Annotated[
        int, typer.Option(help="The WSManFault code", rich_help_panel=_FAULTS)
    ] = DEFAULT_WSMAN_FAULT_CODE,
    fail_cmdlet: Annotated[
        str,
        typer.Option(
            metavar="CMDLET",
            help="Make a call of this cmdlet fail with a terminating error "
            "(which call: --fail-cmdlet-on-call)",
            rich_help_panel=_FAULTS,
        ),
    ] = "",
    fail_cmdlet_on_call: Annotated[
        int,
        typer.Option(
            metavar="N", help="The call of --fail-cmdlet that fails", min=0, rich_help_panel=_FAULTS
        ),
    ] = 1,
    fail_cmdlet_error_id: Annotated[
        str,
        typer.Option(
            help="The error id of --fail-cmdlet and --fail-server errors", rich_help_panel=_FAULTS
        ),
    ] = DEFAULT_FAIL_CMDLET_ERROR_ID,
    fail_server: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SERVER=CMDLET",
            help="Every call of CMDLET on SERVER fails, however calls are batched (repeatable)",
            rich_help_panel=_FAULTS,
        ),
    ] = None,
    lose_answer_cmdlet: Annotated[
        str,
        typer.Option(
            metavar="CMDLET",
            help="A call of this cmdlet is made, then its answer lost (the connection dropped): "
            "the ambiguous case (which call: --lose-answer-on-call)",
            rich_help_panel=_FAULTS,
        ),
    ] = "",
    lose_answer_on_call: Annotated[
        int,
        typer.Option(
            metavar="N",
            help="The call of --lose-answer-cmdlet whose answer is lost",
            min=0,
            rich_help_panel=_FAULTS,
        ),
    ] = 1,
    refuse_shell_delete: Annotated[
        bool,
        typer.Option(
            "--refuse-shell-delete",
            help="Refuse every shell Delete (a WinRM plug-in host that hangs)",
            rich_help_panel=_FAULTS,
        ),
    ] = False,
) -> None:
    """Serve the emulated site in the foreground until Ctrl-C (or SIGTERM).

    Prints the endpoint, the CA file to trust with --https, the users and the state file. Connect
    with `cmproxy --server 127.0.0.1 --port PORT --auth ntlm ...` (docs/cli.md). Faults are
    armed from the start: `--fail-server cm-ps1-dp01.contoso.com=Set-CMSiteSystemServer`
    makes every write to that server fail, so `cmproxy apply` rolls it back.
    """
    require_emulator()
    # The emulator is loaded only here (the SDK never imports it).
    from cmproxy.emulator.api import Emulator  # noqa: PLC0415
    from cmproxy.emulator.settings import EmulatorSettings  # noqa: PLC0415

    if seed not in ("demo", "empty"):
        raise typer.BadParameter(f"is demo or empty, got {seed!r}", param_hint="--seed")
    users = dict(_pairs(user, "--user", ":", "NAME:PASSWORD")) or {DEFAULT_USER: DEFAULT_PASSWORD}
    settings = EmulatorSettings()
    settings.costs.http_exchange = latency
    settings.costs.module_import = module_import
    settings.costs.get_cmdlet = get_cost
    settings.costs.set_cmdlet = set_cost
    settings.replication.lag = _lags(replication_lag)
    settings.quotas.winrs_max_shells_per_user = max_shells_per_user
    settings.quotas.plugin_max_shells_per_user = plugin_max_shells_per_user
    if idle_timeout_ms is not None:
        settings.quotas.winrs_idle_timeout_ms = idle_timeout_ms
        settings.quotas.plugin_idle_timeout_ms = idle_timeout_ms
    faults = settings.faults
    faults.drop_connection_on_request = drop_connection_on_request
    faults.http_error_on_request = http_error_on_request
    faults.http_error_status = http_error_status
    faults.wsman_fault_on_request = wsman_fault_on_request
    faults.wsman_fault_code = wsman_fault_code
    faults.fail_cmdlet = fail_cmdlet
    faults.fail_cmdlet_on_call = fail_cmdlet_on_call if fail_cmdlet else 0
    faults.fail_cmdlet_error_id = fail_cmdlet_error_id
    faults.fail_servers = {
        server.lower(): cmdlet
        for server, cmdlet in _pairs(fail_server, "--fail-server", "=", "SERVER=CMDLET")
    }
    faults.lose_answer_cmdlet = lose_answer_cmdlet
    faults.lose_answer_on_call = lose_answer_on_call if lose_answer_cmdlet else 0
    faults.refuse_shell_delete = refuse_shell_delete
    emu = Emulator(
        seed=seed,
        users=users,
        https=https,
        state_path=str(state) if state is not None else None,
        settings=settings,
        port=port,
        host=host,
        allow_unencrypted=not no_unencrypted,
        receive_timeout=receive_timeout,
        console_installed=not no_console,
        keytab=str(keytab) if keytab is not None else None,
        allow_credssp=allow_credssp,
    )
    raise typer.Exit(_serve(emu, _armed(faults)))


def _armed(faults: Any) -> list[str]:
    """The faults armed, as the user would read them."""
    armed = []
    if faults.drop_connection_on_request:
        armed.append(f"drop the connection of WSMan request {faults.drop_connection_on_request}")
    if faults.http_error_on_request:
        armed.append(
            f"HTTP {faults.http_error_status} on WSMan request {faults.http_error_on_request}"
        )
    if faults.wsman_fault_on_request:
        armed.append(
            f"WSMan fault {faults.wsman_fault_code} on request {faults.wsman_fault_on_request}"
        )
    if faults.fail_cmdlet:
        armed.append(f"{faults.fail_cmdlet} call {faults.fail_cmdlet_on_call} fails")
    armed += [f"{cmdlet} on {server} fails" for server, cmdlet in faults.fail_servers.items()]
    if faults.lose_answer_cmdlet:
        armed.append(
            f"{faults.lose_answer_cmdlet} call {faults.lose_answer_on_call}: made, answer lost"
        )
    if faults.refuse_shell_delete:
        armed.append("shell deletes refused")
    return armed


def _serve(emu: Any, armed: list[str]) -> int:
    """Run `emu` until SIGINT/SIGTERM; 1 when it cannot listen."""
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            emu.start()
        except OSError as error:  # a busy port, an address not on this machine, no permission
            typer.echo(
                f"cmproxy emulator: cannot listen on {emu.host}:{emu.port}: "
                f"{error.strerror or error}",
                err=True,
            )
            return 1
        typer.echo(f"cmproxy emulator listening on {emu.endpoint}")
        if emu.cert_path:
            typer.echo(f"certificate (trust this CA): {emu.cert_path}")
        typer.echo(f"users: {', '.join(emu.users)}  state: {emu.state_path}")
        for fault in armed:
            typer.echo(f"fault armed: {fault}")
        while not done.wait(0.5):
            pass
    finally:
        emu.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    typer.echo("cmproxy emulator stopped")
    return 0


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
    """The emulated demo hierarchy over HTTPS, started, for `cmproxy demo`."""
    from cmproxy.emulator.api import Emulator  # noqa: PLC0415 - the emulator is loaded only here

    return Emulator(seed="demo", https=True, state_path=state_path).start()
