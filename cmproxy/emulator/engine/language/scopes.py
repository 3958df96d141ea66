"""Scopes of variables (about_Scopes), AutomationNull and the control-flow signals
(`return`, `break`, `continue`) the evaluator raises."""

from __future__ import annotations

from typing import Any

import tree_sitter

Node = tree_sitter.Node


class _Nothing:
    """AutomationNull: the value of `[void]...`, emits nothing."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


class Flow(Exception):  # noqa: N818 - control flow, not an error
    """`return`, `break`, `continue`: `value` is the output written before it (PowerShell
    streams output, so what a statement, an iteration or a function wrote stays written)."""

    def __init__(self, value: list[Any] | None = None) -> None:
        super().__init__()
        self.value: list[Any] = value if value is not None else []


class LoopFlow(Flow):
    """`break` / `continue`, with the label they name (lower case) or None (about_Break)."""

    def __init__(self, label: str | None = None) -> None:
        super().__init__()
        self.label = label

    def applies_to(self, label: str | None) -> bool:
        """An unlabeled break/continue acts on the innermost loop (or switch); a labeled one
        on the loop carrying that label, passing through the others (about_Break)."""
        return self.label is None or self.label == label


class BreakFlow(LoopFlow):
    pass


class ContinueFlow(LoopFlow):
    pass


class Return(Flow):
    def __init__(self, value: list[Any]) -> None:
        super().__init__(value)


class Scope:
    """Variables of one scope; names are case-insensitive (about_Scopes).

    `types` holds the type constraint of each type-constrained variable of this scope (lower
    case name → the type as written, e.g. "int"): `[int]$x = 1` or a typed parameter makes
    one, and every later assignment to that variable in this scope converts to the type
    (about_Variables). `script` marks a script scope (the global scope is one too): what
    `$script:` names.
    """

    def __init__(self, parent: Scope | None = None, *, script: bool = False) -> None:
        self.vars: dict[str, Any] = {}
        self.types: dict[str, str] = {}
        self.parent = parent
        self.script = script or parent is None

    def root(self) -> Scope:
        """The global scope."""
        s = self
        while s.parent is not None:
            s = s.parent
        return s

    def script_scope(self) -> Scope:
        s = self
        while not s.script and s.parent is not None:
            s = s.parent
        return s

    def lookup(self, name: str) -> tuple[bool, Any]:
        return self.lookup_low(name.lower())

    def lookup_low(self, low: str) -> tuple[bool, Any]:
        """`lookup` of a name already in lower case (the evaluator's hot path)."""
        s: Scope | None = self
        while s is not None:
            if low in s.vars:
                return True, s.vars[low]
            s = s.parent
        return False, None

    def set(self, name: str, value: Any) -> None:
        self.vars[name.lower()] = value
