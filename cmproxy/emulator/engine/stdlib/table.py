"""The standard library's command table: `@command(...)` declares a cmdlet next to its handler."""

from __future__ import annotations

from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.commands import CommandTable

#: Parameter of the cmdlets that take any pipeline object.
PIPELINE_INPUT = ParamDef("InputObject", "object", pipeline=True)


def powershell_class(name: str) -> str:
    """The .NET class of a Windows PowerShell cmdlet (`Microsoft.PowerShell.Commands.<Verb><Noun>
    Command`), the FullyQualifiedErrorId suffix of its errors."""
    return "Microsoft.PowerShell.Commands." + name.replace("-", "") + "Command"


STDLIB = CommandTable(powershell_class)
command = STDLIB.command
