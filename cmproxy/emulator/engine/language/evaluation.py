"""The evaluator's base: the source it runs, per-node caches, and what every layer of
the evaluator uses (`text`, `named`, `parts`, `unsupported`, `check_stop`).

The evaluator is one class built in layers, each a module: `EvaluatorCore` ← expressions
(and variables) ← functions (param blocks, script blocks as commands) ← pipelines (commands)
← statements ← `interp.Evaluator`. A layer calls the ones below it; the two calls lower layers
make upward are declared here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import tree_sitter

from cmproxy.emulator.engine.language.errors import (
    NotSupportedByEmulator,
    PSError,
    StopRequested,
    record,
)
from cmproxy.emulator.engine.language.parser import (
    SKIP,
    node_cache,
)
from cmproxy.emulator.engine.language.values import ErrorRecord

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.interp import Evaluator
    from cmproxy.emulator.engine.language.session import Session

Node = tree_sitter.Node


_T = TypeVar("_T")
MISSING: Any = object()
#: A string literal whose value depends on variables or `$( )`: not derived once.
EXPANDABLE: Any = object()
#: The automatic variables that are constants.
CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}


#: The value of an unbound parameter of a value type: $null converted to that type (a [string]
#: is '', a number 0, a [bool] or [switch] False: about_Type_Conversion); other types stay $null.
UNBOUND: dict[str, Any] = {
    "string": "",
    "int": 0,
    "long": 0,
    "uint32": 0,
    "bool": False,
    "switch": False,
}


def metadata_error(message: str) -> PSError:
    """A failed conversion to a variable's type constraint (ArgumentTypeConverterAttribute
    wraps the PSInvalidCastException in an ArgumentTransformationMetadataException)."""
    return PSError(
        record(
            message,
            "RuntimeException",
            category="MetadataError",
            exception="System.Management.Automation.ArgumentTransformationMetadataException",
        )
    )


class EvaluatorCore:
    """Runs statements of one source text within a runspace."""

    def __init__(self, rs: Session, src: bytes) -> None:
        self.rs = rs
        self.src = src
        self.try_depth = 0
        #: The errors being handled by the enclosing catch blocks (`throw` alone rethrows the last).
        self.catching: list[ErrorRecord] = []
        self._cache = node_cache(src)
        self._named = self._cache.named
        self._texts = self._cache.texts
        self._parts = self._cache.parts

    # -- helpers ----------------------------------------------------------------------------
    def text(self, n: Node) -> str:
        found = self._texts.get(n.id)
        if found is None:
            found = self._texts[n.id] = self.src[n.start_byte : n.end_byte].decode("utf-8")
        return found

    def parts(self, what: str, n: Node, derive: Callable[[Node], _T]) -> _T:
        """What a node of some kind is made of, derived once per node (the tree never
        changes): statements and expressions run many times find their pieces here."""
        key = (what, n.id)
        found = self._parts.get(key, MISSING)
        if found is MISSING:
            found = self._parts[key] = derive(n)
        return found  # type: ignore[no-any-return]  # what `derive` returned for this node

    def unsupported(self, n: Node, what: str | None = None) -> NotSupportedByEmulator:
        return NotSupportedByEmulator(what or f"'{self.text(n)[:60]}' ({n.type})")

    def named(self, n: Node) -> list[Node]:
        """Named children without comments and separators (cached per node: a hot path)."""
        found = self._named.get(n.id)
        if found is None:
            found = self._named[n.id] = [c for c in n.named_children if c.type not in SKIP]
        return found

    def check_stop(self) -> None:
        if self.rs.stop_event is not None and self.rs.stop_event.is_set():
            raise StopRequested

    def as_evaluator(self) -> Evaluator:
        """This object as the whole `interp.Evaluator` (every instance is one), for the code
        outside the evaluator's layers that takes one."""
        return self  # type: ignore[return-value]  # typing.cast, without its call

    # -- defined by the layers above, used by the ones below -----------------------------------
    def pipeline_value(self, n: Node) -> Any:
        """The value of a pipeline (pipelines.PipelineRules)."""
        raise NotImplementedError

    def run_block(self, n: Node | None) -> list[Any]:
        """Run a statement block (statements.StatementRules)."""
        raise NotImplementedError
