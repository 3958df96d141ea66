"""The ConfigMgr product: the ConfigurationManager module's cmdlets, the site objects they
return, the console machine they run on (the module, CMSite drives, site logs on its file
system, the SMS Provider's WMI namespaces), replication lag. The site's data is
`cmproxy.emulator.state` (seeded by `cmproxy.emulator.seeds`).

Behaviour the reference marks [UNCONFIRMED] is read from `settings.behaviour`. The product does
not enforce cmproxy's rules: e.g. `Set-CMSoftwareUpdatePoint -UseProxy $true` on a server
without a proxy is accepted and WSUS fails later (a WSUSCtrl.log line, reference §7 issue #33).

Commands are declared with `@cmdlet(...)` / `@console_command(...)` (configmgr/table.py) and
reach the runspace through `cmdlets()` and `console_commands()`.
"""

from __future__ import annotations

from cmproxy.emulator.engine.configmgr import (
    accounts,
    cim,
    locations,
    module,
    site_systems,
    update_points,
)
from cmproxy.emulator.engine.configmgr.table import CMDLETS, CONSOLE
from cmproxy.emulator.engine.language.binding import CommandDef

#: The modules whose import declares the commands.
MODULES = (accounts, cim, locations, module, site_systems, update_points)


def cmdlets() -> list[CommandDef]:
    """The ConfigurationManager module's cmdlets (available once it is imported)."""
    return CMDLETS.definitions()


def console_commands() -> list[CommandDef]:
    """Windows PowerShell cmdlets as they behave on the ConfigMgr console machine."""
    return CONSOLE.definitions()
