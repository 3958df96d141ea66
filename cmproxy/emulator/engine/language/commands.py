"""Declaring commands: each handler carries its signature, as a cmdlet class carries its
[Parameter] attributes.

A layer (the standard library, the ConfigMgr module) owns one `CommandTable`; its handlers are
declared with `@table.command("Verb-Noun", [ParamDef(...), ...])` right above them. The
runspace reads the tables; the language layer never imports the layers that fill them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import attrs

from cmproxy.emulator.engine.language.binding import Bound, CommandDef, ParamDef
from cmproxy.emulator.engine.language.errors import PSError, record
from cmproxy.emulator.engine.language.interp import Evaluator
from cmproxy.emulator.engine.language.session import EngineFacts, Session
from cmproxy.emulator.engine.language.values import ErrorRecord

#: A command handler: (call context, bound values, pipeline input) → output.
Handler = Callable[..., Any]
_H = TypeVar("_H", bound=Handler)
#: The session type a context carries (the product's contexts carry a richer one).
S = TypeVar("S", bound=Session)


@attrs.define
class CommandContext(Generic[S]):
    """What a command implementation sees while it runs: its runspace, its definition, the
    bound arguments, the evaluator that called it (None from PSRP), and the effective
    -ErrorAction / -WarningAction / -Verbose."""

    rs: S
    cmd: CommandDef
    bound: Bound
    ev: Evaluator | None
    error_action: str = "continue"
    warning_action: str = "continue"
    verbose: bool = False
    #: Set once the command has committed a write (the call log records it).
    wrote: bool = False

    @property
    def engine(self) -> EngineFacts:
        return self.rs.engine

    @property
    def whatif(self) -> bool:
        return bool(self.bound.get("WhatIf", False))

    def evaluator(self) -> Evaluator:
        return self.ev if self.ev is not None else Evaluator(self.rs, b"")

    def error(
        self,
        message: str,
        error_id: str,
        *,
        category: str = "NotSpecified",
        exception: str = "System.Exception",
        target: Any = None,
    ) -> ErrorRecord:
        return record(
            message,
            error_id,
            self.cmd.cls,
            category=category,
            exception=exception,
            command=self.cmd.name,
            target=target,
        )

    def write_error(self, rec: ErrorRecord) -> None:
        """A non-terminating error, subject to -ErrorAction / $ErrorActionPreference."""
        action = self.error_action
        if action == "stop":
            raise PSError(rec)
        if action in ("silentlycontinue", "ignore"):
            return
        self.rs.current.errors.append(rec)

    def warn(self, message: str) -> None:
        if self.warning_action not in ("silentlycontinue", "ignore"):
            if self.warning_action == "stop":
                raise PSError(
                    record(
                        "The running command stopped because the preference variable "
                        '"WarningPreference" or common parameter is set to Stop: ' + message,
                        "ActionPreferenceStop",
                        category="OperationStopped",
                        exception="System.Management.Automation.ActionPreferenceStopException",
                    )
                )
            self.rs.current.warnings.append(message)

    def write_verbose(self, message: str) -> None:
        if self.verbose:
            self.rs.current.verbose.append(message)


#: The context the standard library's handlers take.
Context = CommandContext[Session]


class CommandTable:
    """The commands one layer declares, in declaration order.

    `class_of(name)`: the .NET class of a command (FullyQualifiedErrorId suffix).
    `extra_params`: parameters every command of the table has (e.g. the ConfigMgr cmdlets'
    wildcard switches). `module`: the module that exports the table's commands ("" = built
    in).
    """

    def __init__(
        self,
        class_of: Callable[[str], str],
        *,
        extra_params: Sequence[ParamDef] = (),
        module: str = "",
    ) -> None:
        self.class_of = class_of
        self.extra_params = tuple(extra_params)
        self.module = module
        self._defs: dict[str, CommandDef] = {}

    def command(  # noqa: PLR0913 - a cmdlet declaration: one keyword per CmdletBinding trait
        self,
        name: str,
        params: Sequence[ParamDef] = (),
        *,
        cls: str | None = None,
        default_set: str | None = None,
        should_process: bool = False,
        collects_input: bool = False,
        writes: bool = False,
    ) -> Callable[[_H], _H]:
        """Declare `name` with its parameters; the decorated function runs it. A write
        supports -WhatIf/-Confirm (ShouldProcess). Stackable: one handler, several names."""

        def register(run: _H) -> _H:
            if name.lower() in self._defs:
                raise ValueError(f"command {name!r} declared twice")
            self._defs[name.lower()] = CommandDef(
                name,
                [*params, *self.extra_params],
                cls if cls is not None else self.class_of(name),
                run,
                default_set=default_set,
                should_process=should_process or writes,
                collects_input=collects_input,
                module=self.module,
                writes=writes,
            )
            return run

        return register

    def definitions(self) -> list[CommandDef]:
        """The declared commands (fresh `CommandDef`s are not needed: they are never mutated)."""
        return list(self._defs.values())
