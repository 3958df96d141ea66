"""The Write-* cmdlets: output, warning, verbose, debug, information, host and error
streams (about_Redirection, about_Preference_Variables)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import record
from cmproxy.emulator.engine.language.values import ErrorRecord
from cmproxy.emulator.engine.stdlib.table import command

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.commands import Context


@command(
    "Write-Output",
    [
        ParamDef(
            "InputObject",
            "object",
            mandatory=True,
            allow_null=True,
            position=0,
            pipeline=True,
            remaining=True,
        ),
        ParamDef("NoEnumerate", "switch"),
    ],
)
def _write_output(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    """Windows PowerShell 5.1's: InputObject is a PSObject[] (ValueFromRemainingArguments) and
    each of its elements is written, enumerated unless -NoEnumerate. So `Write-Output 1 2 3`
    writes three objects, `-NoEnumerate 1, 2` (one argument, the remaining arguments' list of
    it) writes the array as one, and `-NoEnumerate -InputObject 1, 2` still enumerates (the
    5.1 reference's note on NoEnumerate; PowerShell 6.2+ differs). InputObject is mandatory
    and [AllowNull]: a null one is written as one object (Write-Object.cs, ProcessRecord)."""
    v = a.get("InputObject")
    if v is None:
        return [None]
    elements = v if isinstance(v, list | tuple) else [v]
    if a.get("NoEnumerate"):
        return list(elements)
    return [x for e in elements for x in conv.enumerate_value(e)]


@command("Write-Warning", [ParamDef("Message", "string", position=0, pipeline=True)])
def _write_warning(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    msg = a.get("Message")
    ctx.warn(conv.to_str(msg if msg is not None else (items or [""])[0]))


@command("Write-Verbose", [ParamDef("Message", "string", position=0, pipeline=True)])
def _write_verbose(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    ctx.write_verbose(conv.to_str(a.get("Message")))


@command("Write-Debug", [ParamDef("Message", "string", position=0, pipeline=True)])
def _write_debug(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    if a.get("Debug") or ctx.rs.preference("DebugPreference") == "continue":
        ctx.rs.current.debug.append(conv.to_str(a.get("Message")))


@command(
    "Write-Information",
    [
        ParamDef("MessageData", "object", position=0, aliases=("Msg", "Message")),
        ParamDef("Tags", "string[]", position=1),
    ],
)
def _write_information(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    ctx.rs.current.information.append(a.get("MessageData"))


@command(
    "Write-Host",
    [
        ParamDef("Object", "object", position=0, pipeline=True),
        ParamDef("NoNewline", "switch"),
        ParamDef("ForegroundColor", "string"),
        ParamDef("BackgroundColor", "string"),
    ],
)
def _write_host(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("Object")
    ctx.rs.current.information.append(conv.to_str(obj) if obj is not None else "")


@command(
    "Write-Error",
    [
        ParamDef(
            "Message",
            "object",
            position=0,
            pipeline=True,
            aliases=("Msg", "ErrorRecord", "Exception"),
        ),
        ParamDef("ErrorId", "string"),
        ParamDef("Category", "string"),
        ParamDef("TargetObject", "object"),
    ],
)
def _write_error(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    msg = a.get("Message")
    if msg is None and items:
        msg = items[0]
    if isinstance(msg, ErrorRecord):
        ctx.write_error(msg)
        return None
    rec = record(
        conv.to_str(msg),
        conv.to_str(a["ErrorId"])
        if a.get("ErrorId")
        else "Microsoft.PowerShell.Commands.WriteErrorException",
        category=conv.to_str(a.get("Category") or "NotSpecified"),
        exception="Microsoft.PowerShell.Commands.WriteErrorException",
        target=a.get("TargetObject"),
    )
    ctx.write_error(rec)
    return None
