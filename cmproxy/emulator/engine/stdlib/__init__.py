"""The standard library: the generic Windows PowerShell cmdlets the emulated subset needs.

Each module declares its cmdlets with `@command(...)` (stdlib/table.py) next to the handler.
This layer imports the language, never the ConfigMgr product (tests/emulator/test_layers.py).
"""

from __future__ import annotations

from cmproxy.emulator.engine.language.binding import CommandDef
from cmproxy.emulator.engine.stdlib import data, pipeline, streams, utility
from cmproxy.emulator.engine.stdlib.table import STDLIB

#: The modules whose import declares the commands.
MODULES = (data, pipeline, streams, utility)


def commands() -> list[CommandDef]:
    """The standard library's commands."""
    return STDLIB.definitions()
