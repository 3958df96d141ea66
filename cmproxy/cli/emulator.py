"""`cmproxy emulator serve`: the emulated site in the foreground, with every fault of
`cmproxy.emulator.settings.Faults` armable from the command line.

Faults are armed when the emulator starts and count from then (a request or cmdlet call
number is 1-based and counts every request, the session bootstrap's included). To rehearse
another failure, stop the emulator and serve it again with other options (the state file
keeps the site as the last run left it when `--state` names one). The emulator is loaded only
when a command here runs: the SDK never imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
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


#: `cmproxy emulator serve`'s options (a table: one entry per option).
_Port = Annotated[int, typer.Option(help="Port to listen on", min=0, max=65535)]
_Host = Annotated[str, typer.Option(help="Address to listen on")]
_Https = Annotated[
    bool, typer.Option("--https", help="TLS with a generated self-signed certificate")
]
_User = Annotated[
    list[str] | None,
    typer.Option(
        metavar="NAME:PASSWORD",
        help=f"An accepted user (repeatable); default {DEFAULT_USER}:{DEFAULT_PASSWORD}",
    ),
]
_State = Annotated[
    Path | None,
    typer.Option(help="SQLite state file, kept between runs (default: a temporary file)"),
]
_Seed = Annotated[
    str, typer.Option(help="The site to start from when the state is new: demo or empty")
]
_AllowBasic = Annotated[
    bool,
    typer.Option(
        "--allow-basic",
        help="Offer and accept Basic (WinRM Auth/Basic=true; off by default, as in WinRM)",
    ),
]
_AllowUnencrypted = Annotated[
    bool,
    typer.Option(
        "--allow-unencrypted",
        help="Accept Basic over plain HTTP (WinRM AllowUnencrypted=true; off by default)",
    ),
]
_NoConsole = Annotated[
    bool,
    typer.Option(
        "--no-console",
        help="The ConfigMgr console (and its PowerShell module) is not installed",
    ),
]
_Keytab = Annotated[
    Path | None,
    typer.Option(
        help="Service keytab (HTTP/ and WSMAN/<host>) to accept Kerberos (sets KRB5_KTNAME); "
        "needs the kerberos extra",
        exists=True,
        dir_okay=False,
    ),
]
_AllowCredssp = Annotated[
    bool,
    typer.Option(
        "--allow-credssp",
        help="Accept CredSSP (off by default, as WinRM's Auth/CredSSP)",
    ),
]
_ReceiveTimeout = Annotated[
    float, typer.Option(help="Seconds a WSMan Receive waits for output", min=0.0)
]
_ReplicationLag = Annotated[
    list[str] | None,
    typer.Option(
        metavar="SITE=SECONDS",
        help="[UNCONFIRMED] reads of SITE's roles show a Set only SECONDS after it (repeatable)",
    ),
]
_Latency = Annotated[
    float, typer.Option(help="Added to every HTTP exchange", min=0.0, rich_help_panel=_COSTS)
]
_ModuleImport = Annotated[
    float, typer.Option(help="What Import-Module costs", min=0.0, rich_help_panel=_COSTS)
]
_GetCost = Annotated[
    float, typer.Option(help="What a Get-CM* cmdlet costs", min=0.0, rich_help_panel=_COSTS)
]
_SetCost = Annotated[
    float, typer.Option(help="What a Set-CM* cmdlet costs", min=0.0, rich_help_panel=_COSTS)
]
_MaxShellsPerUser = Annotated[
    int,
    typer.Option(
        help="WinRS MaxShellsPerUser: shells one user may hold, all kinds (0 = no limit)",
        min=0,
        rich_help_panel=_QUOTAS,
    ),
]
_PluginMaxShellsPerUser = Annotated[
    int,
    typer.Option(
        help="The Microsoft.PowerShell plug-in's MaxShellsPerUser (0 = no limit)",
        min=0,
        rich_help_panel=_QUOTAS,
    ),
]
_IdleTimeoutMs = Annotated[
    int | None,
    typer.Option(
        help="IdleTimeout of WinRS and plug-in shells (default 7200000)",
        min=0,
        rich_help_panel=_QUOTAS,
    ),
]
_DropConnectionOnRequest = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Drop the TCP connection instead of answering the Nth WSMan request",
        min=0,
        rich_help_panel=_FAULTS,
    ),
]
_HttpErrorOnRequest = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Answer the Nth WSMan request with --http-error-status",
        min=0,
        rich_help_panel=_FAULTS,
    ),
]
_HttpErrorStatus = Annotated[
    int,
    typer.Option(help="500 or 503", min=500, max=503, rich_help_panel=_FAULTS),
]
_WsmanFaultOnRequest = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Answer the Nth WSMan request with a WSMan fault (--wsman-fault-code)",
        min=0,
        rich_help_panel=_FAULTS,
    ),
]
_WsmanFaultCode = Annotated[int, typer.Option(help="The WSManFault code", rich_help_panel=_FAULTS)]
_FailCmdlet = Annotated[
    str,
    typer.Option(
        metavar="CMDLET",
        help="Make a call of this cmdlet fail with a terminating error "
        "(which call: --fail-cmdlet-on-call)",
        rich_help_panel=_FAULTS,
    ),
]
_FailCmdletOnCall = Annotated[
    int,
    typer.Option(
        metavar="N", help="The call of --fail-cmdlet that fails", min=0, rich_help_panel=_FAULTS
    ),
]
_FailCmdletErrorId = Annotated[
    str,
    typer.Option(
        help="The error id of --fail-cmdlet and --fail-server errors", rich_help_panel=_FAULTS
    ),
]
_FailServer = Annotated[
    list[str] | None,
    typer.Option(
        metavar="SERVER=CMDLET",
        help="Every call of CMDLET on SERVER fails, however calls are batched (repeatable)",
        rich_help_panel=_FAULTS,
    ),
]
_LoseAnswerCmdlet = Annotated[
    str,
    typer.Option(
        metavar="CMDLET",
        help="A call of this cmdlet is made, then its answer lost (the connection dropped): "
        "the ambiguous case (which call: --lose-answer-on-call)",
        rich_help_panel=_FAULTS,
    ),
]
_LoseAnswerOnCall = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="The call of --lose-answer-cmdlet whose answer is lost",
        min=0,
        rich_help_panel=_FAULTS,
    ),
]
_RefuseShellDelete = Annotated[
    bool,
    typer.Option(
        "--refuse-shell-delete",
        help="Refuse every shell Delete (a WinRM plug-in host that hangs)",
        rich_help_panel=_FAULTS,
    ),
]


@emulator_app.command("serve")
def emulator_serve(  # noqa: PLR0913 - one parameter per CLI option (declared above)
    *,
    port: _Port = 5985,
    host: _Host = "127.0.0.1",
    https: _Https = False,
    user: _User = None,
    state: _State = None,
    seed: _Seed = "demo",
    allow_basic: _AllowBasic = False,
    allow_unencrypted: _AllowUnencrypted = False,
    no_console: _NoConsole = False,
    keytab: _Keytab = None,
    allow_credssp: _AllowCredssp = False,
    receive_timeout: _ReceiveTimeout = 20.0,
    replication_lag: _ReplicationLag = None,
    latency: _Latency = 0.0,
    module_import: _ModuleImport = 0.0,
    get_cost: _GetCost = 0.0,
    set_cost: _SetCost = 0.0,
    max_shells_per_user: _MaxShellsPerUser = DEFAULT_MAX_SHELLS_PER_USER,
    plugin_max_shells_per_user: _PluginMaxShellsPerUser = DEFAULT_PLUGIN_MAX_SHELLS_PER_USER,
    idle_timeout_ms: _IdleTimeoutMs = None,
    drop_connection_on_request: _DropConnectionOnRequest = 0,
    http_error_on_request: _HttpErrorOnRequest = 0,
    http_error_status: _HttpErrorStatus = 503,
    wsman_fault_on_request: _WsmanFaultOnRequest = 0,
    wsman_fault_code: _WsmanFaultCode = DEFAULT_WSMAN_FAULT_CODE,
    fail_cmdlet: _FailCmdlet = "",
    fail_cmdlet_on_call: _FailCmdletOnCall = 1,
    fail_cmdlet_error_id: _FailCmdletErrorId = DEFAULT_FAIL_CMDLET_ERROR_ID,
    fail_server: _FailServer = None,
    lose_answer_cmdlet: _LoseAnswerCmdlet = "",
    lose_answer_on_call: _LoseAnswerOnCall = 1,
    refuse_shell_delete: _RefuseShellDelete = False,
) -> None:
    """Serve the emulated site in the foreground until Ctrl-C (or SIGTERM).

    Prints the endpoint, the CA file to trust with --https, the users and the state file. Connect
    with `cmproxy --server 127.0.0.1 --port PORT --auth ntlm ...` (docs/cli.md). Faults are
    armed from the start: `--fail-server cm-ps1-dp01.contoso.com=Set-CMSiteSystemServer`
    makes every write to that server fail, so `cmproxy apply` rolls it back.
    """
    options = dict(locals())  # every option, by name (first line: nothing else is defined)
    require_emulator()
    # The emulator is loaded only here (the SDK never imports it).
    from cmproxy.emulator.api import Emulator  # noqa: PLC0415

    if seed not in ("demo", "empty"):
        raise typer.BadParameter(f"is demo or empty, got {seed!r}", param_hint="--seed")
    users = dict(_pairs(user, "--user", ":", "NAME:PASSWORD")) or {DEFAULT_USER: DEFAULT_PASSWORD}
    settings = _settings(options)
    emu = Emulator(
        seed=seed,
        users=users,
        https=https,
        state_path=str(state) if state is not None else None,
        settings=settings,
        port=port,
        host=host,
        allow_basic=allow_basic,
        allow_unencrypted=allow_unencrypted,
        receive_timeout=receive_timeout,
        console_installed=not no_console,
        keytab=str(keytab) if keytab is not None else None,
        allow_credssp=allow_credssp,
    )
    raise typer.Exit(_serve(emu, _armed(settings.faults)))


#: The options that set one `EmulatorSettings` field each: option → (group, field).
_SETTING_OF: dict[str, tuple[str, str]] = {
    "latency": ("costs", "http_exchange"),
    "module_import": ("costs", "module_import"),
    "get_cost": ("costs", "get_cmdlet"),
    "set_cost": ("costs", "set_cmdlet"),
    "max_shells_per_user": ("quotas", "winrs_max_shells_per_user"),
    "plugin_max_shells_per_user": ("quotas", "plugin_max_shells_per_user"),
    "drop_connection_on_request": ("faults", "drop_connection_on_request"),
    "http_error_on_request": ("faults", "http_error_on_request"),
    "http_error_status": ("faults", "http_error_status"),
    "wsman_fault_on_request": ("faults", "wsman_fault_on_request"),
    "wsman_fault_code": ("faults", "wsman_fault_code"),
    "fail_cmdlet": ("faults", "fail_cmdlet"),
    "fail_cmdlet_error_id": ("faults", "fail_cmdlet_error_id"),
    "lose_answer_cmdlet": ("faults", "lose_answer_cmdlet"),
    "refuse_shell_delete": ("faults", "refuse_shell_delete"),
}


def _settings(options: Mapping[str, Any]) -> Any:
    """The emulator's settings the `serve` options give (an `EmulatorSettings`)."""
    from cmproxy.emulator.settings import EmulatorSettings  # noqa: PLC0415

    settings = EmulatorSettings()
    for option, (group, field) in _SETTING_OF.items():
        setattr(getattr(settings, group), field, options[option])
    settings.replication.lag = _lags(options["replication_lag"])
    if options["idle_timeout_ms"] is not None:
        settings.quotas.winrs_idle_timeout_ms = options["idle_timeout_ms"]
        settings.quotas.plugin_idle_timeout_ms = options["idle_timeout_ms"]
    faults = settings.faults
    # A call number counts only for an armed cmdlet.
    faults.fail_cmdlet_on_call = options["fail_cmdlet_on_call"] if faults.fail_cmdlet else 0
    faults.lose_answer_on_call = options["lose_answer_on_call"] if faults.lose_answer_cmdlet else 0
    faults.fail_servers = {
        server.lower(): cmdlet
        for server, cmdlet in _pairs(options["fail_server"], "--fail-server", "=", "SERVER=CMDLET")
    }
    return settings


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
    from cmproxy.emulator.serve import serve_until_stopped  # noqa: PLC0415 - an extra

    return serve_until_stopped(
        emu,
        typer.echo,
        lambda line: typer.echo(line, err=True),
        [f"fault armed: {fault}" for fault in armed],
    )


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
