"""Utility cmdlets: Invoke-Expression, Get-Command, Start-Sleep, Split-Path, Join-Path,
Get-ExecutionPolicy."""

from __future__ import annotations

import ntpath
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import NotSupportedByEmulator, PSError
from cmproxy.emulator.engine.language.interp import Evaluator
from cmproxy.emulator.engine.language.parser import parse, parse_error
from cmproxy.emulator.engine.language.values import PSObj
from cmproxy.emulator.engine.stdlib.table import command, powershell_class

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.commands import Context


@command("Get-ExecutionPolicy", [ParamDef("Scope", "string"), ParamDef("List", "switch")])
def _get_execution_policy(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    return ctx.engine.settings.host.execution_policy


@command(
    "Invoke-Expression", [ParamDef("Command", "string", mandatory=True, position=0, pipeline=True)]
)
def _iex(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    text = a.get("Command")
    rs = ctx.rs

    root, src = parse(conv.to_str(text))
    err = parse_error(root, src)
    if err is not None:
        err.fully_qualified_error_id = "ParseException," + powershell_class("Invoke-Expression")
        raise PSError(err)
    ev = Evaluator(rs, src)
    if any(c.type == "param_block" for c in root.named_children):
        raise NotSupportedByEmulator("A param() block inside Invoke-Expression")
    if ctx.ev is not None:
        ev.try_depth = ctx.ev.try_depth
    body = next((c for c in root.named_children if c.type == "statement_list"), None)
    return ev.run_block(body)


@command(
    "Split-Path",
    [
        ParamDef("Path", "string", mandatory=True, position=0, pipeline=True),
        ParamDef("Parent", "switch"),
        ParamDef("Leaf", "switch"),
    ],
)
def _split_path(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    p = a["Path"].rstrip("\\")
    if a.get("Leaf"):
        return ntpath.basename(p)
    return ntpath.dirname(p)


@command(
    "Join-Path",
    [
        ParamDef("Path", "string", mandatory=True, position=0),
        ParamDef("ChildPath", "string", mandatory=True, position=1),
    ],
)
def _join_path(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    return ntpath.join(a["Path"], a["ChildPath"])


@command("Start-Sleep", [ParamDef("Seconds", "int", position=0), ParamDef("Milliseconds", "int")])
def _start_sleep(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    secs = (a.get("Seconds") or 0) + (a.get("Milliseconds") or 0) / 1000
    if secs:
        ctx.engine.sleep(secs)


@command("Get-Command", [ParamDef("Name", "string[]", mandatory=True, position=0)])
def _get_command(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    out = []
    for n in a["Name"]:
        cmd = ctx.rs.resolve(n)
        if cmd is None:
            ctx.write_error(
                ctx.error(
                    f"The term '{n}' is not recognized as the name of a cmdlet, function, script "
                    "file, or operable program. Check the spelling of the name, or if a path was "
                    "included, verify that the path is correct and try again.",
                    "CommandNotFoundException",
                    category="ObjectNotFound",
                    exception="System.Management.Automation.CommandNotFoundException",
                    target=n,
                )
            )
            continue
        src = cmd.module or "Microsoft.PowerShell"
        out.append(
            PSObj(
                ["System.Management.Automation.CmdletInfo", "System.Object"],
                {"Name": cmd.name, "CommandType": "Cmdlet", "Source": src},
                string=cmd.name,
            )
        )
    return out
