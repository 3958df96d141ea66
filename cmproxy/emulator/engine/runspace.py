"""The engine the shells call: `SiteEngine.open_runspace(user)` → `SiteRunspace`.

A runspace holds what a PowerShell runspace holds (variables, current location, drives,
imported modules, `$env:`), runs PSRP pipelines (`invoke`) and whole scripts (`run_script`),
and dispatches every command through binding and the call log (a ConfigMgr cmdlet also
through `configmgr.dispatch`: site drive, faults, costs).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from cmproxy.emulator.engine import configmgr, stdlib
from cmproxy.emulator.engine.configmgr import dispatch as cm_dispatch
from cmproxy.emulator.engine.configmgr import module as cm_module
from cmproxy.emulator.engine.configmgr.calllog import mask_value, param_named, raw_params
from cmproxy.emulator.engine.configmgr.context import SiteCallContext
from cmproxy.emulator.engine.configmgr.host import ADMIN_UI_PATH, BUILTIN_DRIVES, Drive
from cmproxy.emulator.engine.configmgr.replication import ReplicaView
from cmproxy.emulator.engine.configmgr.table import is_cmdlet
from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import (
    ACTION_VALUES,
    Arg,
    Binder,
    Bound,
    CommandDef,
    ParamDef,
)
from cmproxy.emulator.engine.language.dotnet_threading import NamedObjects
from cmproxy.emulator.engine.language.errors import (
    NotSupportedByEmulator,
    PSError,
    StopRequested,
    call_depth_overflow,
    command_not_found,
    record,
)
from cmproxy.emulator.engine.language.interp import Evaluator
from cmproxy.emulator.engine.language.parser import parse, parse_error
from cmproxy.emulator.engine.language.scopes import NOTHING, LoopFlow, Return, Scope
from cmproxy.emulator.engine.language.values import (
    SWITCH_PRESENT,
    CommandSpec,
    InvocationResult,
    PSObj,
)
from cmproxy.emulator.engine.versiontable import version_table
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.emulator.state import SiteState

ALIASES = {
    "?": "Where-Object",
    "where": "Where-Object",
    "%": "ForEach-Object",
    "foreach": "ForEach-Object",
    "select": "Select-Object",
    "sort": "Sort-Object",
    "cd": "Set-Location",
    "chdir": "Set-Location",
    "sl": "Set-Location",
    "gl": "Get-Location",
    "pwd": "Get-Location",
    "gc": "Get-Content",
    "cat": "Get-Content",
    "type": "Get-Content",
    "iex": "Invoke-Expression",
    "echo": "Write-Output",
    "write": "Write-Output",
    "ipmo": "Import-Module",
    "gmo": "Get-Module",
    "gdr": "Get-PSDrive",
    "ndr": "New-PSDrive",
    "rdr": "Remove-PSDrive",
    "gcim": "Get-CimInstance",
    "gwmi": "Get-WmiObject",
    "gcm": "Get-Command",
    "sleep": "Start-Sleep",
    "pushd": "Push-Location",
    "popd": "Pop-Location",
}


#: The context every command gets here (generic commands use the part they know).
CallContext = SiteCallContext


class SiteEngine:
    """Concrete `engine.api.Engine` over a `SiteState`.

    `auto_site_drive`: after `Import-Module ConfigurationManager` the site drives exist (as on a
    machine whose console connected before); False reproduces the "missing drive" path.
    `local_site`: which site's SMS Provider this emulated machine is (default: first primary).
    `clock`: monotonic seconds, for the [UNCONFIRMED] replication lag (`settings.replication`).
    `console_installed=False`: the ConfigMgr console (and so its PowerShell module) is not on
    this machine: `Import-Module ConfigurationManager` fails with `Modules_ModuleNotFound` and
    `$env:SMS_ADMIN_UI_PATH` does not exist.
    """

    def __init__(  # noqa: PLR0913 - the machine's declared configuration, one keyword per option
        self,
        state: SiteState,
        settings: EmulatorSettings | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        auto_site_drive: bool = True,
        local_site: str | None = None,
        autoload_module: bool = False,
        console_installed: bool = True,
    ) -> None:
        self.state = state
        self.settings = settings if settings is not None else EmulatorSettings()
        self.sleep = sleep
        #: Roles written at a site with replication lag, as reads see them (`clock` times it).
        self.replica = ReplicaView(clock)
        self.auto_site_drive = auto_site_drive
        self.autoload_module = autoload_module
        self.console_installed = console_installed
        self._local_site = local_site
        self._site_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        #: Commands available without importing a module, then the ConfigMgr module's.
        self.builtins: dict[str, CommandDef] = {
            c.name.lower(): c for c in [*stdlib.commands(), *configmgr.console_commands()]
        }
        self.cm_commands: dict[str, CommandDef] = {c.name.lower(): c for c in configmgr.cmdlets()}
        #: The machine's named kernel objects (Global\ mutexes), shared by all its runspaces.
        self.named_objects = NamedObjects()

    @property
    def local_site(self) -> str:
        if self._local_site:
            return self._local_site
        sites = self.state.sites()
        prim = [s for s in sites if s.type == "primary"]
        return (prim or sites)[0].code if sites else ""

    @property
    def local_server(self) -> str:
        s = self.state.site(self.local_site)
        return s.server if s is not None else "localhost"

    def site_lock(self, site: str) -> threading.Lock:
        with self._locks_guard:
            return self._site_locks.setdefault(site.upper(), threading.Lock())

    def open_runspace(self, user: str) -> SiteRunspace:
        return SiteRunspace(self, user)


class SiteRunspace:
    """One PowerShell runspace (implements `engine.api.Runspace`)."""

    def __init__(self, engine: SiteEngine, user: str) -> None:
        self.engine = engine
        self.user = user
        short = user.rsplit("\\", maxsplit=1)[-1].split("@", maxsplit=1)[0] or "user"
        self.home = f"C:\\Users\\{short}"
        #: The global scope; `scope` is the current one (a script's, a function's …).
        self.global_scope = self.scope = Scope()
        self.scope.set("ErrorActionPreference", "Continue")
        self.scope.set("WarningPreference", "Continue")
        self.scope.set("VerbosePreference", "SilentlyContinue")
        self.scope.set("DebugPreference", "SilentlyContinue")
        self.scope.set("ProgressPreference", "Continue")
        self.scope.set("HOME", self.home)
        self.scope.set("PSVersionTable", version_table())
        env = {
            "USERNAME": short,
            "USERPROFILE": self.home,
            "COMPUTERNAME": engine.local_server.split(".")[0].upper(),
            "USERDNSDOMAIN": ".".join(engine.local_server.split(".")[1:]).upper(),
            "TEMP": f"{self.home}\\AppData\\Local\\Temp",
            "TMP": f"{self.home}\\AppData\\Local\\Temp",
            "windir": "C:\\Windows",
            "SystemRoot": "C:\\Windows",
            "ProgramFiles": "C:\\Program Files",
            "ProgramFiles(x86)": "C:\\Program Files (x86)",
            "PSModulePath": "C:\\Program Files\\WindowsPowerShell\\Modules;"
            "C:\\Windows\\system32\\WindowsPowerShell\\v1.0\\Modules",
        }
        if engine.console_installed:
            env["SMS_ADMIN_UI_PATH"] = ADMIN_UI_PATH
            env["PSModulePath"] += (
                ";C:\\Program Files (x86)\\Microsoft Endpoint Manager\\AdminConsole\\bin"
            )
        self.env: dict[str, tuple[str | None, str | None]] = {
            k.lower(): (k, v) for k, v in env.items()
        }
        self.drives: dict[str, Drive] = {
            d.lower(): Drive(d, "FileSystem" if d == "C" else d, "C:\\" if d == "C" else "")
            for d in BUILTIN_DRIVES
        }
        self.location: tuple[str, str] = ("C", f"{self.home}\\Documents")
        self.location_stack: list[tuple[str, str]] = []
        self.modules: set[str] = set()
        self.functions: dict[str, CommandDef] = {}
        self.current = InvocationResult()
        self.stop_event: threading.Event | None = None
        self._lock = threading.Lock()

    # -- api.Runspace -----------------------------------------------------------------------
    def invoke(
        self,
        commands: Sequence[CommandSpec],
        input_objects: Sequence[Any] = (),
        stop: threading.Event | None = None,
    ) -> InvocationResult:
        with self._lock, self._pipeline(stop) as result:
            items: list[Any] | None = list(input_objects) if input_objects else None
            for idx, spec in enumerate(commands):
                try:
                    if spec.is_script:
                        # UseLocalScope absent or false: the script is dot-sourced into
                        # the global scope (Command.UseLocalScope => _useLocalScope ?? false).
                        items = self.run_text(
                            spec.name, self._spec_args(spec), items, scoped=spec.use_local_scope
                        )
                    else:
                        items = self.call(spec.name, self._spec_args(spec), items, None)
                except PSError as e:
                    if idx < len(commands) - 1:
                        e.value = []  # its output went to the next command, not the caller
                    raise
                except LoopFlow as f:
                    # break/continue with no loop to act on: the pipeline ends quietly
                    # (about_Break); what reached the output stays, a later command of
                    # the pipeline never finishes.
                    items = f.value if idx == len(commands) - 1 else []
                    break
            result.output = [x for x in (items or []) if x is not NOTHING]
        return result

    def run_script(
        self,
        text: str,
        input_objects: Sequence[Any] = (),
        stop: threading.Event | None = None,
    ) -> InvocationResult:
        """A whole script as `powershell.exe -EncodedCommand` runs it: in the global scope,
        as if typed at the prompt. `stop`: the process was terminated (WinRS Signal terminate
        or its shell deleted): it runs no further statement or loop iteration."""
        with self._lock, self._pipeline(stop) as result:
            try:
                out = self.run_text(text, [], list(input_objects), scoped=False)
            except LoopFlow as f:
                out = f.value  # break/continue outside any loop end the script quietly
            result.output = [x for x in out if x is not NOTHING]
        return result

    @contextlib.contextmanager
    def _pipeline(self, stop: threading.Event | None) -> Iterator[InvocationResult]:
        """One pipeline's (or script's) thread (the caller holds `_lock`): its result, which a
        terminating error, a stop or the interpreter's own stack overflow end as PowerShell
        ends them; then what the thread still owns is abandoned and its calls reach the
        call_log table (state.record_call buffers them)."""
        result = self.current = InvocationResult()
        self.stop_event = stop
        try:
            yield result
        except PSError as e:
            result.output = [x for x in e.value if x is not NOTHING]
            result.terminating = e.record
        except NotSupportedByEmulator as e:
            result.terminating = e.record
        except RecursionError:  # the interpreter's stack: PowerShell's ends the same way
            result.terminating = call_depth_overflow()
        except StopRequested:
            result.stopped = True
        self.engine.named_objects.thread_ended(result)
        self.engine.state.flush_calls()

    def close(self) -> None:
        self.functions.clear()
        # Its process ends (the pool closes, powershell.exe exits): its handles close.
        self.engine.named_objects.process_ended(self)

    # -- scripts ----------------------------------------------------------------------------
    @staticmethod
    def _spec_args(spec: CommandSpec) -> list[Arg]:
        out = []
        for name, value in spec.parameters:
            if name is None:
                out.append(Arg(None, value))
            else:
                out.append(Arg(name.lstrip("-"), value, text=f"-{name.lstrip('-')}"))
        return out

    def run_text(
        self,
        text: str,
        args: Sequence[Arg],
        input_items: list[Any] | None,
        *,
        scoped: bool,
        error_cls: str = "",
    ) -> list[Any]:
        """Parse and run a script; a param() block binds `args` like a function's, its
        parameters becoming type-constrained variables of the script's scope: a new child
        scope of the current one (`scoped`: UseLocalScope), else the current scope itself
        (dot-sourced; at the top that is the global scope, where they outlive the script)."""
        root, src = parse(text)
        err = parse_error(root, src)
        if err is not None:
            if error_cls:
                err.fully_qualified_error_id = f"ParseException,{error_cls}"
            raise PSError(err, script=True)
        ev = Evaluator(self, src)
        pb = next((c for c in root.named_children if c.type == "param_block"), None)
        body = next((c for c in root.named_children if c.type == "statement_list"), None)
        params, advanced, default_set = ev.param_defs(pb)
        cmd = CommandDef("", params, "", lambda *a: [], default_set=default_set, advanced=advanced)
        bound = Binder(cmd).bind(args, expects_input=False) if (params or args) else None
        outer = self.scope
        if scoped:
            self.scope = Scope(outer, script=True)
        self.scope.set("input", list(input_items or []))
        try:
            if bound is not None:
                self._apply_common(bound)
                ev.bind_param_vars(params, bound.values)
            return ev.run_block(body)
        except Return as r:
            return r.value
        finally:
            self.scope = outer

    def _apply_common(self, bound: Bound) -> None:
        ea = bound.get("ErrorAction")
        if ea is not None:
            self.scope.set("ErrorActionPreference", ea)

    def binder_coerce(self, p: ParamDef, v: Any) -> Any:
        if v is None:  # $null stays $null (nothing to build a binder for)
            return v
        cmd = CommandDef("", [p], "", lambda *a: [])
        return Binder(cmd).coerce(p, v)

    # -- locations and drives ---------------------------------------------------------------
    def current_drive(self) -> Drive | None:
        d = self.drives.get(self.location[0].lower())
        return d if d is not None and d.provider == "CMSite" else None

    def location_text(self) -> str:
        drive, path = self.location
        d = self.drives.get(drive.lower())
        if d is not None and d.provider == "CMSite":
            return f"{d.name}:\\{path}" if path else f"{d.name}:\\"
        if path.startswith("\\\\"):
            # A UNC location has no drive: Get-Location shows it provider-qualified.
            return "Microsoft.PowerShell.Core\\FileSystem::" + path
        return path

    def location_obj(self) -> PSObj:
        text = self.location_text()
        d = self.drives.get(self.location[0].lower())
        provider = (
            "AdminUI.PS.Provider\\CMSite"
            if d and d.provider == "CMSite"
            else ("Microsoft.PowerShell.Core\\FileSystem")
        )
        return PSObj(
            ["System.Management.Automation.PathInfo", "System.Object"],
            {
                "Drive": d.name if d else "",
                "Provider": provider,
                "ProviderPath": text,
                "Path": text,
            },
            string=text,
        )

    def preference(self, name: str) -> str:
        _, v = self.scope.lookup_low(name.lower())
        if v is None:
            return "continue"
        return (v if type(v) is str else conv.to_str(v)).lower()

    # -- command dispatch -------------------------------------------------------------------
    def resolve(self, name: str) -> CommandDef | None:
        low = name.lower()
        low = ALIASES.get(low, name).lower()
        if low in self.functions:
            return self.functions[low]
        if low in self.engine.builtins:
            return self.engine.builtins[low]
        cm = self.engine.cm_commands.get(low)
        if cm is not None and (
            "configurationmanager" in self.modules
            or (
                self.engine.autoload_module
                and self.engine.console_installed
                and not cm_module.module_blocked(self.engine.settings.host)
            )
        ):
            if "configurationmanager" not in self.modules:
                cm_module.import_cm_module(self, None)
            return cm
        return None

    def call(
        self, name: str, args: list[Arg], items: list[Any] | None, ev: Evaluator | None
    ) -> list[Any]:
        """Run one command of a pipeline; `items` is upstream output (None = first command)."""
        if self.stop_event is not None and self.stop_event.is_set():
            raise StopRequested
        cmd = self.resolve(name)
        if cmd is None:
            self._log(name, raw_params(args), False, "CommandNotFoundException")
            raise command_not_found(name)
        return self.call_def(cmd, args, items, ev)

    def call_def(
        self,
        cmd: CommandDef,
        args: list[Arg],
        items: list[Any] | None,
        ev: Evaluator | None,
        *,
        log: bool = True,
    ) -> list[Any]:
        """Bind and run a resolved command (`log=False`: a script block, not a command)."""
        if self.stop_event is not None and self.stop_event.is_set():
            raise StopRequested
        binder = Binder(cmd)
        try:
            bound = binder.bind(args, expects_input=items is not None)
        except PSError as e:
            if log:
                self._log(cmd.name, raw_params(args, cmd), False, e.record.fully_qualified_error_id)
            raise
        ctx = self._context(cmd, bound, ev)
        settings = self.engine.settings
        call_no = cm_dispatch.count_call(settings, cmd) if is_cmdlet(cmd) else 0
        params = {
            k: mask_value(param_named(cmd, k, binder.params), v) for k, v in bound.values.items()
        }
        try:
            out = self._run(binder=binder, bound=bound, ctx=ctx, items=items, call_no=call_no)
        except PSError as e:
            if log:
                self._log(cmd.name, params, ctx.wrote, e.record.fully_qualified_error_id)
            raise
        except StopRequested:
            if log:
                self._log(cmd.name, params, ctx.wrote, "PipelineStopped")
            raise
        if is_cmdlet(cmd):
            cm_dispatch.charge_rows(self.engine, cmd, len(out))
        if log:
            self._log(cmd.name, params, ctx.wrote, "ok")
        if is_cmdlet(cmd):
            cm_dispatch.after_cmdlet(settings, cmd, call_no)
        return out

    def _context(self, cmd: CommandDef, bound: Bound, ev: Evaluator | None) -> CallContext:
        ea = bound.get("ErrorAction")
        wa = bound.get("WarningAction")
        for p, v in (("ErrorAction", ea), ("WarningAction", wa)):
            if v is not None and conv.to_str(v).lower() not in (a.lower() for a in ACTION_VALUES):
                raise PSError(
                    record(
                        f"Cannot bind parameter '{p}'. Cannot convert value \"{v}\" to type "
                        '"System.Management.Automation.ActionPreference". Error: "Unable to match '
                        f"the identifier name {v} to a valid enumerator name. Specify one of the "
                        "following enumerator names and try again:\nSilentlyContinue, Stop, "
                        'Continue, Inquire, Ignore, Suspend"',
                        "CannotConvertArgumentNoMessage",
                        cmd.cls,
                        category="InvalidArgument",
                        exception="System.Management.Automation.ParameterBindingException",
                    )
                )
        verbose = bound.get("Verbose")
        return SiteCallContext(
            self,
            cmd,
            bound,
            ev,
            error_action=conv.to_str(ea).lower()
            if ea
            else self.preference("ErrorActionPreference"),
            warning_action=conv.to_str(wa).lower() if wa else self.preference("WarningPreference"),
            verbose=bool(verbose)
            if verbose is not None
            else self.preference("VerbosePreference") == "continue",
        )

    def _run(
        self,
        *,
        binder: Binder,
        bound: Bound,
        ctx: CallContext,
        items: list[Any] | None,
        call_no: int,
    ) -> list[Any]:
        """Run the command `binder` bound: once with all input, or once per pipeline object."""
        cmd = binder.cmd
        if is_cmdlet(cmd):
            cm_dispatch.before_cmdlet(self, cmd, bound, call_no)
        out: list[Any] = []
        if cmd.collects_input or items is None:
            res = cmd.run(ctx, bound.values, items)
            out += _as_output(res)
            return out
        for obj in items:
            if self.stop_event is not None and self.stop_event.is_set():
                raise StopRequested
            takes_input = any(p.pipeline for p in cmd.params)
            b = binder.bind_pipeline(bound, obj) if takes_input else bound
            ctx.bound = b
            try:
                out += _as_output(cmd.run(ctx, b.values, [obj]))
            except LoopFlow as f:
                # break/continue in a ForEach-Object block leave the pipeline for the
                # enclosing loop; what the command wrote for earlier items stays written.
                f.value = out + f.value
                raise
        return out

    def _log(self, command: str, params: dict[str, Any], wrote: bool, outcome: str) -> None:
        self.engine.state.record_call(self.user, command, params, wrote, outcome)


def _as_output(res: Any) -> list[Any]:
    if res is None:
        return []
    if isinstance(res, list):
        return [x for x in res if x is not NOTHING]
    if isinstance(res, Iterator):
        return [x for x in res if x is not NOTHING]
    return [res]


__all__ = ["SWITCH_PRESENT", "CallContext", "Drive", "SiteEngine", "SiteRunspace"]
