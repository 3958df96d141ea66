"""What the language needs from the runspace it runs in, as a protocol.

The evaluator and the generic commands see a runspace only through `Session`: its scopes,
functions and `$env:`, the streams of the running pipeline, command dispatch and the engine's
settings. `runspace.SiteRunspace` implements it; nothing here imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from cmproxy.emulator.engine.language.binding import Arg, CommandDef, ParamDef
from cmproxy.emulator.engine.language.scopes import Scope
from cmproxy.emulator.engine.language.values import InvocationResult, PSObj
from cmproxy.emulator.settings import EmulatorSettings

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.dotnet_threading import NamedObjects
    from cmproxy.emulator.engine.language.interp import Evaluator


class EngineFacts(Protocol):
    """The engine behind a session, as far as the language needs it."""

    @property
    def settings(self) -> EmulatorSettings: ...

    @property
    def sleep(self) -> Callable[[float], None]: ...

    @property
    def named_objects(self) -> NamedObjects:
        """The machine's named kernel objects (Global\\ mutexes), shared by its runspaces."""
        ...


class Session(Protocol):
    """One runspace: variables (`scope`, the current one), functions, `$env:` (lower-case name
    → (name as set, value)), the result the running pipeline fills, and its stop signal."""

    scope: Scope
    #: The account the runspace runs as (`DOMAIN\\name`).
    user: str
    functions: dict[str, CommandDef]
    env: dict[str, tuple[str | None, str | None]]
    current: InvocationResult
    stop_event: threading.Event | None

    @property
    def engine(self) -> EngineFacts: ...

    def preference(self, name: str) -> str:
        """A preference variable's value in lower case (`continue` when unset)."""
        ...

    def resolve(self, name: str) -> CommandDef | None: ...

    def call(
        self, name: str, args: list[Arg], items: list[Any] | None, ev: Evaluator | None
    ) -> list[Any]:
        """Run a command by name; `items` is upstream output (None = first command)."""
        ...

    def call_def(
        self,
        cmd: CommandDef,
        args: list[Arg],
        items: list[Any] | None,
        ev: Evaluator | None,
        *,
        log: bool = True,
    ) -> list[Any]: ...

    def binder_coerce(self, p: ParamDef, v: Any) -> Any: ...

    def location_obj(self) -> PSObj:
        """`$PWD`: the current location as a PathInfo."""
        ...
