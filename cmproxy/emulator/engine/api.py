"""The engine's surface as the shells see it; `runspace.SiteEngine` implements it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from cmproxy.emulator.engine.language.values import CommandSpec, InvocationResult


class Runspace(Protocol):
    """One PowerShell runspace: variables, current location, imported modules, $env."""

    def invoke(
        self,
        commands: Sequence[CommandSpec],
        input_objects: Sequence[Any] = (),
        stop: threading.Event | None = None,
    ) -> InvocationResult:
        """Run one pipeline. Raises settings.AnswerLost after a committed write to drop it."""
        ...

    def run_script(
        self,
        text: str,
        input_objects: Sequence[Any] = (),
        stop: threading.Event | None = None,
    ) -> InvocationResult:
        """Run a whole script (powershell.exe -EncodedCommand). `$input` = input_objects;
        `stop` set = the process is terminated (it stops where a pipeline would stop)."""
        ...

    def close(self) -> None: ...


class Engine(Protocol):
    def open_runspace(self, user: str) -> Runspace: ...
