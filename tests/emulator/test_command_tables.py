"""The command tables the layers declare their commands in (`@command`, `@cmdlet`,
`@console_command`) and how the runspace combines them.

A name declared twice, or in two tables, would leave one definition silently unreachable: the
runspace looks commands up by name. The FullyQualifiedErrorId class of each table follows the
real scheme (Microsoft.PowerShell.Commands.<Verb><Noun>Command for Windows PowerShell's cmdlets;
Microsoft.ConfigurationManagement.Cmdlets.HS.Commands.<Verb><Noun without CM>Command for the
ConfigurationManager module, as Microsoft's Get-CMSite documentation shows).
"""

from __future__ import annotations

from typing import Any

import pytest

from cmproxy.emulator.engine import configmgr, stdlib
from cmproxy.emulator.engine.configmgr.table import is_cmdlet
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.commands import CommandTable
from cmproxy.emulator.engine.runspace import SiteEngine
from cmproxy.emulator.state import SiteState


def _noop(ctx: Any, a: dict[str, Any], items: Any) -> None:
    return None


def test_a_name_declared_twice_in_a_table_is_refused() -> None:
    table = CommandTable(lambda name: "Test." + name)
    table.command("Get-Thing")(_noop)
    with pytest.raises(ValueError, match="'get-thing' declared twice"):
        table.command("get-thing")(_noop)


def test_a_declaration_carries_the_table_defaults() -> None:
    extra = ParamDef("Extra", "switch")
    table = CommandTable(lambda name: "Test." + name, extra_params=[extra], module="M")
    table.command("Set-Thing", [ParamDef("Name", position=0)], writes=True)(_noop)
    (cmd,) = table.definitions()
    assert [p.name for p in cmd.params] == ["Name", "Extra"]
    assert (cmd.cls, cmd.module, cmd.writes, cmd.should_process) == (
        "Test.Set-Thing",
        "M",
        True,
        True,
    )
    assert cmd.run is _noop


def test_no_command_is_in_two_tables() -> None:
    names = [
        c.name.lower()
        for c in [*stdlib.commands(), *configmgr.console_commands(), *configmgr.cmdlets()]
    ]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_the_engine_offers_every_declared_command() -> None:
    engine = SiteEngine(SiteState())
    built_in = {c.name for c in [*stdlib.commands(), *configmgr.console_commands()]}
    assert {c.name for c in engine.builtins.values()} == built_in
    assert {c.name for c in engine.cm_commands.values()} == {c.name for c in configmgr.cmdlets()}
    assert all(is_cmdlet(c) for c in engine.cm_commands.values())
    assert not any(is_cmdlet(c) for c in engine.builtins.values())


def test_error_classes_follow_the_real_schemes() -> None:
    for c in stdlib.commands():
        assert c.cls == "Microsoft.PowerShell.Commands." + c.name.replace("-", "") + "Command"
    for c in configmgr.cmdlets():
        verb, noun = c.name.split("-", 1)
        assert c.cls == (
            "Microsoft.ConfigurationManagement.Cmdlets.HS.Commands."
            f"{verb}{noun.removeprefix('CM')}Command"
        )
