"""Evaluates PowerShell scripts parsed by tree-sitter-powershell: a documented subset.

Scripts are evaluated, never pattern-matched: a quoted `'x''; Remove-Item y'` is one string
literal because the parser says so. Anything the evaluator does not know raises
`NotSupportedByEmulator` (see docs/emulator.md for the subset).
"""

from __future__ import annotations

import math
import ntpath
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import tree_sitter
import tree_sitter_powershell

from cmproxy.emulator.engine import conv, netformat
from cmproxy.emulator.engine.binding import Arg, CommandDef, ParamDef
from cmproxy.emulator.engine.conv import ScriptBlock
from cmproxy.emulator.engine.dotnet_threading import VOID, NetObject, Reference
from cmproxy.emulator.engine.errors import (
    NotSupportedByEmulator,
    PSError,
    StopRequested,
    out_of_memory,
    record,
)
from cmproxy.emulator.engine.values import ErrorRecord, PSObj, SecureValue
from cmproxy.emulator.settings import Limits

if TYPE_CHECKING:
    from cmproxy.emulator.engine.runspace import SiteRunspace

Node = tree_sitter.Node

_LANGUAGE = tree_sitter.Language(tree_sitter_powershell.language())

#: Grammar nodes that only wrap one child (precedence levels).
_WRAPPERS = {
    "logical_expression",
    "bitwise_expression",
    "comparison_expression",
    "additive_expression",
    "multiplicative_expression",
    "format_expression",
    "range_expression",
    "array_literal_expression",
    "unary_expression",
    "pipeline_chain",
    "left_assignment_expression",
    "key_expression",
    "while_condition",
    "argument_expression",
    "logical_argument_expression",
    "bitwise_argument_expression",
    "comparison_argument_expression",
    "additive_argument_expression",
    "multiplicative_argument_expression",
    "format_argument_expression",
    "range_argument_expression",
}
_SKIP = {"comment", "empty_statement", "command_argument_sep"}


class _Nothing:
    """AutomationNull: the value of `[void]...`, emits nothing."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING: Any = _Nothing()


class _Flow(Exception):  # noqa: N818 - control flow, not an error
    """`return`, `break`, `continue`: `value` is the output written before it (PowerShell
    streams output, so what a statement, an iteration or a function wrote stays written)."""

    def __init__(self, value: list[Any] | None = None) -> None:
        super().__init__()
        self.value: list[Any] = value if value is not None else []


class LoopFlow(_Flow):
    """`break` / `continue`, with the label they name (lower case) or None (about_Break)."""

    def __init__(self, label: str | None = None) -> None:
        super().__init__()
        self.label = label

    def applies_to(self, label: str | None) -> bool:
        """An unlabeled break/continue acts on the innermost loop (or switch); a labeled one
        on the loop carrying that label, passing through the others (about_Break)."""
        return self.label is None or self.label == label


class _Break(LoopFlow):
    pass


class _Continue(LoopFlow):
    pass


class Return(_Flow):
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


class _NodeCache:
    """What the evaluator derives from a tree's nodes, by node id (the tree never changes)."""

    __slots__ = (
        "elements",
        "exprs",
        "named",
        "parts",
        "targets",
        "texts",
        "unwrapped",
        "var_names",
    )

    def __init__(self) -> None:
        self.named: dict[int, list[Node]] = {}
        self.elements: dict[int, list[Node]] = {}
        self.unwrapped: dict[int, Node] = {}
        #: expression node → (the node evaluated, its kind, its named children)
        self.exprs: dict[int, tuple[Node, str, list[Node]]] = {}
        self.var_names: dict[int, str] = {}
        #: assignment target node → (its kind, the node assigned to)
        self.targets: dict[int, tuple[str, Node]] = {}
        #: node → its source text
        self.texts: dict[int, str] = {}
        #: (what, node) → the parts a statement or expression of that kind is made of
        self.parts: dict[tuple[str, int], Any] = {}


#: Parsed scripts by text (the SDK sends the same templates over and over), most recent last.
#: Each entry keeps its tree, source and per-node named-children cache together, so node ids in
#: a cache are never those of a freed tree.
_PARSED: OrderedDict[str, tuple[Node, bytes, _NodeCache]] = OrderedDict()
#: The node cache of a cached source, by id(src); the entry holds src alive.
_CACHE_BY_SRC: dict[int, tuple[bytes, _NodeCache]] = {}
_PARSED_MAX = 64
_parse_lock = threading.Lock()


def parse(text: str) -> tuple[Node, bytes]:
    """Parse a script (cached by text: a tree is immutable, so sharing it is safe)."""
    with _parse_lock:
        hit = _PARSED.get(text)
        if hit is not None:
            _PARSED.move_to_end(text)
            return hit[0], hit[1]
    src = text.encode("utf-8")
    root = tree_sitter.Parser(_LANGUAGE).parse(src).root_node
    cache = _NodeCache()
    with _parse_lock:
        hit = _PARSED.get(text)
        if hit is not None:
            return hit[0], hit[1]
        _PARSED[text] = (root, src, cache)
        _CACHE_BY_SRC[id(src)] = (src, cache)
        while len(_PARSED) > _PARSED_MAX:
            _, (_, old_src, _) = _PARSED.popitem(last=False)
            _CACHE_BY_SRC.pop(id(old_src), None)
    return root, src


def _node_cache(src: bytes) -> _NodeCache:
    """The node cache shared by every evaluation of a cached source (else a new one)."""
    with _parse_lock:
        hit = _CACHE_BY_SRC.get(id(src))
    if hit is not None and hit[0] is src:
        return hit[1]
    return _NodeCache()


def parse_error(root: Node, src: bytes) -> ErrorRecord | None:
    """A ParseException record when the grammar flags an error, else None."""
    if not root.has_error:
        return None
    errors = _errors(root)
    real = [e for e in errors if not _recoverable(e)]
    if errors and not real:
        return None
    bad = real[0] if real else root
    line, col = bad.start_point
    text_line = src.decode(errors="replace").splitlines()[line] if src else ""
    snippet = src[bad.start_byte : bad.end_byte].decode(errors="replace")[:40]
    return record(
        f"At line:{line + 1} char:{col + 1}\n+ {text_line}\nUnexpected token '{snippet}' in "
        "expression or statement (the emulator's parser reports a syntax error here).",
        "ParseException",
        category="ParserError",
        exception="System.Management.Automation.ParseException",
    )


def _errors(n: Node) -> list[Node]:
    """Every ERROR / missing node, outermost first, in source order."""
    if n.type == "ERROR" or n.is_missing:
        return [n]
    found: list[Node] = []
    for c in n.children:
        if c.has_error or c.type == "ERROR" or c.is_missing:
            found += _errors(c)
    return found


def _labeled_flow(n: Node) -> tuple[type[LoopFlow], Node] | None:
    """`break outer` / `continue outer`: the grammar has no label after break/continue and
    reads the statement as an ERROR node of exactly those two tokens (about_Break)."""
    kids = [c for c in n.children if c.type not in _SKIP]
    if n.type != "ERROR" or len(kids) != 2 or kids[1].type != "simple_name":
        return None
    if n.parent is None or n.parent.type not in ("statement_list", "statement_block"):
        return None  # misplaced by the grammar (outside the block it was written in)
    kind = {"break": _Break, "continue": _Continue}.get(kids[0].type)
    return (kind, kids[1]) if kind is not None else None


def _recoverable(n: Node) -> bool:
    """The grammar's known misreadings: `function F { param($A) $A }` on one line puts the
    param block in an ERROR node right after `{`; `break label` / `continue label` is an ERROR
    node of its two tokens. PowerShell accepts both; so does the emulator."""
    if _labeled_flow(n) is not None:
        return True
    parent = n.parent
    kids = [c for c in n.children if c.type not in _SKIP]
    return (
        n.type == "ERROR"
        and parent is not None
        and parent.type == "function_statement"
        and len(kids) == 1
        and kids[0].type == "param_block"
        and not kids[0].has_error
    )


_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
    "e": "\x1b",
}


def unescape_dq(s: str) -> str:
    """Backtick escapes and doubled quotes of a double-quoted string segment."""
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "`" and i + 1 < len(s):
            n = s[i + 1]
            out.append(_ESCAPES.get(n, n))
            i += 2
            continue
        if c == '"' and i + 1 < len(s) and s[i + 1] == '"':
            out.append('"')
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


_T = TypeVar("_T")
_MISSING: Any = object()
#: A string literal whose value depends on variables or `$( )`: not derived once.
_EXPANDABLE: Any = object()
#: The automatic variables that are constants.
_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}

#: Types a variable can be constrained to here (what `Evaluator.convert_to` converts to).
CONSTRAINABLE = frozenset(
    {
        "int",
        "int32",
        "uint32",
        "long",
        "int64",
        "double",
        "string",
        "bool",
        "boolean",
        "switch",
        "string[]",
        "object[]",
        "array",
        "int[]",
        "int32[]",
        "hashtable",
        "collections.hashtable",
    }
)

#: The value of an unbound parameter without default: its type's default value.
_UNBOUND: dict[str, Any] = {
    "string": "",
    "int": 0,
    "long": 0,
    "uint32": 0,
    "bool": False,
    "switch": False,
}


def _metadata_error(message: str) -> PSError:
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


def _if_parts(n: Node) -> list[tuple[Node | None, Node]]:
    """(condition, block) of the if, each elseif and the else (whose condition is None)."""
    children = n.named_children
    found: list[tuple[Node | None, Node]] = [
        (
            next(c for c in children if c.type == "pipeline"),
            next(c for c in children if c.type == "statement_block"),
        )
    ]
    for c in children:
        if c.type == "elseif_clauses":
            for ec in c.named_children:
                econd = next(x for x in ec.named_children if x.type == "pipeline")
                eblock = next(x for x in ec.named_children if x.type == "statement_block")
                found.append((econd, eblock))
        elif c.type == "else_clause":
            found.append((None, next(x for x in c.named_children if x.type == "statement_block")))
            break
    return found


def _foreach_parts(n: Node) -> tuple[Node, Node, Node]:
    """The loop variable, what it iterates and the body."""
    kids = n.named_children
    return (
        next(c for c in kids if c.type == "variable"),
        next(c for c in kids if c.type == "pipeline"),
        next(c for c in kids if c.type == "statement_block"),
    )


def _try_parts(n: Node) -> tuple[Node, Node | None, Node | None]:
    """The try block, the catch clauses and the finally clause."""
    kids = n.named_children
    return (
        next(c for c in kids if c.type == "statement_block"),
        next((c for c in kids if c.type == "catch_clauses"), None),
        next((c for c in kids if c.type == "finally_clause"), None),
    )


def _access_parts(n: Node) -> tuple[bool, Node]:
    """Whether a member access is static (`::`), and its target."""
    return any(c.type == "::" for c in n.children), n.named_children[0]


#: The value of an unbound parameter of a value type: $null converted to that type (a [string]
#: is '', a number 0, a [bool] or [switch] False: about_Type_Conversion); other types stay $null.
def _is_type(v: Any, t: str) -> bool | None:
    """Whether `v` is of type `t` (lower case, without `system.`); None when the emulator does
    not know the type."""
    if t in ("object",):
        return v is not None
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda x: isinstance(x, str),
        "int": lambda x: conv.type_name(x) == "System.Int32",
        "int32": lambda x: conv.type_name(x) == "System.Int32",
        "long": lambda x: conv.type_name(x) == "System.Int64",
        "int64": lambda x: conv.type_name(x) == "System.Int64",
        "double": lambda x: isinstance(x, float),
        "float": lambda x: False,  # System.Single: the engine has no such values
        "single": lambda x: False,
        "datetime": lambda x: False,  # the engine has no DateTime values
        "bool": lambda x: isinstance(x, bool),
        "boolean": lambda x: isinstance(x, bool),
        "array": lambda x: isinstance(x, list),
        "object[]": lambda x: isinstance(x, list),
        "hashtable": lambda x: isinstance(x, dict),
        "collections.hashtable": lambda x: isinstance(x, dict),
        "pscustomobject": _is_psobj_custom,
        "management.automation.pscustomobject": _is_psobj_custom,
        "version": conv.is_version,
        "securestring": lambda x: isinstance(x, SecureValue),
        "security.securestring": lambda x: isinstance(x, SecureValue),
        "scriptblock": lambda x: isinstance(x, ScriptBlock),
        "management.automation.scriptblock": lambda x: isinstance(x, ScriptBlock),
        "management.automation.errorrecord": lambda x: isinstance(x, ErrorRecord),
    }
    check = checks.get(t)
    if check is not None:
        return check(v)
    if isinstance(v, PSObj) and any(
        n.lower() in (t, "system." + t)
        for n in v.type_names
        if n.startswith(("System.", "Microsoft."))
    ):
        return True
    return None


def _is_psobj_custom(v: Any) -> bool:
    return isinstance(v, PSObj) and v.type_names[:1] == conv.PSCUSTOM[:1]


class Evaluator:
    """Runs statements of one source text within a runspace."""

    def __init__(self, rs: SiteRunspace, src: bytes) -> None:
        self.rs = rs
        self.src = src
        self.try_depth = 0
        #: The errors being handled by the enclosing catch blocks (`throw` alone rethrows the last).
        self.catching: list[ErrorRecord] = []
        self._cache = _node_cache(src)
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
        found = self._parts.get(key, _MISSING)
        if found is _MISSING:
            found = self._parts[key] = derive(n)
        return cast(_T, found)

    def unsupported(self, n: Node, what: str | None = None) -> NotSupportedByEmulator:
        return NotSupportedByEmulator(what or f"'{self.text(n)[:60]}' ({n.type})")

    def named(self, n: Node) -> list[Node]:
        """Named children without comments and separators (cached per node: a hot path)."""
        found = self._named.get(n.id)
        if found is None:
            found = self._named[n.id] = [c for c in n.named_children if c.type not in _SKIP]
        return found

    def check_stop(self) -> None:
        if self.rs.stop_event is not None and self.rs.stop_event.is_set():
            raise StopRequested

    # -- statements -------------------------------------------------------------------------
    def run_block(self, n: Node | None) -> list[Any]:
        """Run a statement_list / statement_block / script_block body; returns output."""
        if n is None:
            return []
        if n.type in ("statement_block", "script_block_body", "script_block"):
            inner = self.named(n)
            if n.type == "script_block" and any(c.type == "param_block" for c in inner):
                raise self.unsupported(n, "param() inside a script block")
            out: list[Any] = []
            for c in inner:
                try:
                    out += self.run_block(c)
                except (_Flow, PSError) as r:
                    r.value = out + r.value  # output written before return/break/throw stays
                    raise
            return out
        if n.type == "statement_list":
            stmts, labels = self.parts("labels", n, self._labeled_statements)
            return self.run_statements(stmts, labels)
        return self.run_statements([n])

    def _labeled_statements(self, n: Node) -> tuple[list[Node], dict[int, str]]:
        """A statement list's statements, and the label (`:name`, about_Break) written before
        the statement at each index that has one (derived once per node)."""
        stmts: list[Node] = []
        labels: dict[int, str] = {}
        for s in self.named(n):
            if s.type == "label":
                labels[len(stmts)] = self.text(s)[1:].strip().lower()
            else:
                stmts.append(s)
        return stmts, labels

    def run_statements(
        self, stmts: Sequence[Node], labels: dict[int, str] | None = None
    ) -> list[Any]:
        out: list[Any] = []
        for i, s in enumerate(stmts):
            self.check_stop()
            try:
                if labels and i in labels:
                    out += self.labeled(s, labels[i])
                else:
                    out += self.statement(s)
            except _Flow as r:
                r.value = out + r.value  # output written before return/break/continue stays
                raise
            except PSError as e:
                if (
                    e.script
                    or self.try_depth > 0
                    or self.rs.preference("ErrorActionPreference") == "stop"
                ):
                    e.value = out + e.value
                    raise
                # A statement-terminating error: the statement's earlier output stays written.
                out += e.value
                self.rs.current.errors.append(e.record)
        return out

    def statement(self, n: Node) -> list[Any]:
        t = n.type
        if t in _SKIP:
            return []
        if t == "pipeline":
            return self.pipeline(n)
        if t == "if_statement":
            return self.if_statement(n)
        if t == "foreach_statement":
            return self.foreach_statement(n)
        if t == "try_statement":
            return self.try_statement(n)
        if t == "flow_control_statement":
            return self.flow(n)
        if t == "function_statement":
            self.define_function(n)
            return []
        if t == "while_statement":
            return self.while_statement(n)
        if t in ("for_statement", "do_statement", "switch_statement"):
            return self.labeled(n, None)
        if t in ("statement_list", "statement_block"):
            return self.run_block(n)
        if t == "ERROR":
            flow = _labeled_flow(n)
            if flow is not None:
                raise flow[0](self.text(flow[1]).lower())
        raise self.unsupported(n, f"The statement '{t}'")

    def labeled(self, n: Node, label: str | None) -> list[Any]:
        """A loop or switch statement, with the label written before it (or None)."""
        t = n.type
        if t == "foreach_statement":
            return self.foreach_statement(n, label)
        if t == "while_statement":
            return self.while_statement(n, label)
        if t == "for_statement":
            return self.for_statement(n, label)
        if t == "do_statement":
            return self.do_statement(n, label)
        if t == "switch_statement":
            return self.switch_statement(n, label)
        return self.statement(n)  # a label before any other statement is ignored

    def if_statement(self, n: Node) -> list[Any]:
        for cond, block in self.parts("if", n, _if_parts):
            if cond is None or conv.truthy(self.pipeline_value(cond)):
                return self.run_block(block)
        return []

    def foreach_statement(self, n: Node, label: str | None = None) -> list[Any]:
        var, src, block = self.parts("foreach", n, _foreach_parts)
        name = self.var_name(var)
        index = self.parts("index", n, self._index_loop)
        if index is not None and label is None:
            table = self.variable_value(index[0])
            if isinstance(table, dict):
                self._index(table, name, index[1], self.foreach_items(src))
                return []
        out: list[Any] = []
        for item in self.foreach_items(src):
            if item is NOTHING:
                continue
            self.check_stop()
            self.set_variable(name, item)
            if not self.loop_body(block, out, label):
                break
        return out

    def _index_loop(self, n: Node) -> tuple[str, str] | None:
        """(table, member) when the loop is `foreach ($x in …) { $table[$x.Member] = $x }`,
        the idiom that indexes objects by a property: it then runs as one Python loop."""
        var, _src, block = _foreach_parts(n)
        loop_var = self.var_name(var).lower()
        body = self.named(block)
        if len(body) != 1 or body[0].type != "statement_list":
            return None
        statements = self.named(body[0])
        if len(statements) != 1 or statements[0].type != "pipeline":
            return None
        elements = self.pipeline_elements(statements[0])
        if len(elements) != 1 or elements[0].type != "assignment_expression":
            return None
        left, op, right = self._assignment_parts(elements[0])
        kind, target = self._assign_target(left)
        if op != "=" or kind != "element_access" or right.type != "pipeline":
            return None
        table, key = self.named(target)
        key = self._expr_unwrap(key)
        value = self.pipeline_elements(right)
        if table.type != "variable" or key.type != "member_access" or len(value) != 1:
            return None
        value_node = self._expr_unwrap(value[0])
        static, owner = _access_parts(key)
        member, _ = self._member_parts(key)
        if (
            static
            or member is None
            or owner.type != "variable"
            or self.var_name(owner).lower() != loop_var
            or value_node.type != "variable"
            or self.var_name(value_node).lower() != loop_var
            or self.var_name(table).lower() == loop_var
        ):
            return None
        return self.var_name(table), member

    def _index(self, table: dict[Any, Any], name: str, member: str, items: list[Any]) -> None:
        """`foreach ($x in items) { $table[$x.<member>] = $x }`, as PowerShell runs it."""
        for item in items:
            if item is NOTHING:
                continue
            self.check_stop()
            self.rs.scope.set(name, item)
            key = get_member(item, member)
            existing = _dict_key(table, key)
            table[existing if existing is not None else key] = item

    def loop_body(self, block: Node, out: list[Any], label: str | None = None) -> bool:
        """One iteration of a loop, its output added to `out`; False after `break`."""
        return self.iteration(lambda: self.run_block(block), out, label)

    def iteration(self, run: Callable[[], list[Any]], out: list[Any], label: str | None) -> bool:
        """One pass of a loop or switch, its output added to `out`; False after `break`. What
        the pass wrote before `break` / `continue` / `return` / an error stays in the output
        (about_Break, about_Continue); a break or continue naming another label leaves this
        loop too."""
        try:
            out += run()
        except LoopFlow as f:
            out += f.value
            if not f.applies_to(label):
                f.value = list(out)
                raise
            return not isinstance(f, _Break)
        except (Return, PSError) as r:
            r.value = out + r.value
            raise
        return True

    def foreach_items(self, src: Node) -> list[Any]:
        """What `foreach ($x in <src>)` iterates: a command's output as is (nothing → no
        iteration); an expression's value unrolled, `$null` → no iteration (PowerShell 3+)."""
        elements = self.pipeline_elements(src)
        if len(elements) == 1 and elements[0].type not in ("command", "assignment_expression"):
            v = self.expr(elements[0])
            if v is None or v is NOTHING:
                return []
            return conv.enumerate_value(v)
        return self.pipeline(src)

    def while_statement(self, n: Node, label: str | None = None) -> list[Any]:
        cond = next(c for c in n.named_children if c.type == "while_condition")
        block = next(c for c in n.named_children if c.type == "statement_block")
        out: list[Any] = []
        guard = 0
        while conv.truthy(self.pipeline_value(self.named(cond)[0])):
            self.check_stop()
            guard = self._guard(n, guard)
            if not self.loop_body(block, out, label):
                break
        return out

    def _guard(self, n: Node, count: int) -> int:
        if count >= 100_000:
            raise self.unsupported(n, "A loop of more than 100000 iterations")
        return count + 1

    def for_statement(self, n: Node, label: str | None) -> list[Any]:
        """`for (init; cond; iter) { }`: `continue` goes on with the iterator (about_For)."""
        part = {c.type: c for c in n.named_children}
        block = part.get("statement_block")
        out: list[Any] = []
        init = part.get("for_initializer")
        if init is not None:
            out += self.pipeline(self.named(init)[0])
        cond, step = part.get("for_condition"), part.get("for_iterator")
        guard = 0
        while cond is None or conv.truthy(self.pipeline_value(self.named(cond)[0])):
            self.check_stop()
            guard = self._guard(n, guard)
            if block is not None and not self.loop_body(block, out, label):
                break
            if step is not None:
                out += self.pipeline(self.named(step)[0])
        return out

    def do_statement(self, n: Node, label: str | None) -> list[Any]:
        """`do { } while (c)` / `do { } until (c)`: the body runs first; `continue` goes on with
        the condition (about_Do)."""
        block = next(c for c in n.named_children if c.type == "statement_block")
        cond = next(c for c in n.named_children if c.type == "while_condition")
        until = any(c.type == "until" for c in n.children)
        out: list[Any] = []
        guard = 0
        while True:
            self.check_stop()
            guard = self._guard(n, guard)
            if not self.loop_body(block, out, label):
                break
            if conv.truthy(self.pipeline_value(self.named(cond)[0])) == until:
                break
        return out

    def switch_statement(self, n: Node, label: str | None) -> list[Any]:
        """`switch [-regex|-wildcard|-exact] [-casesensitive] (value) { cond { … } default { … } }`
        (about_Switch): each element of a collection value is tested against every clause in
        order and every matching clause runs (`$_` is the element); `default` runs when no
        other clause matched. `break` ends the switch, `continue` goes on with the next
        element; output written before either stays."""
        mode, case, cond, clauses = self.parts("switch", n, self._switch_parts)
        value = self.pipeline_value(cond)
        items = [] if value is NOTHING else conv.enumerate_value(value)
        out: list[Any] = []
        old = self.rs.scope.lookup("_")
        try:
            for item in items:
                self.check_stop()
                self.rs.scope.set("_", item)
                self.rs.scope.set("PSItem", item)

                def clauses_of(item: Any = item) -> list[Any]:
                    # Each matching clause's output goes to `out` as it is written, so what
                    # an earlier clause wrote stays when a later one breaks.
                    matched = False
                    for test, body in clauses:
                        if test is not None and self._switch_match(test, item, mode, case):
                            matched = True
                            out.extend(self.run_block(body))
                    if not matched:
                        for test, body in clauses:
                            if test is None:
                                out.extend(self.run_block(body))
                    return []

                if not self.iteration(clauses_of, out, label):
                    break
        finally:
            self.rs.scope.set("_", old[1])
            self.rs.scope.set("PSItem", old[1])
        return out

    def _bare(self, test: Node) -> str:
        """A clause test the grammar leaves as text: a bare word, or a double-quoted string
        it did not parse (only a constant one is taken)."""
        text = self.text(test).strip()
        if len(text) >= 2 and text[0] == text[-1] == '"':
            if "$" in text or "`" in text:
                raise self.unsupported(test, f"The switch clause {text}")
            return text[1:-1]
        return text

    def _switch_parts(self, n: Node) -> tuple[str, bool, Node, list[tuple[Node | None, Node]]]:
        mode, case = "-eq", False
        params = next((c for c in n.named_children if c.type == "switch_parameters"), None)
        for p in self.named(params) if params is not None else []:
            flag = self.text(p).strip().lower()
            if "-regex".startswith(flag) and len(flag) > 1:
                mode = "-match"
            elif "-wildcard".startswith(flag) and len(flag) > 1:
                mode = "-like"
            elif "-exact".startswith(flag) and len(flag) > 1:
                mode = "-eq"
            elif "-casesensitive".startswith(flag) and len(flag) > 1:
                case = True
            else:
                raise self.unsupported(p, f"The switch parameter {flag}")
        cond = next(c for c in n.named_children if c.type == "switch_condition")
        body = next(c for c in n.named_children if c.type == "switch_body")
        clauses: list[tuple[Node | None, Node]] = []
        for group in self.named(body):
            for clause in self.named(group) if group.type == "switch_clauses" else [group]:
                test = next(c for c in clause.named_children if c.type == "switch_clause_condition")
                block = next(c for c in clause.named_children if c.type == "statement_block")
                kids = self.named(test)
                if not kids and self.text(test).strip().lower() == "default":
                    clauses.append((None, block))
                else:
                    clauses.append((kids[0] if kids else test, block))
        return mode, case, self.named(cond)[0], clauses

    def _switch_match(self, test: Node, item: Any, mode: str, case: bool) -> bool:
        """A clause's test: a script block is run with `$_` = the element (true = match);
        any other value is compared with -eq / -like / -match (-c… with -CaseSensitive)."""
        if self.unwrap(test).type == "script_block_expression":
            sb = self.expr(test)
            return conv.truthy(conv.collapse(self.invoke_block(sb, item)))
        want = self.expr(test) if test.type != "switch_clause_condition" else self._bare(test)
        op = "-c" + mode[1:] if case else mode
        return compare_op(op, item, want, self) is True

    def try_statement(self, n: Node) -> list[Any]:
        block, catches, fin = self.parts("try", n, _try_parts)
        fb = None
        if fin is not None:
            fb = next(c for c in fin.named_children if c.type == "statement_block")
        out: list[Any] = []
        try:
            try:
                self.try_depth += 1
                try:
                    out += self.run_block(block)
                finally:
                    self.try_depth -= 1
            except PSError as e:
                if catches is None:
                    raise
                out += e.value  # what the try block wrote before the error stays written
                clause = catches.named_children[0]
                if any(c.type == "catch_type_list" for c in clause.named_children):
                    raise self.unsupported(clause, "A typed catch clause") from None
                body = next(c for c in clause.named_children if c.type == "statement_block")
                old = self.rs.scope.lookup("_")
                self.rs.scope.set("_", e.record)
                self.rs.scope.set("PSItem", e.record)
                self.catching.append(e.record)
                try:
                    out += self.run_block(body)
                finally:
                    self.catching.pop()
                    self.rs.scope.set("_", old[1])
                    self.rs.scope.set("PSItem", old[1])
        except _Flow as f:
            # break/continue/return leaving try or catch: what they wrote, then the finally's.
            f.value = out + f.value
            if fb is not None:
                f.value += self.run_block(fb)
            raise
        except PSError as e:
            # An error leaving try/catch: what they wrote, then the finally's, stay written.
            e.value = out + e.value
            if fb is not None:
                e.value += self.run_block(fb)
            raise
        except BaseException:
            if fb is not None:
                self.run_block(fb)
            raise
        if fb is not None:
            out += self.run_block(fb)
        return out

    def flow(self, n: Node) -> list[Any]:
        kw = n.children[0].type
        arg = next((c for c in n.named_children if c.type == "pipeline"), None)
        if kw == "throw":
            if arg is None and self.catching:
                # `throw` alone in a catch block rethrows the error being handled (about_Throw,
                # TryCatch.Tests.ps1 "rethrow flow up").
                raise PSError(self.catching[-1], script=True)
            v = self.pipeline_value(arg) if arg is not None else None
            raise PSError(self.throw_record(v), script=True)
        if kw == "return":
            raise Return(self.pipeline(arg) if arg is not None else [])
        if kw == "break":
            raise _Break
        if kw == "continue":
            raise _Continue
        if kw == "exit":
            raise Return(self.pipeline(arg) if arg is not None else [])
        raise self.unsupported(n)

    def throw_record(self, v: Any) -> ErrorRecord:
        if isinstance(v, ErrorRecord):
            return v
        msg = conv.to_str(v) if v is not None else "ScriptHalted"
        return record(
            msg,
            msg if v is not None else "ScriptHalted",
            category="OperationStopped",
            exception="System.Management.Automation.RuntimeException",
            target=v,
        )

    # -- functions --------------------------------------------------------------------------
    def define_function(self, n: Node) -> None:
        name = self.text(next(c for c in n.named_children if c.type == "function_name"))
        body = next((c for c in n.named_children if c.type == "script_block"), None)
        if any(c.type == "function_parameter_declaration" for c in n.named_children):
            raise self.unsupported(n, "A function with a parameter list after its name")
        pb = None
        stmts = None
        if body is not None:
            pb = next((c for c in body.named_children if c.type == "param_block"), None)
            stmts = next((c for c in body.named_children if c.type == "script_block_body"), None)
        for err in (c for c in n.children if c.type == "ERROR" and _recoverable(c)):
            pb = next(c for c in err.children if c.type == "param_block")
        params, advanced, default_set = self.param_defs(pb)
        ev = self

        def run(ctx: Any, args: dict[str, Any], items: Any) -> list[Any]:
            return ev.call_function(params, args, stmts, remaining=ctx.bound.remaining)

        self.rs.functions[name.lower()] = CommandDef(
            name, params, "", run, default_set=default_set, advanced=advanced
        )

    def call_function(
        self,
        params: list[ParamDef],
        args: dict[str, Any],
        body: Node | None,
        *,
        remaining: Sequence[Any] = (),
        input_items: Sequence[Any] | None = None,
        dot: bool = False,
    ) -> list[Any]:
        """Run a function or script block body: in a new child scope of the current one, or
        (`dot`) in the current scope itself. break/continue leave it for an enclosing loop of
        the caller (about_Break); `return` ends it."""
        outer = self.rs.scope
        if not dot:
            self.rs.scope = Scope(outer)
        try:
            self.rs.scope.set("args", list(remaining))
            if input_items is not None:
                self.rs.scope.set("input", list(input_items))
            self.bind_param_vars(params, args)
            try:
                return self.run_block(body)
            except Return as r:
                return r.value
        finally:
            self.rs.scope = outer

    def bind_param_vars(self, params: list[ParamDef], args: dict[str, Any]) -> None:
        """Each parameter becomes a variable of the current scope, constrained to its type
        (a later assignment converts, about_Functions_Advanced_Parameters / about_Variables);
        an unbound one without default holds its type's default ([string] '', [int] 0)."""
        for p in params:
            if p.name in args:
                v = args[p.name]
            elif p.default is not None:
                v = self.rs.binder_coerce(p, self.expr(p.default))
            else:
                v = _UNBOUND.get(p.type)
            self.declare(p.name, v, p.type)

    def param_defs(self, pb: Node | None) -> tuple[list[ParamDef], bool, str | None]:
        """ParamDefs from a `param(...)` block; (defs, is_advanced, default set)."""
        if pb is None:
            return [], False, None
        advanced = False
        default_set: str | None = None
        for al in (c for c in pb.named_children if c.type == "attribute_list"):
            for a in al.named_children:
                name, kwargs, _ = self.attribute(a)
                if name.lower() == "cmdletbinding":
                    advanced = True
                    ds = kwargs.get("defaultparametersetname")
                    default_set = conv.to_str(ds) if ds is not None else None
        plist = next((c for c in pb.named_children if c.type == "parameter_list"), None)
        defs: list[ParamDef] = []
        if plist is None:
            return defs, advanced, default_set
        for sp in (c for c in plist.named_children if c.type == "script_parameter"):
            var = next(c for c in sp.named_children if c.type == "variable")
            p = ParamDef(self.var_name(var), "object")
            dflt = next(
                (c for c in sp.named_children if c.type == "script_parameter_default"), None
            )
            if dflt is not None:
                p.default = self.named(dflt)[0]  # a Node, evaluated at bind time
            plist_attrs = next((c for c in sp.named_children if c.type == "attribute_list"), None)
            for a in plist_attrs.named_children if plist_attrs is not None else []:
                if a.named_children and a.named_children[0].type == "type_literal":
                    p.type = self.param_type(a.named_children[0])
                    continue
                name, kwargs, pos = self.attribute(a)
                low = name.lower()
                if low == "parameter":
                    advanced = True
                    p.mandatory = conv.truthy(kwargs.get("mandatory", False))
                    if "position" in kwargs:
                        p.position = int(kwargs["position"])
                    p.pipeline = conv.truthy(kwargs.get("valuefrompipeline", False))
                    if "parametersetname" in kwargs:
                        p.sets = (*p.sets, conv.to_str(kwargs["parametersetname"]))
                elif low == "validaterange":
                    p.validate_range = (int(pos[0]), int(pos[1]))
                elif low == "validatenotnullorempty":
                    p.not_null_or_empty = True
                elif low == "validateset":
                    p.choices = tuple(conv.to_str(x) for x in pos)
                elif low == "alias":
                    p.aliases = tuple(conv.to_str(x) for x in pos)
                elif low == "pstypename":
                    p.ps_type_name = conv.to_str(pos[0])
                elif low in ("allownull", "allowemptystring", "allowemptycollection"):
                    pass
                else:
                    raise self.unsupported(a, f"The parameter attribute [{name}]")
            defs.append(p)
        if all(p.position is None for p in defs):
            # PowerShell numbers parameters in declaration order when none has a Position.
            for i, p in enumerate(q for q in defs if q.type != "switch"):
                p.position = i
        return defs, advanced, default_set

    def attribute(self, a: Node) -> tuple[str, dict[str, Any], list[Any]]:
        name_node = next((c for c in a.named_children if c.type == "attribute_name"), None)
        name = self.text(name_node) if name_node is not None else self.text(a)
        kwargs: dict[str, Any] = {}
        pos: list[Any] = []
        args = next((c for c in a.named_children if c.type == "attribute_arguments"), None)
        for arg in args.named_children if args is not None else []:
            kids = arg.named_children
            if kids and kids[0].type == "simple_name":
                key = self.text(kids[0]).lower()
                kwargs[key] = self.expr(kids[1]) if len(kids) > 1 else True
            elif kids:
                pos.append(self.expr(kids[0]))
        return name, kwargs, pos

    def param_type(self, tl: Node) -> str:
        t = self.text(tl).strip().lower()
        if t.startswith("[") and t.endswith("]"):
            t = t[1:-1]  # only the outer brackets: [string[]] is an array type
        t = t.removeprefix("system.")
        mapping = {
            "string": "string",
            "int": "int",
            "int32": "int",
            "long": "long",
            "int64": "long",
            "uint32": "uint32",
            "bool": "bool",
            "boolean": "bool",
            "switch": "switch",
            "management.automation.switchparameter": "switch",
            "security.securestring": "securestring",
            "securestring": "securestring",
            "hashtable": "hashtable",
            "collections.hashtable": "hashtable",
            "object": "object",
            "psobject": "object",
            "string[]": "string[]",
            "object[]": "object[]",
            "array": "object[]",
            "scriptblock": "scriptblock",
        }
        if t not in mapping:
            raise self.unsupported(tl, f"The parameter type [{t}]")
        return mapping[t]

    # -- pipelines --------------------------------------------------------------------------
    def pipeline_value(self, n: Node) -> Any:
        """The value of a pipeline used as an expression (condition, `(…)`, assignment)."""
        elements = self.pipeline_elements(n)
        if len(elements) == 1 and elements[0].type not in ("command",):
            if elements[0].type == "assignment_expression":
                self.assignment(elements[0])
                return NOTHING
            return self.expr(elements[0])
        return conv.collapse([x for x in self.pipeline(n) if x is not NOTHING])

    def pipeline_elements(self, n: Node) -> list[Node]:
        found = self._cache.elements.get(n.id)
        if found is None:
            found = self._cache.elements[n.id] = self._pipeline_elements(n)
        return found

    def _pipeline_elements(self, n: Node) -> list[Node]:
        node = n
        while node.type in ("pipeline", "pipeline_chain") or (
            node.type in _WRAPPERS and len(self.named(node)) == 1 and node.child_count == 1
        ):
            kids = self.named(node)
            if node.type == "pipeline_chain" and len(kids) > 1:
                if any(c.type in ("&&", "||") for c in node.children):
                    raise self.unsupported(node, "Pipeline chain operators (&&, ||)")
                return kids
            if len(kids) != 1:
                return kids
            node = kids[0]
        return [node]

    def pipeline(self, n: Node) -> list[Any]:
        elements = self.pipeline_elements(n)
        items: list[Any] | None = None
        for idx, el in enumerate(elements):
            self.check_stop()
            if el.type == "command":
                try:
                    items = self.command(el, items)
                except LoopFlow as f:
                    if f.value and idx < len(elements) - 1:
                        # PowerShell streams: the next commands saw those objects one by one.
                        raise self.unsupported(
                            el, "break/continue in a command whose output goes on down a pipeline"
                        ) from None
                    raise
            elif el.type == "assignment_expression":
                if len(elements) > 1:
                    raise self.unsupported(el, "An assignment inside a pipeline")
                self.assignment(el)
                return []
            else:
                if idx > 0:
                    raise self.unsupported(el, "An expression after '|'")
                v = self.expr(el)
                items = [] if v is NOTHING else conv.enumerate_value(v)
        return [x for x in (items or []) if x is not NOTHING]

    def command(self, n: Node, items: list[Any] | None) -> list[Any]:
        operator, name, elements, rng = self.parts("command", n, self._command_parts)
        if operator:
            return self.call_operator(n, items, dot=name == ".")
        assert name is not None
        if rng is not None and items is None and not self.command_args_present(elements):
            # The grammar reads a leading `1..5` as a command name; it is a range.
            lo, hi = int(rng.group(1)), int(rng.group(2))
            step = 1 if hi >= lo else -1
            return list(range(lo, hi + step, step))
        args = self.command_args(elements) if elements is not None else []
        return self.rs.call(name, args, items, self)

    def _command_parts(self, n: Node) -> tuple[bool, str | None, Node | None, re.Match[str] | None]:
        """Whether it is `& …`, else its name, its elements and the range its name reads as."""
        kids = n.named_children
        if kids and kids[0].type == "command_invokation_operator":
            # `&` runs its callee in a new child scope, `.` in the current one (about_Scopes).
            return True, self.text(kids[0]).strip(), None, None
        name_node = next(c for c in kids if c.type == "command_name")
        name = self.text(name_node)
        elements = next((c for c in kids if c.type == "command_elements"), None)
        return False, name, elements, re.fullmatch(r"(-?\d+)\.\.(-?\d+)", name)

    def call_operator(self, n: Node, items: list[Any] | None, *, dot: bool = False) -> list[Any]:
        """`& <name | scriptblock | CommandInfo> args`: the callee is evaluated, never parsed
        from a value (a string is a command *name*, not script text). `. <scriptblock>`
        dot-sources: the block runs in the current scope (about_Scopes, about_Operators)."""
        kids = n.named_children
        callee_node = next(c for c in kids if c.type == "command_name_expr")
        elements = next((c for c in kids if c.type == "command_elements"), None)
        callee = self.callee(callee_node)
        args = self.command_args(elements) if elements is not None else []
        if isinstance(callee, ScriptBlock):
            cmd = self.scriptblock_command(callee, dot=dot)
            return self.rs.call_def(cmd, args, items, self, log=False)
        if dot:
            raise self.unsupported(n, "Dot-sourcing a command name or script file")
        if isinstance(callee, PSObj) and any(t.endswith("CommandInfo") for t in callee.type_names):
            callee = get_member(callee, "Name")
        if isinstance(callee, str) and callee:
            return self.rs.call(callee, args, items, self)
        raise PSError(
            record(
                "The expression after '&' in a pipeline element produced an object that was not "
                "valid. It must result in a command name, a script block, or a CommandInfo "
                "object.",
                "BadExpression",
                category="InvalidOperation",
                exception="System.Management.Automation.RuntimeException",
                target=callee,
            )
        )

    def callee(self, n: Node) -> Any:
        inner = self.named(n)
        if len(inner) == 1 and inner[0].type == "path_command_name":
            parts = self.named(inner[0])
            if not parts or parts[0].type != "variable":
                return self.text(inner[0])
            value = self.variable_value(self.var_name(parts[0]))
            for tok in parts[1:]:
                text = self.text(tok)
                if tok.type != "path_command_name_token" or not text.startswith("."):
                    raise self.unsupported(n, f"The command expression {self.text(n)}")
                for member in text[1:].split("."):
                    value = get_member(value, member)
            return value
        if len(inner) == 1:
            return self.expr(inner[0])
        raise self.unsupported(n, f"The command expression {self.text(n)}")

    def scriptblock_command(self, sb: ScriptBlock, *, dot: bool = False) -> CommandDef:
        """A script block as a command: its param() block binds like a function's; it runs
        in a new child scope, or in the current one when dot-sourced (`dot`)."""
        ev = self if sb.source is self.src else Evaluator(self.rs, sb.source)
        params, advanced, default_set = ev.param_defs(sb.params)
        takes_pipeline = any(p.pipeline for p in params)

        def run(ctx: Any, args: dict[str, Any], items: Any) -> list[Any]:
            ev.try_depth = self.try_depth
            return ev.call_function(
                params,
                args,
                sb.node,
                remaining=ctx.bound.remaining,
                input_items=None if takes_pipeline else list(items or []),
                dot=dot,
            )

        return CommandDef(
            "",
            params,
            "",
            run,
            default_set=default_set,
            advanced=advanced,
            collects_input=not takes_pipeline,
        )

    def unwrap(self, n: Node) -> Node:
        while n.type in _WRAPPERS and len(self.named(n)) == 1 and n.child_count == 1:
            n = self.named(n)[0]
        return n

    def command_args_present(self, elements: Node | None) -> bool:
        return elements is not None and any(
            c.type not in ("command_argument_sep", "comment") for c in elements.children
        )

    def command_args(self, elements: Node) -> list[Arg]:
        args: list[Arg] = []
        colon = False
        for c in elements.children:
            if c.type == "command_argument_sep":
                if any(ch.type == ":" for ch in c.children) and args and args[-1].bare:
                    colon = True
                continue
            if c.type == "comment":
                continue
            if c.type == "command_parameter":
                text = self.text(c)
                name = text[1:]
                if name.endswith(":"):
                    name = name[:-1]
                    colon = True
                else:
                    colon = False
                args.append(Arg(name, bare=True, text=text))
                continue
            if c.type == "redirection":
                raise self.unsupported(c, "Redirection")
            if self.text(c).startswith("@") and self.unwrap(c).type == "variable":
                v = self.variable_value(self.var_name(self.unwrap(c)))
                if isinstance(v, dict):
                    for k, x in v.items():
                        args.append(Arg(str(k), x, text=f"-{k}"))
                elif isinstance(v, list):
                    args.extend(Arg(None, x) for x in v)
                colon = False
                continue
            v = self.argument(c)
            if colon and args and args[-1].bare:
                args[-1].value = v
                args[-1].bare = False
                colon = False
            else:
                args.append(Arg(None, v))
        return args

    def argument(self, n: Node) -> Any:
        if n.type == "generic_token":
            return self.text(n)
        return self.expr(n)

    # -- expressions ------------------------------------------------------------------------
    def _expr_unwrap(self, n: Node) -> Node:
        """The node `expr` evaluates under one-child precedence wrappers (cached per node)."""
        found = self._cache.unwrapped.get(n.id)
        if found is None:
            found = n
            while (
                found.type.replace("_argument_expression", "_expression") in _WRAPPERS
                and found.child_count == 1
            ):
                kids = self.named(found)
                if len(kids) != 1:
                    break
                found = kids[0]
            self._cache.unwrapped[n.id] = found
        return found

    def expr(self, n: Node) -> Any:
        hit = self._cache.exprs.get(n.id)
        if hit is None:  # derived once per node: the tree never changes
            u = self._expr_unwrap(n)
            hit = (u, u.type.replace("_argument_expression", "_expression"), self.named(u))
            self._cache.exprs[n.id] = hit
        n, t, kids = hit
        if t == "variable":
            return self.variable_value(self.var_name(n))
        if t == "member_access":
            return self.member_access(n)
        if t in _WRAPPERS and len(kids) == 1 and n.child_count == 1:
            return self.expr(kids[0])
        if t in _LITERALS:
            found = self._parts.get(("literal", n.id), _MISSING)
            if found is _MISSING:
                found = self._parts[("literal", n.id)] = self._literal(n, t)
            return self.string(n) if found is _EXPANDABLE else found
        handler = _EXPRESSIONS.get(t)
        if handler is not None:
            return handler(self, n, kids)
        if t == "type_literal":
            raise self.unsupported(n, f"The type literal {self.text(n)}")
        raise self.unsupported(n)

    def _literal(self, n: Node, t: str) -> Any:
        """A literal's value (the same every time), or _EXPANDABLE for a string with `$x` or
        `$( )` inside (evaluated every time)."""
        if t == "integer_literal":
            return self.integer(n)
        if t == "real_literal":
            return float(self.text(n).rstrip("dD"))
        if t == "generic_token":
            return self.text(n)
        inner = n.named_children[0] if n.named_children else None
        if inner is None or inner.type in (
            "verbatim_string_characters",
            "verbatim_here_string_characters",
        ):
            return self.string(n)
        if inner.type in ("expandable_string_literal", "expandable_here_string_literal") and not (
            inner.named_children
        ):
            return self.string(n)  # no variable or $( ) inside: constant too
        return _EXPANDABLE

    def _sub_expression(self, n: Node, kids: list[Node]) -> Any:
        body = next((c for c in kids if c.type == "statement_list"), None)
        return conv.collapse([x for x in self.run_block(body) if x is not NOTHING])

    def _array_expression(self, n: Node, kids: list[Node]) -> Any:
        body = next((c for c in kids if c.type == "statement_list"), None)
        return [x for x in self.run_block(body) if x is not NOTHING]

    def _script_block(self, n: Node, kids: list[Node]) -> Any:
        sb = next((c for c in kids if c.type == "script_block"), None)
        pb = next((c for c in kids if c.type == "param_block"), None)
        return ScriptBlock(sb, self.src, pb)

    def _range(self, n: Node, kids: list[Node]) -> Any:
        lo, hi = (conv.to_int(self.expr(c)) for c in kids)
        step = 1 if hi >= lo else -1
        return list(range(lo, hi + step, step))

    def _assignment_value(self, n: Node, kids: list[Node]) -> Any:
        self.assignment(n)
        return NOTHING

    def integer(self, n: Node) -> int:
        s = self.text(n).lower()
        mult = 1
        for suf, m in (("kb", 1024), ("mb", 1024**2), ("gb", 1024**3)):
            if s.endswith(suf):
                s, mult = s[: -len(suf)], m
        s = s.rstrip("l")
        return (int(s, 16) if s.startswith("0x") else int(s)) * mult

    def string(self, n: Node) -> str:
        raw = self.text(n)
        inner = n.named_children[0] if n.named_children else None
        if inner is None or inner.type in ("verbatim_string_characters",):
            body = raw[1:-1]
            return re.sub(r"['‘’‚‛]{2}", "'", body)
        if inner.type == "verbatim_here_string_characters":
            return _here_body(raw)
        # expandable (here-)string: text segments + embedded variables / $( ) parts
        here = inner.type == "expandable_here_string_literal"
        start = inner.start_byte
        end = inner.end_byte
        parts: list[str] = []
        pos = start
        for c in inner.named_children:
            parts.append(unescape_dq(self.src[pos : c.start_byte].decode()))
            if c.type == "variable":
                parts.append(conv.to_str(self.variable_value(self.var_name(c))))
            elif c.type == "sub_expression":
                parts.append(conv.to_str(self.expr(c)))
            else:
                raise self.unsupported(c)
            pos = c.end_byte
        parts.append(unescape_dq(self.src[pos:end].decode()))
        text = "".join(parts)
        if here:
            return _here_body(text)
        return text[1:-1]

    def var_name(self, n: Node) -> str:
        found = self._cache.var_names.get(n.id)
        if found is None:
            found = self._cache.var_names[n.id] = self._var_name(n)
        return found

    def _var_name(self, n: Node) -> str:
        """The name as `variable_value` / `set_variable` take it: `global:` and `script:`
        stay (they pick the scope), `local:` / `private:` go (the current scope)."""
        raw = self.text(n)
        if raw.startswith("${") and raw.endswith("}"):
            return raw[2:-1]
        name = raw[1:] if raw[:1] in ("$", "@") else raw
        low = name.lower()
        if low.startswith(("global:", "script:")):
            return name
        for scope in ("local:", "private:"):
            if low.startswith(scope):
                return name[len(scope) :]
        if low.startswith("using:"):
            raise self.unsupported(n, "The $using: scope")
        return name

    def variable_value(self, name: str) -> Any:
        low = name.lower()
        if low in _CONSTANTS:
            return _CONSTANTS[low]
        if low.startswith("env:"):
            return self.rs.env.get(name[4:].lower(), (None, None))[1]
        if low.startswith(("global:", "script:")):
            # A scope-qualified name is looked up in that scope only (about_Scopes).
            scope, low = self.qualified_scope(low)
            return scope.vars.get(low)
        if low in ("input",):
            found, v = self.rs.scope.lookup_low("input")
            return v if found else []
        found, v = self.rs.scope.lookup_low(low)
        if found:
            return v
        if low in ("pwd",):
            return self.rs.location_obj()
        return None

    def set_variable(self, name: str, value: Any) -> None:
        low = name.lower()
        if low in ("true", "false", "null"):
            if low == "null":
                return
            raise PSError(
                record(
                    f"Cannot overwrite variable {name} because it is read-only or constant.",
                    "VariableNotWritable",
                    category="WriteError",
                    exception="System.Management.Automation.SessionStateUnauthorizedAccessException",
                )
            )
        if low.startswith("env:"):
            self.rs.env[name[4:].lower()] = (
                name[4:],
                None if value is None else conv.to_str(value),
            )
            return
        scope = self.rs.scope
        if low.startswith(("global:", "script:")):
            scope, low = self.qualified_scope(low)
        if scope.types and low in scope.types:
            value = self.constrain(scope.types[low], value)
        # An unqualified assignment writes the current scope: a same-named variable of a
        # parent scope (and its type constraint) is hidden, not changed (about_Scopes).
        scope.vars[low] = value

    def qualified_scope(self, low: str) -> tuple[Scope, str]:
        """(scope, bare name) of a `global:` / `script:` qualified lower-case name."""
        qual, _, bare = low.partition(":")
        here = self.rs.scope
        return (here.root() if qual == "global" else here.script_scope()), bare

    def declare(self, name: str, value: Any, tname: str | None) -> None:
        """`[type]$name = value` / a typed parameter: the variable of the current (or the
        qualified) scope is replaced by one constrained to `tname` (None: unconstrained)."""
        low = name.lower()
        scope = self.rs.scope
        if low.startswith(("global:", "script:")):
            scope, low = self.qualified_scope(low)
        if tname is not None and tname in CONSTRAINABLE:
            scope.types[low] = tname
        else:
            scope.types.pop(low, None)
        scope.vars[low] = value

    def constrain(self, tname: str, value: Any) -> Any:
        """A value assigned to a variable constrained to `tname`, converted as PowerShell's
        ArgumentTypeConverterAttribute does (ArgumentTypeConverterAttribute.cs): [bool]
        takes only booleans and numbers (CheckBoolValue), [string] joins an array with
        spaces ($OFS); a failure is an ArgumentTransformationMetadataException
        (MetadataError, FullyQualifiedErrorId RuntimeException) with the cast's message."""
        if tname in ("bool", "boolean", "switch"):
            if value is None or not isinstance(value, bool | int | float):
                shown = conv.type_name(value) if value is not None else ""
                target = (
                    "System.Boolean"
                    if tname != "switch"
                    else ("System.Management.Automation.SwitchParameter")
                )
                raise _metadata_error(
                    f'Cannot convert value "{shown}" to type "{target}". Boolean parameters '
                    "accept only Boolean values and numbers, such as $True, $False, 1 or 0."
                )
            return conv.truthy(value)
        try:
            return self.convert_to(tname, value, None)
        except PSError as e:
            raise _metadata_error(e.record.message) from None

    def hashtable(self, n: Node) -> dict[str, Any]:
        out: dict[str, Any] = {}
        seen: set[str] = set()  # keys, lower-case: a hash literal's keys are case-insensitive
        for name, k, value in self.parts("hash", n, self._hash_parts):
            key: Any = name if name is not None else self.expr(k)
            v = self.pipeline_value(value)
            text = conv.to_str(key)
            if text.lower() in seen:
                raise PSError(
                    record(
                        f"Duplicate keys '{key}' are not allowed in hash literals.",
                        "DuplicateKeyInHashLiteral",
                        category="ParserError",
                        exception="System.Management.Automation.ParseException",
                    )
                )
            seen.add(text.lower())
            out[text] = v
        return out

    def _hash_parts(self, n: Node) -> list[tuple[str | None, Node, Node]]:
        """A hash literal's entries: (the key's text when it is a bare name, the key, the
        value)."""
        found = []
        body = next((c for c in n.named_children if c.type == "hash_literal_body"), None)
        for e in body.named_children if body is not None else []:
            if e.type != "hash_entry":
                continue
            kids = self.named(e)
            k = kids[0]
            key_inner = self.named(k)
            simple = k.type == "key_expression" and key_inner and key_inner[0].type == "simple_name"
            found.append((self.text(key_inner[0]) if simple else None, k, kids[1]))
        return found

    # -- members ----------------------------------------------------------------------------
    def member_name(self, n: Node) -> str:
        name, expr = self.parts("member", n, self._member_parts)
        return name if name is not None else conv.to_str(self.expr(expr))

    def _member_parts(self, n: Node) -> tuple[str | None, Node]:
        """A member's name when it is written out, else the expression that computes it."""
        mn = next(c for c in n.named_children if c.type == "member_name")
        inner = self.named(mn)
        if inner and inner[0].type != "simple_name":
            return None, inner[0]
        return self.text(mn), mn

    def member_access(self, n: Node) -> Any:
        static, target = self.parts("access", n, _access_parts)
        if static:
            raise self.unsupported(n, f"The static member {self.text(n)}")
        return get_member(self.expr(target), self.member_name(n))

    def element_access(self, n: Node) -> Any:
        kids = self.named(n)
        target = self.expr(kids[0])
        index = self.expr(kids[1])
        return get_index(target, index)

    def invoke_method(self, n: Node) -> Any:
        kids = n.named_children
        arglist = next((c for c in kids if c.type == "argument_list"), None)
        args: list[Any] = []
        if arglist is not None:
            for c in self.named(arglist):
                if c.type == "argument_expression_list":
                    args += [self.expr(x) for x in self.named(c)]
                    continue
                v = self.expr(c)
                if isinstance(v, list) and c.type in ("array_literal_expression",):
                    args.extend(v)
                else:
                    args.append(v)
        name = self.member_name(n)
        if kids[0].type == "type_literal":
            return static_method(self, kids[0], name, args)
        target = self.expr(kids[0])
        return call_method(target, name, args, n, self)

    # -- operators --------------------------------------------------------------------------
    def unary(self, n: Node) -> Any:
        op, kids = self.parts("unary", n, self._unary_parts)
        if op is None:
            return self.cast(kids[0])
        if op in ("-not", "!"):
            return not conv.truthy(self.expr(kids[-1]))
        if op == ",":
            return [self.expr(kids[-1])]
        if op == "-":
            v = self.expr(kids[-1])
            return -conv.to_number(v)
        if op == "+":
            return conv.to_number(self.expr(kids[-1]))
        if op == "-join":
            return "".join(conv.to_str(x) for x in conv.enumerate_value(self.expr(kids[-1])))
        if op == "-bnot":
            return ~conv.to_int(self.expr(kids[-1]), "System.Int64")
        if op in ("++", "--"):
            return self.increment(n)
        raise self.unsupported(n, f"The unary operator '{op}'")

    def _unary_parts(self, n: Node) -> tuple[str | None, list[Node]]:
        """The operator (lower case; None for a cast) and the operands."""
        first = n.children[0]
        kids = self.named(n)
        if first.type == "cast_expression" or (kids and kids[0].type == "cast_expression"):
            return None, kids
        return self.text(first).lower(), kids

    def cast(self, n: Node) -> Any:
        tl, operand, tname, to_custom = self.parts("cast", n, self._cast_parts)
        if tname in ("void",):
            self.expr(operand[0])
            return NOTHING
        if to_custom:
            h = self.expr(operand[0])
            return conv.custom(h)
        if tname == "ref":  # [ref]$x: a PSReference to the variable (an out parameter's)
            node = operand[0]
            return Reference(lambda: self.expr(node), lambda v: self.assign_to(node, v))
        v = self.expr(operand[0])
        return self.convert_to(tname, v, tl)

    def _cast_parts(self, n: Node) -> tuple[Node, list[Node], str, bool]:
        """The type literal, the operand, the type's name and whether it builds a custom
        object from a hash literal."""
        tl = next(c for c in n.named_children if c.type == "type_literal")
        operand = [c for c in self.named(n) if c != tl]
        tname = self.text(tl).strip("[]").strip().lower()
        to_custom = (
            tname == "pscustomobject" and bool(operand) and self._is_hash_literal(operand[0])
        )
        return tl, operand, tname, to_custom

    def _is_hash_literal(self, n: Node) -> bool:
        node = n
        while node.type in _WRAPPERS and len(self.named(node)) == 1:
            node = self.named(node)[0]
        return node.type == "hash_literal_expression"

    def convert_to(self, tname: str, v: Any, where: Node | None) -> Any:
        t = tname.removeprefix("system.")
        try:
            if t in ("int", "int32"):
                return conv.to_int(v, "System.Int32")
            if t == "uint32":
                return conv.to_int(v, "System.UInt32")
            if t in ("long", "int64"):
                return conv.to_int(v, "System.Int64")
            if t == "double":
                return conv.to_double(v)
            if t == "string":
                return conv.to_str(v)
            if t in ("bool", "boolean"):
                return conv.truthy(v)
            if t == "version":
                return conv.to_version(v)
            if t in ("array", "object[]"):
                return conv.enumerate_value(v) if v is not None else []
            if t == "string[]":
                return [conv.to_str(x) for x in conv.enumerate_value(v)] if v is not None else []
            if t in ("int[]", "int32[]"):
                return [conv.to_int(x) for x in conv.enumerate_value(v)]
            if t in ("hashtable", "collections.hashtable", "ordered"):
                if isinstance(v, dict):
                    return dict(v)
                raise conv.ConversionError(v, "System.Collections.Hashtable")
            if t in ("pscustomobject", "psobject", "object"):
                if t == "pscustomobject" and isinstance(v, dict):
                    return conv.custom(v)
                return v
        except conv.ConversionError as e:
            eid = (
                "InvalidCastFromStringToInteger"
                if isinstance(v, str) and t.startswith(("int", "uint", "long"))
                else "ConvertToFinalInvalidCastException"
            )
            raise PSError(
                record(
                    str(e),
                    eid,
                    category="InvalidArgument",
                    exception="System.Management.Automation.PSInvalidCastException",
                )
            ) from None
        if where is None:
            raise NotSupportedByEmulator(f"The type constraint [{tname}]")
        raise self.unsupported(where, f"The cast [{tname}]")

    def comparison(self, n: Node) -> Any:
        op, kids = self.parts("comparison", n, self._comparison_parts)
        left = self.expr(kids[0])
        if op in ("-is", "-isnot", "-as"):
            return self.type_operator(op, left, kids[2])
        right = self.expr(kids[2])
        return compare_op(op, left, right, self)

    def type_operator(self, op: str, left: Any, right: Node) -> Any:
        """`-is`, `-isnot`, `-as` (about_Type_Operators): the right side is a type literal or
        a type name; `-as` converts like a cast but gives $null when the conversion fails."""
        node = self._expr_unwrap(right)
        if node.type == "type_literal":
            tname = self.text(node).strip().strip("[]").strip().lower()
        else:
            tname = conv.to_str(self.expr(right)).strip().lower()
        if op == "-as":
            try:
                return self.convert_to(tname, left, right)
            except PSError:
                return None
        found = _is_type(left, tname.removeprefix("system."))
        if found is None:
            raise self.unsupported(right, f"The type [{tname}] with {op}")
        return found if op == "-is" else not found

    def _comparison_parts(self, n: Node) -> tuple[str, list[Node]]:
        kids = self.named(n)
        op_node = next(c for c in kids if c.type == "comparison_operator")
        return self.text(op_node).lower(), kids

    def _operator_parts(self, n: Node) -> tuple[str, list[Node]]:
        """A binary operator (as written) and its operands."""
        return self.text(n.children[1]), self.named(n)

    def logical(self, n: Node) -> Any:
        op, kids = self.parts("operator", n, self._operator_parts)
        op = op.lower()
        left = conv.truthy(self.expr(kids[0]))
        if op == "-and":
            return left and conv.truthy(self.expr(kids[1]))
        if op == "-or":
            return left or conv.truthy(self.expr(kids[1]))
        if op == "-xor":
            return left != conv.truthy(self.expr(kids[1]))
        raise self.unsupported(n, f"The operator {op}")

    def arith(self, n: Node) -> Any:
        op, kids = self.parts("operator", n, self._operator_parts)
        return arith_op(op, self.expr(kids[0]), self.expr(kids[1]), self.rs.engine.settings.limits)

    def bitwise(self, n: Node) -> Any:
        op, kids = self.parts("operator", n, self._operator_parts)
        return bitwise_op(op.lower(), self.expr(kids[0]), self.expr(kids[1]))

    def format_op(self, n: Node) -> str:
        kids = self.named(n)
        fmt = conv.to_str(self.expr(kids[0]))
        value = self.expr(kids[-1])
        args = conv.enumerate_value(value)
        try:
            return netformat.composite(fmt, args)
        except netformat.FormatError as e:
            raise PSError(
                record(
                    f"Error formatting a string: {e}",
                    "FormatError",
                    category="InvalidOperation",
                    exception="System.Management.Automation.RuntimeException",
                    target=fmt,
                )
            ) from None

    def increment(self, n: Node) -> Any:
        kids = self.named(n)
        target = kids[0]
        delta = 1 if "++" in self.text(n) else -1
        old = self.expr(target)
        self.assign_to(target, conv.to_number(old) + delta)
        return NOTHING

    def assignment(self, n: Node) -> None:
        left, op, right = self.parts("assignment", n, self._assignment_parts)
        value = self.pipeline_value(right) if right.type == "pipeline" else self.expr(right)
        if value is NOTHING:
            value = None
        if op != "=":
            cur = self.expr(left)
            value = arith_op(op[0], cur, value, self.rs.engine.settings.limits)
        self.assign_to(left, value)

    def _assignment_parts(self, n: Node) -> tuple[Node, str, Node]:
        kids = n.named_children
        op = self.text(next(c for c in kids if c.type == "assignement_operator")).strip()
        return kids[0], op, kids[-1]

    def _assign_target(self, left: Node) -> tuple[str, Node]:
        """What `left` assigns to, derived once per node (a hot path)."""
        hit = self._cache.targets.get(left.id)
        if hit is None:
            node = left
            while node.type in _WRAPPERS and len(self.named(node)) == 1:
                node = self.named(node)[0]
            kind = node.type
            if kind == "expression_with_unary_operator" and (
                self.named(node)[0].type == "cast_expression"
            ):
                kind = "cast"
            hit = self._cache.targets[left.id] = (kind, node)
        return hit

    def assign_to(self, left: Node, value: Any) -> None:
        kind, node = self._assign_target(left)
        if kind == "variable":
            self.set_variable(self.var_name(node), value)
            return
        if kind == "cast":
            cast = self.named(node)[0]
            tl = next(c for c in cast.named_children if c.type == "type_literal")
            target = next(c for c in self.named(cast) if c != tl)
            tname = self.text(tl).strip().lower()
            if tname.startswith("[") and tname.endswith("]"):
                tname = tname[1:-1].strip()  # only the outer brackets: [int[]] is an array
            inner_kind, var = self._assign_target(target)
            if inner_kind == "variable" and tname.removeprefix("system.") in CONSTRAINABLE:
                # `[int]$x = v` makes $x a type-constrained variable (about_Variables).
                tname = tname.removeprefix("system.")
                self.declare(self.var_name(var), self.constrain(tname, value), tname)
                return
            self.assign_to(target, self.convert_to(tname, value, tl))
            return
        if kind == "member_access":
            target = self.expr(node.named_children[0])
            set_member(target, self.member_name(node), value, node, self)
            return
        if kind == "element_access":
            kids = self.named(node)
            target = self.expr(kids[0])
            idx = self.expr(kids[1])
            if isinstance(target, dict):
                existing = _dict_key(target, idx)
                target[existing if existing is not None else idx] = value
                return
            if isinstance(target, list):
                target[conv.to_int(idx)] = value
                return
        raise self.unsupported(node, f"Assigning to {self.text(node)}")

    # -- script blocks ----------------------------------------------------------------------
    def invoke_block(self, sb: ScriptBlock, dollar_: Any) -> list[Any]:
        """Run a script block in the current scope with `$_` set (Where/ForEach-Object)."""
        ev = self if sb.source is self.src else Evaluator(self.rs, sb.source)
        ev.try_depth = self.try_depth
        old = self.rs.scope.lookup("_")
        old_item = self.rs.scope.lookup("PSItem")
        self.rs.scope.set("_", dollar_)
        self.rs.scope.set("PSItem", dollar_)
        try:
            return [x for x in ev.run_block(sb.node) if x is not NOTHING]
        except Return as r:
            return r.value
        finally:
            self.rs.scope.set("_", old[1])
            self.rs.scope.set("PSItem", old_item[1])


def _here_body(raw: str) -> str:
    body = raw[2:-2]
    if body.startswith("\r\n"):
        body = body[2:]
    elif body.startswith("\n"):
        body = body[1:]
    if body.endswith("\r\n"):
        body = body[:-2]
    elif body.endswith("\n"):
        body = body[:-1]
    return body


def _dict_key(d: dict[Any, Any], key: Any) -> Any:
    if key in d:
        return key
    if isinstance(key, str):
        low = key.lower()
        for k in d:
            if isinstance(k, str) and k.lower() == low:
                return k
    return None


def get_member(target: Any, name: str) -> Any:
    low = name.lower()
    if target is None or target is NOTHING:
        # PowerShell 3+ gives every object, $null included, Count and Length (0 for $null, 1
        # for one object) when it has no such property of its own (Adapter.Tests.ps1, "Count
        # and length property works for singletons"; about_Properties).
        return 0 if low in ("count", "length") else None
    if isinstance(target, ErrorRecord):
        return _error_member(target, low)
    if isinstance(target, list | tuple):
        if low in ("count", "length"):
            return len(target)
        vals: list[Any] = []
        for x in target:
            v = get_member(x, name)
            if v is not None:
                vals.extend(v if isinstance(v, list) else [v])
        return conv.collapse(vals)
    if isinstance(target, dict):
        k = _dict_key(target, name)
        if k is not None:
            return target[k]
        if low == "count":
            return len(target)
        if low == "keys":
            return list(target.keys())
        if low == "values":
            return list(target.values())
        return None
    if isinstance(target, PSObj):
        props = target.properties
        if name in props:  # as written (the usual case); else case-insensitively
            return props[name]
        for k, v in props.items():
            if k.lower() == low:
                return v
        if low == "psobject":
            return conv.custom(
                {
                    "Properties": [
                        conv.custom({"Name": k, "Value": v}) for k, v in target.properties.items()
                    ],
                    "TypeNames": list(target.type_names),
                }
            )
        if low == "pstypenames":
            return list(target.type_names)
        if low in ("count", "length"):
            return 1
        return None
    if isinstance(target, str):
        if low == "length":
            return len(target)
        if low == "count":
            return 1
        return None
    if isinstance(target, SecureValue):
        return len(target.reveal()) if low == "length" else None
    if low in ("count", "length"):
        return 1
    return None


def _error_member(e: ErrorRecord, low: str) -> Any:
    if low == "exception":
        return PSObj(
            [e.exception_type, "System.Exception", "System.Object"],
            {"Message": e.message},
            string=e.message,
        )
    if low == "fullyqualifiederrorid":
        return e.fully_qualified_error_id
    if low == "categoryinfo":
        return conv.custom(
            {
                "Category": e.category,
                "Reason": e.exception_type.rsplit(".", 1)[-1],
                "Activity": e.command_name,
            }
        )
    if low == "targetobject":
        return e.target_object
    if low == "errordetails":
        return None
    if low == "invocationinfo":
        return conv.custom({"MyCommand": e.command_name})
    return None


def set_member(target: Any, name: str, value: Any, node: Node, ev: Evaluator) -> None:
    if isinstance(target, dict):
        k = _dict_key(target, name)
        target[k if k is not None else name] = value
        return
    if isinstance(target, PSObj):
        for k in target.properties:
            if k.lower() == name.lower():
                target.properties[k] = value
                return
        raise PSError(
            record(
                f"The property '{name}' cannot be found on this object. Verify that the "
                "property exists and can be set.",
                "PropertyAssignmentException",
                category="InvalidOperation",
            )
        )
    raise ev.unsupported(node, f"Setting '{name}' on a {conv.type_name(target)}")


def get_index(target: Any, index: Any) -> Any:
    if target is None:
        raise PSError(
            record("Cannot index into a null array.", "NullArray", category="InvalidOperation")
        )
    if isinstance(index, list):
        return [get_index(target, i) for i in index]
    if isinstance(target, dict):
        k = _dict_key(target, index)
        return target[k] if k is not None else None
    if isinstance(target, list | tuple | str):
        i = conv.to_int(index)
        try:
            return target[i]
        except IndexError:
            return None
    if isinstance(target, PSObj):
        return (
            get_member(target, conv.to_str(index))
            if isinstance(index, str)
            else (target if conv.to_int(index) in (0, -1) else None)
        )
    return target if conv.to_int(index) in (0, -1) else None


_STR_METHODS: dict[str, Callable[..., Any]] = {
    "tostring": lambda s: s,
    "tolower": lambda s: s.lower(),
    "toupper": lambda s: s.upper(),
    "tolowerinvariant": lambda s: s.lower(),
    "toupperinvariant": lambda s: s.upper(),
    "trim": lambda s, chars=None: s.strip(chars),
    "trimend": lambda s, chars=None: s.rstrip(chars),
    "trimstart": lambda s, chars=None: s.lstrip(chars),
    "contains": lambda s, x: conv.to_str(x) in s,
    "startswith": lambda s, x: s.startswith(conv.to_str(x)),
    "endswith": lambda s, x: s.endswith(conv.to_str(x)),
    "replace": lambda s, a, b: s.replace(conv.to_str(a), conv.to_str(b)),
    "substring": lambda s, a, b=None: (
        s[conv.to_int(a) :] if b is None else s[conv.to_int(a) : conv.to_int(a) + conv.to_int(b)]
    ),
    "indexof": lambda s, x: s.find(conv.to_str(x)),
    "split": lambda s, *seps: _split(s, seps),
    "equals": lambda s, x: s == conv.to_str(x),
    "padleft": lambda s, n, c=" ": s.rjust(conv.to_int(n), conv.to_str(c)),
    "padright": lambda s, n, c=" ": s.ljust(conv.to_int(n), conv.to_str(c)),
}


def _split(s: str, seps: tuple[Any, ...]) -> list[str]:
    chars = "".join(conv.to_str(x) for x in seps) or " "
    return re.split("[" + re.escape(chars) + "]", s)


def call_method(target: Any, name: str, args: list[Any], node: Node, ev: Evaluator) -> Any:
    low = name.lower()
    if isinstance(target, SecureValue):
        raise ev.unsupported(node, "Methods of a SecureString")
    if low == "tostring" and not args:
        return conv.to_str(target) if not isinstance(target, list) else "System.Object[]"
    if low == "gettype" and not args:
        full = conv.type_name(target)
        return conv.custom({"Name": full.rsplit(".", 1)[-1], "FullName": full})
    if isinstance(target, NetObject):  # a .NET object from New-Object (dotnet_threading)
        out = target.call(ev.rs, name, args)
        return NOTHING if out is VOID else out
    if isinstance(target, ScriptBlock) and low in ("invoke", "invokereturnasis"):
        cmd = ev.scriptblock_command(target)
        return ev.rs.call_def(cmd, [Arg(None, a) for a in args], None, ev, log=False)
    if isinstance(target, str) and low in _STR_METHODS:
        return _STR_METHODS[low](target, *args)
    if isinstance(target, list):
        if low == "contains":
            return any(conv.equals(x, args[0]) for x in target)
        if low == "indexof":
            return next((i for i, x in enumerate(target) if conv.equals(x, args[0])), -1)
    if isinstance(target, dict):
        if low in ("containskey", "contains"):
            return _dict_key(target, args[0]) is not None
        if low == "add":
            if _dict_key(target, args[0]) is not None:
                raise PSError(
                    record(
                        f'Exception calling "Add" with "2" argument(s): "Item has already been '
                        f"added. Key in dictionary: '{args[0]}'  Key being added: '{args[0]}'\"",
                        "ArgumentException",
                        category="NotSpecified",
                        exception="System.Management.Automation.MethodInvocationException",
                    )
                )
            target[args[0]] = args[1]
            return NOTHING
        if low == "remove":
            k = _dict_key(target, args[0])
            if k is not None:
                del target[k]
            return NOTHING
    raise ev.unsupported(node, f"The method {conv.type_name(target)}.{name}()")


def static_method(ev: Evaluator, tl: Node, name: str, args: list[Any]) -> Any:
    t = ev.text(tl).strip("[]").lower().removeprefix("system.")
    low = name.lower()
    if t == "string" and low == "isnullorempty":
        return args[0] is None or conv.to_str(args[0]) == ""
    if t == "string" and low == "isnullorwhitespace":
        return args[0] is None or conv.to_str(args[0]).strip() == ""
    if t == "string" and low == "join":
        items = args[1] if len(args) == 2 and isinstance(args[1], list) else args[1:]
        return conv.to_str(args[0]).join(conv.to_str(x) for x in items)
    if t in ("scriptblock", "management.automation.scriptblock") and low == "create":
        return create_scriptblock(conv.to_str(args[0]) if args else "")
    if t in ("io.path",) and low == "combine":
        return ntpath.join(*(conv.to_str(a) for a in args))
    raise ev.unsupported(tl, f"The static method [{t}]::{name}()")


def create_scriptblock(text: str) -> ScriptBlock:
    """`[scriptblock]::Create(text)`: parsed now (a syntax error is the method's exception)."""
    if not text.strip():
        return ScriptBlock(None, b"", None, text)
    root, src = parse(text)
    err = parse_error(root, src)
    if err is not None:
        raise PSError(
            record(
                f'Exception calling "Create" with "1" argument(s): "{err.message}"',
                "ParseException",
                category="NotSpecified",
                exception="System.Management.Automation.MethodInvocationException",
            )
        )
    body = next((c for c in root.named_children if c.type == "statement_list"), None)
    pb = next((c for c in root.named_children if c.type == "param_block"), None)
    return ScriptBlock(body, src, pb, text)


def _op_parts(op: str) -> tuple[str, bool]:
    """The operator without its case prefix (`-ceq` → `-eq`) and whether it is case-sensitive:
    every string comparison is case-insensitive unless the operator starts with `-c`
    (about_Comparison_Operators, Common features)."""
    name = op[1:]
    if name[:1] in ("c", "i") and name[1:] in _CMP_NAMES:
        return "-" + name[1:], name[0] == "c"
    return op, False


def _net_regex_text(pattern: str) -> str:
    r""".NET regex syntax that Python spells differently: `(?<name>…)` is `(?P<name>…)`, and a
    `-` right after a class shorthand inside `[…]` (`[\w-.]`) is a literal dash."""
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            pair = pattern[i : i + 2]
            out.append(pair)
            i += 2
            if in_class and pair[1] in "wdsWDS" and pattern[i : i + 1] == "-":
                out.append("\\-")
                i += 1
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            out.append(c)
            i += 1
            if pattern[i : i + 1] == "^":
                out.append("^")
                i += 1
            if pattern[i : i + 1] == "]":  # a leading ] is a literal
                out.append("\\]")
                i += 1
            continue
        elif pattern.startswith("(?<", i) and pattern[i + 3 : i + 4] not in ("=", "!"):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _net_regex(pattern: Any, cs: bool) -> re.Pattern[str]:
    """A .NET regular expression compiled by Python (see `_net_regex_text`)."""
    text = _net_regex_text(conv.to_str(pattern))
    try:
        return re.compile(text, 0 if cs else re.IGNORECASE)
    except re.error as e:
        raise PSError(
            record(
                f"The regular expression pattern {conv.to_str(pattern)} is not valid. ({e})",
                "InvalidRegularExpression",
                category="InvalidOperation",
                exception="System.Management.Automation.RuntimeException",
                target=pattern,
            )
        ) from None


def _net_substitution(rep: str) -> Callable[[re.Match[str]], str]:
    """A .NET replacement pattern (`$1`, `${name}`, `$0` / `$&`, `$$`) as a re.sub callable."""
    tokens = re.split(r"(\$\$|\$\{\w+\}|\$\d+|\$&)", rep)

    def expand(m: re.Match[str]) -> str:
        out = []
        for tok in tokens:
            if tok == "$$":
                out.append("$")
            elif tok == "$&":
                out.append(m.group(0))
            elif tok.startswith("${") and tok.endswith("}"):
                name = tok[2:-1]
                try:
                    out.append(m.group(int(name) if name.isdigit() else name) or "")
                except IndexError:  # no such group: written as is, as .NET does
                    out.append(tok)
            elif tok.startswith("$") and tok[1:].isdigit():
                try:
                    out.append(m.group(int(tok[1:])) or "")
                except IndexError:
                    out.append(tok)
            else:
                out.append(tok)
        return "".join(out)

    return expand


def compare_op(op: str, left: Any, right: Any, ev: Evaluator) -> Any:
    base, cs = _op_parts(op)
    if base in ("-contains", "-notcontains"):
        found = any(conv.equals(x, right, cs) for x in conv.enumerate_value(left))
        return found if base == "-contains" else not found
    if base in ("-in", "-notin"):
        found = any(conv.equals(x, left, cs) for x in conv.enumerate_value(right))
        return found if base == "-in" else not found
    if base == "-join":
        return conv.to_str(right).join(conv.to_str(x) for x in conv.enumerate_value(left))
    if base == "-replace":
        pat, rep = ([*right, ""])[:2] if isinstance(right, list) else (right, "")
        rx = _net_regex(pat, cs)
        sub = _net_substitution(conv.to_str(rep))
        if isinstance(left, list):  # applied to every element (about_Comparison_Operators)
            return [rx.sub(sub, conv.to_str(x)) for x in left]
        return rx.sub(sub, conv.to_str(left))
    if base == "-split":
        # <Delimiter>[, <Max-substrings>] (about_Split); 0 or none: every substring.
        parts = right if isinstance(right, list) else [right]
        if len(parts) > 2:
            raise NotSupportedByEmulator("The options of -split")
        pattern, limit = parts[0], conv.to_int(parts[1]) if len(parts) > 1 else 0
        rx = _net_regex(pattern, cs)
        most = max(limit - 1, 0)
        return [part for x in conv.enumerate_value(left) for part in rx.split(conv.to_str(x), most)]
    if base not in _CMP_OPS:
        raise NotSupportedByEmulator(f"The operator '{op}'")
    if isinstance(left, list):
        # A collection on the left filters it; -match does not set $Matches then.
        return [x for x in left if _compare_scalar(base, cs, x, right, None) is True]
    return _compare_scalar(base, cs, left, right, ev)


def _compare_scalar(base: str, cs: bool, left: Any, right: Any, ev: Evaluator | None) -> bool:
    if base == "-eq":
        return conv.equals(left, right, cs)
    if base == "-ne":
        return not conv.equals(left, right, cs)
    if base in ("-like", "-notlike"):
        m = conv.like(left, right) if not cs else _like_cs(left, right)
        return m if base == "-like" else not m
    if base in ("-match", "-notmatch"):
        mt = _net_regex(right, cs).search(conv.to_str(left))
        if mt is not None and ev is not None:
            groups: dict[Any, Any] = {0: mt.group(0)}
            groups.update({i + 1: g for i, g in enumerate(mt.groups()) if g is not None})
            groups.update({k: v for k, v in mt.groupdict().items() if v is not None})
            ev.rs.scope.set("Matches", groups)
        return (mt is not None) if base == "-match" else mt is None
    try:
        c = conv.compare(left, right, cs)
    except conv.ConversionError as e:
        raise PSError(
            record(
                f'Could not compare "{conv.to_str(left)}" to "{conv.to_str(right)}". Error: "{e}"',
                "ComparisonFailure",
                category="InvalidOperation",
                exception="System.Management.Automation.RuntimeException",
            )
        ) from None
    return {"-lt": c < 0, "-le": c <= 0, "-gt": c > 0, "-ge": c >= 0}[base]


#: Operators that compare one value with another (and filter a collection on the left).
_CMP_OPS = {"-eq", "-ne", "-lt", "-le", "-gt", "-ge", "-like", "-notlike", "-match", "-notmatch"}
#: Every comparison operator's name, without the dash and the c / i prefix.
_CMP_NAMES = {x[1:] for x in _CMP_OPS} | {
    "contains",
    "notcontains",
    "in",
    "notin",
    "replace",
    "split",
}
_CMP_BASE = {"-" + x for x in _CMP_NAMES} | {"-join"}


def _like_cs(value: Any, pattern: Any) -> bool:
    rx = conv.wildcard_regex(conv.to_str(pattern))
    return re.compile(rx.pattern, re.DOTALL).match(conv.to_str(value)) is not None


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _widen(a: int | float, b: int | float, r: int | float) -> int | float:
    """The result of integer arithmetic: in the operands' type when it fits (Int32, else
    Int64), else widened to Double (about_Arithmetic_Operators: 512MB * 512MB is a Double)."""
    if not isinstance(r, int):
        return r
    both32 = all(_INT32[0] <= x <= _INT32[1] for x in (a, b))
    lo, hi = _INT32 if both32 else _INT64
    return r if lo <= r <= hi else float(r)


def _no_op_method(a: Any, op: str) -> PSError:
    names = {
        "+": "op_Addition",
        "-": "op_Subtraction",
        "*": "op_Multiply",
        "/": "op_Division",
        "%": "op_Modulus",
    }
    return PSError(
        record(
            f"Method invocation failed because [{conv.type_name(a)}] does not contain a method "
            f"named '{names[op]}'.",
            "MethodNotFound",
            category="InvalidOperation",
            exception="System.Management.Automation.RuntimeException",
        )
    )


def _number(v: Any) -> int | float:
    """The right operand of numeric arithmetic, converted to a number (the left's type)."""
    if isinstance(v, str) and not v.strip():
        return 0
    try:
        return conv.to_number(v)
    except conv.ConversionError:
        if isinstance(v, str):
            raise PSError(
                record(
                    f'Cannot convert value "{v}" to type "System.Int32". Error: "Input string '
                    'was not in a correct format."',
                    "InvalidCastFromStringToInteger",
                    category="InvalidArgument",
                    exception="System.Management.Automation.RuntimeException",
                )
            ) from None
        raise PSError(
            record(
                str(conv.ConversionError(v, "System.Int32")),
                "ConvertToFinalInvalidCastException",
                category="InvalidArgument",
                exception="System.Management.Automation.RuntimeException",
            )
        ) from None


def _repeat(a: str | list[Any], b: Any, limits: Limits | None) -> Any:
    """`a * b` for a string or an array: allocated whole, so beyond `limits.max_allocation`
    elements it is the OutOfMemoryException the CLR would throw."""
    times = conv.to_int(b)
    cap = limits.max_allocation if limits is not None else 0
    if cap and len(a) * max(times, 0) > cap:
        raise out_of_memory()
    return a * times


def arith_op(op: str, a: Any, b: Any, limits: Limits | None = None) -> Any:
    """`+ - * / %` typed by the LEFT operand (about_Arithmetic_Operators): a string
    concatenates / repeats, an array appends / repeats, a hashtable merges, a number converts
    the right operand."""
    if a is None and op == "+":
        return b
    if isinstance(a, list):
        if op == "+":
            return a + conv.enumerate_value(b)
        if op == "*":
            return _repeat(a, b, limits)
        raise _no_op_method(a, op)
    if isinstance(a, dict):
        if op != "+":
            raise _no_op_method(a, op)
        if not isinstance(b, dict):
            raise PSError(
                record(
                    "A hash table can only be added to another hash table.",
                    "AddHashTableToNonHashTable",
                    category="InvalidOperation",
                )
            )
        merged = dict(a)
        for k, v in b.items():
            if _dict_key(merged, k) is not None:
                raise PSError(
                    record(
                        f"Item has already been added. Key in dictionary: '{k}'  Key being "
                        f"added: '{k}'",
                        "System.ArgumentException",
                        category="OperationStopped",
                        exception="System.ArgumentException",
                    )
                )
            merged[k] = v
        return merged
    if isinstance(a, str) and op == "+":
        return a + conv.to_str(b)
    if isinstance(a, str) and op == "*":
        return _repeat(a, b, limits)
    if not (a is None or isinstance(a, bool | int | float | str)):
        if op == "+":
            raise NotSupportedByEmulator(f"'+' on {conv.type_name(a)}")
        raise _no_op_method(a, op)
    x, y = _number(a), _number(b)
    if op == "+":
        return _widen(x, y, x + y)
    if op == "-":
        return _widen(x, y, x - y)
    if op == "*":
        return _widen(x, y, x * y)
    if op in ("/", "%"):
        if y == 0 and isinstance(x, int) and isinstance(y, int):
            raise PSError(
                record("Attempted to divide by zero.", "RuntimeException", category="NotSpecified")
            )
        if y == 0:
            return math.copysign(math.inf, x) if op == "/" and x else math.nan
        if op == "%":  # .NET remainder: the sign of the dividend
            if isinstance(x, int) and isinstance(y, int):
                return (abs(x) % abs(y)) * (1 if x >= 0 else -1)
            return math.fmod(x, y)
        if isinstance(x, int) and isinstance(y, int) and x % y == 0:
            return _widen(x, y, x // y)
        return x / y
    raise NotSupportedByEmulator(f"The operator '{op}'")


def bitwise_op(op: str, a: Any, b: Any) -> int:
    """`-band -bor -bxor -shl -shr` on integers (about_Arithmetic_Operators, Bitwise operators)."""
    x, y = conv.to_int(a, "System.Int64"), conv.to_int(b, "System.Int64")
    if op == "-band":
        return x & y
    if op == "-bor":
        return x | y
    if op == "-bxor":
        return x ^ y
    if op == "-shl":
        return x << (y & 63)
    if op == "-shr":
        return x >> (y & 63)
    raise NotSupportedByEmulator(f"The operator '{op}'")


#: The literals whose value `Evaluator.expr` derives once per node.
_LITERALS = frozenset({"integer_literal", "real_literal", "string_literal", "generic_token"})

_Handler = Callable[[Evaluator, Node, list[Node]], Any]
#: Expression kinds → how `Evaluator.expr` evaluates them (the node, its named children).
_EXPRESSIONS: dict[str, _Handler] = {
    "pipeline": lambda ev, n, kids: ev.pipeline_value(n),
    "element_access": lambda ev, n, kids: ev.element_access(n),
    "invokation_expression": lambda ev, n, kids: ev.invoke_method(n),
    "parenthesized_expression": lambda ev, n, kids: ev.pipeline_value(kids[0]),
    "sub_expression": Evaluator._sub_expression,
    "array_expression": Evaluator._array_expression,
    "hash_literal_expression": lambda ev, n, kids: ev.hashtable(n),
    "script_block_expression": Evaluator._script_block,
    "array_literal_expression": lambda ev, n, kids: [ev.expr(c) for c in kids],
    "expression_with_unary_operator": lambda ev, n, kids: ev.unary(n),
    "cast_expression": lambda ev, n, kids: ev.cast(n),
    "comparison_expression": lambda ev, n, kids: ev.comparison(n),
    "logical_expression": lambda ev, n, kids: ev.logical(n),
    "bitwise_expression": lambda ev, n, kids: ev.bitwise(n),
    "additive_expression": lambda ev, n, kids: ev.arith(n),
    "multiplicative_expression": lambda ev, n, kids: ev.arith(n),
    "format_expression": lambda ev, n, kids: ev.format_op(n),
    "range_expression": Evaluator._range,
    "post_increment_expression": lambda ev, n, kids: ev.increment(n),
    "post_decrement_expression": lambda ev, n, kids: ev.increment(n),
    "pre_increment_expression": lambda ev, n, kids: ev.increment(n),
    "pre_decrement_expression": lambda ev, n, kids: ev.increment(n),
    "assignment_expression": Evaluator._assignment_value,
}
