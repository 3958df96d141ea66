"""Values that cross the boundary between the engine and the shells (PSRP, cmd).

The engine speaks these; the PSRP shell converts them to and from psrpcore types, the cmd shell
renders them as text / CLIXML. Keep this module free of psrpcore and tree-sitter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


@attrs.define(eq=False)
class PSObj:
    """A PowerShell object: ordered properties plus its type-name chain (most derived first).

    `live` marks a live wrapper (IResultObject around WMI): over remoting it serialises at
    depth 1, so nested objects arrive as their `to_string()` text, as on a real site.
    """

    type_names: list[str]
    properties: dict[str, Any] = attrs.field(factory=dict)
    live: bool = False
    #: Text PowerShell would print for the object when it must become a string.
    string: str | Callable[[PSObj], str] | None = None

    def to_string(self) -> str:
        if callable(self.string):
            return self.string(self)
        if self.string is not None:
            return self.string
        if self.type_names and self.type_names[0] == "System.Management.Automation.PSCustomObject":
            inner = "; ".join(f"{k}={v}" for k, v in self.properties.items())
            return "@{" + inner + "}"
        return self.type_names[0] if self.type_names else "System.Object"


@attrs.define(eq=False)
class SecureValue:
    """A SecureString: the clear text is held for the emulated provider only, never shown."""

    _plain: str = attrs.field(repr=False)

    def reveal(self) -> str:
        return self._plain

    def __repr__(self) -> str:
        return "SecureValue(<hidden>)"

    def __str__(self) -> str:
        return "System.Security.SecureString"


@attrs.define
class ErrorRecord:
    """What a PowerShell ErrorRecord carries, with PowerShell's own ids and texts."""

    message: str
    fully_qualified_error_id: str
    #: ErrorCategory name, e.g. "InvalidArgument", "ObjectNotFound", "NotSpecified".
    category: str = "NotSpecified"
    #: .NET exception type name, e.g. "System.Management.Automation.ParameterBindingException".
    exception_type: str = "System.Management.Automation.RuntimeException"
    target_name: str = ""
    target_object: Any = None
    #: The command that raised it (ErrorRecord.CategoryInfo.Activity / InvocationInfo).
    command_name: str = ""
    reason: str = ""

    @property
    def error_id(self) -> str:
        return self.fully_qualified_error_id.split(",", 1)[0]


@attrs.frozen
class CommandSpec:
    """One command of a pipeline, as PSRP CreatePipeline carries it.

    `parameters` keeps order: (name, value) for named, (None, value) for positional; a switch
    given without value (PSRP <Nil/>) arrives as (name, attrs.NOTHING-like SWITCH_PRESENT).
    """

    name: str
    is_script: bool = False
    parameters: tuple[tuple[str | None, Any], ...] = ()
    #: A script's UseLocalScope (absent = False: the script is dot-sourced into the global
    #: scope, Command.UseLocalScope in PowerShell's Command.cs).
    use_local_scope: bool = False


class _SwitchPresent:
    def __repr__(self) -> str:
        return "SWITCH_PRESENT"


#: Value of a switch parameter sent without an argument.
SWITCH_PRESENT: Any = _SwitchPresent()


@attrs.define
class InvocationResult:
    output: list[Any] = attrs.field(factory=list)
    errors: list[ErrorRecord] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    verbose: list[str] = attrs.field(factory=list)
    debug: list[str] = attrs.field(factory=list)
    information: list[Any] = attrs.field(factory=list)
    #: Set when the pipeline stopped on a terminating error (PipelineState Failed).
    terminating: ErrorRecord | None = None
    #: Set when the pipeline was stopped (ctrl_c).
    stopped: bool = False

    @property
    def had_errors(self) -> bool:
        return self.terminating is not None or bool(self.errors)
