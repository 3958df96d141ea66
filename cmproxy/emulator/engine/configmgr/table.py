"""The ConfigMgr layer's two command tables.

`@cmdlet(...)` declares a cmdlet of the ConfigurationManager module (needs the module and a
site drive, see `dispatch`; every one has the wildcard switches; `is_cmdlet` tells them).
`@console_command(...)` declares a Windows PowerShell cmdlet whose behaviour on the console
machine depends on ConfigMgr (Import-Module of the module, locations on site drives, the SMS
Provider's WMI namespaces).
"""

from __future__ import annotations

from cmproxy.emulator.engine.language.binding import CommandDef, ParamDef
from cmproxy.emulator.engine.language.commands import CommandTable
from cmproxy.emulator.engine.stdlib.table import powershell_class

#: The module that exports the cmdlets (what Get-Command shows as their Source).
MODULE_NAME = "ConfigurationManager"
CMDLET_NAMESPACE = "Microsoft.ConfigurationManagement.Cmdlets.HS.Commands."
#: Parameter set names the cmdlets share.
BY_NAME, BY_VALUE = "SearchByName", "SearchByValue"
#: Every ConfigMgr cmdlet's wildcard switches.
WILDCARD_PARAMS = (
    ParamDef("DisableWildcardHandling", "switch"),
    ParamDef("ForceWildcardHandling", "switch"),
)


def cmdlet_class(name: str) -> str:
    """The real class scheme `...HS.Commands.<Verb><Noun without CM>Command` (seen for
    Get-CMSite in Microsoft's docs)."""
    verb, noun = name.split("-", 1)
    return CMDLET_NAMESPACE + verb + noun.removeprefix("CM") + "Command"


CMDLETS = CommandTable(cmdlet_class, extra_params=WILDCARD_PARAMS, module=MODULE_NAME)
cmdlet = CMDLETS.command
CONSOLE = CommandTable(powershell_class)
console_command = CONSOLE.command


def is_cmdlet(cmd: CommandDef) -> bool:
    """Whether `cmd` is a cmdlet of the ConfigurationManager module."""
    return cmd.module == MODULE_NAME
