"""Declaring commands: each handler carries its signature, as a cmdlet class carries its
[Parameter] attributes.

A layer (the standard library, the ConfigMgr module) owns one `CommandTable`; its handlers are
declared with `@table.command("Verb-Noun", [ParamDef(...), ...])` right above them. The
runspace reads the tables; the language layer never imports the layers that fill them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from cmproxy.emulator.engine.language.binding import CommandDef, ParamDef

#: A command handler: (call context, bound values, pipeline input) → output.
Handler = Callable[..., Any]
_H = TypeVar("_H", bound=Handler)


class CommandTable:
    """The commands one layer declares, in declaration order.

    `class_of(name)`: the .NET class of a command (FullyQualifiedErrorId suffix).
    `extra_params`: parameters every command of the table has (e.g. the ConfigMgr cmdlets'
    wildcard switches). `configmgr`: the table's commands need the ConfigurationManager module
    and a site drive (see `CommandDef.configmgr`).
    """

    def __init__(
        self,
        class_of: Callable[[str], str],
        *,
        extra_params: Sequence[ParamDef] = (),
        configmgr: bool = False,
    ) -> None:
        self.class_of = class_of
        self.extra_params = tuple(extra_params)
        self.configmgr = configmgr
        self._defs: dict[str, CommandDef] = {}

    def command(
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
                configmgr=self.configmgr,
                writes=writes,
            )
            return run

        return register

    def definitions(self) -> list[CommandDef]:
        """The declared commands (fresh `CommandDef`s are not needed: they are never mutated)."""
        return list(self._defs.values())
