"""The bridge to tree-sitter-powershell: parsing (cached by text), syntax errors, the
grammar's wrapper nodes and string escapes."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any, NamedTuple

import tree_sitter
import tree_sitter_powershell

from cmproxy.emulator.engine.language.errors import record
from cmproxy.emulator.engine.language.scopes import BreakFlow, ContinueFlow, LoopFlow
from cmproxy.emulator.engine.language.values import ErrorRecord

Node = tree_sitter.Node


_LANGUAGE = tree_sitter.Language(tree_sitter_powershell.language())

#: Grammar nodes that only wrap one child (precedence levels).
WRAPPERS = {
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
SKIP = {"comment", "empty_statement", "command_argument_sep"}


class _NodeCache:
    """What the evaluator derives from a tree's nodes, by node id (the tree never changes)."""

    __slots__ = (
        "blocks",
        "checked",
        "elements",
        "exprs",
        "named",
        "parts",
        "plans",
        "targets",
        "texts",
        "unwrapped",
        "var_names",
    )

    def __init__(self) -> None:
        self.named: dict[int, list[Node]] = {}
        self.elements: dict[int, list[Node]] = {}
        #: pipeline node → its elements, each with its kind (pipelines.py)
        self.plans: dict[int, list[tuple[Node, int]]] = {}
        #: block node → how run_block runs it, and a statement list's statements and labels
        self.blocks: dict[int, tuple[int, list[Node], dict[int, str]]] = {}
        self.unwrapped: dict[int, Node] = {}
        #: expression node → (the node evaluated, its kind, its named children, how `expr`
        #: evaluates it: a step code of expressions.py, a variable's name)
        self.exprs: dict[int, tuple[Node, str, list[Node], int, str]] = {}
        self.var_names: dict[int, str] = {}
        #: assignment target node → (its kind, the node assigned to)
        self.targets: dict[int, tuple[str, Node]] = {}
        #: node → its source text
        self.texts: dict[int, str] = {}
        #: What Windows PowerShell 5.1's parser refuses that the grammar accepts (`parse_error`):
        #: (error id, message) of each, in source order; None until checked.
        self.checked: list[tuple[str, str]] | None = None
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
    root, src = _tree(text.encode("utf-8"))
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


#: Param blocks a script may have the gap below after (one per script block), at most.
_PARAM_GAPS_MAX = 64


def _tree(src: bytes) -> tuple[Node, bytes]:
    """`src` parsed, read as PowerShell's grammar reads it where tree-sitter-powershell does not.

    PowerShell needs no terminator between a param block and the statements after it
    ("script-block: param-block~opt~ statement-terminators~opt~ script-block-body~opt~",
    Windows PowerShell Language Specification 3.0, §7.1.8 and §B.2.2), but the grammar rejects
    a keyword statement there on the same line (`param($a) return $a`, `… if …`, `… throw …`).
    The blank after such a param block is parsed as the `;` the specification makes optional:
    as many bytes, so every node keeps its position, and the source returned (from which node
    texts are read) is the script as written.
    """
    parser = tree_sitter.Parser(_LANGUAGE)
    root = parser.parse(src).root_node
    parsed = src
    for _ in range(_PARAM_GAPS_MAX):
        at = _param_gap(root, parsed) if root.has_error else None
        if at is None:
            break
        parsed = parsed[:at] + b";" + parsed[at + 1 :]
        root = parser.parse(parsed).root_node
    return root, src


def _param_gap(root: Node, src: bytes) -> int | None:
    """The blank right after a param block that the grammar left in an error, if any."""
    stack = [root]
    while stack:
        node = stack.pop()
        if node.type == "ERROR":
            first = node.named_children[:1]
            if first and first[0].type == "param_block":
                end = first[0].end_byte
                if src[end : end + 1] in (b" ", b"\t"):
                    return end
        if node.has_error:
            stack.extend(node.children)
    return None


def node_cache(src: bytes) -> _NodeCache:
    """The node cache shared by every evaluation of a cached source (else a new one)."""
    with _parse_lock:
        hit = _CACHE_BY_SRC.get(id(src))
    if hit is not None and hit[0] is src:
        return hit[1]
    return _NodeCache()


def parse_error(root: Node, src: bytes) -> ErrorRecord | None:
    """A ParseException record when the grammar flags an error, or when Windows PowerShell 5.1
    refuses what the grammar accepts (`refused_by_5_1`), else None."""
    if not root.has_error:
        cache = node_cache(src)
        if cache.checked is None:
            cache.checked = refused_by_5_1(root, src)
        if not cache.checked:
            return None
        # ParseException(ParseError[]): the first error's ErrorId, every error's text (at most
        # ten) in its Message, one after the other (ParseException.cs).
        return record(
            "\n".join(text for _, text in cache.checked[:10]),
            cache.checked[0][0],
            category="ParserError",
            exception="System.Management.Automation.ParseException",
        )
    errors = _errors(root)
    real = [e for e in errors if not recoverable(e)]
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


#: Windows PowerShell's ParserStrings (src/System.Management.Automation/resources/
#: ParserStrings.resx) for what its parser refuses and the grammar accepts: `&&` / `||`
#: (pipeline chains, a meaning only since PowerShell 7.0), an expression after `|`, and the
#: semantic checks of Parser.cs and SemanticChecks.cs below. Each is a case of PowerShell's
#: own test/powershell/Language/Parser/Parsing.Tests.ps1 (`ShouldBeParseError`).
_TEXTS = {
    "InvalidEndOfLine": "The token '{}' is not a valid statement separator in this version.",
    "ExpressionsMustBeFirstInPipeline": (
        "Expressions are only allowed as the first element of a pipeline."
    ),
    "MissingCatchOrFinally": "The Try statement is missing its Catch or Finally block.",
    "ControlLeavingFinally": "Flow of control cannot leave a Finally block.",
    "DuplicateFormalParameter": "Duplicate parameter ${} in parameter list.",
    "SplattingNotPermitted": (
        "The splatting operator '@' cannot be used to reference variables in an expression. "
        "'@{0}' can be used only as an argument to a command. To reference variables in an "
        "expression use '${0}'."
    ),
    "SplattingNotPermittedInArgumentList": (
        "Splatted variables like '@{}' cannot be part of a comma-separated list of arguments."
    ),
    "ParameterRequiresArgument": "Parameter {} requires an argument.",
    "MissingNamedStatementBlock": "Missing statement block after '{}'.",
    "InvalidLeftHandSide": (
        "The assignment expression is not valid. The input to an assignment operator must be an "
        "object that is able to accept assignments, such as a variable or a property."
    ),
}
#: The named blocks of a script block (Parser.NamedBlockListRule; `clean` came with 7.3).
_BLOCK_NAMES = {"begin", "process", "end", "dynamicparam"}
#: A number literal (about_Numeric_Literals: decimal, hexadecimal, real, an exponent, the type
#: suffixes l and d, the multipliers kb to pb), which the grammar takes for a command name
#: after `|` and PowerShell's tokenizer scans as a number: an expression.
_NUMBER = re.compile(
    r"(?:0x[0-9a-f]+l?|(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?[ld]?)(?:kb|mb|gb|tb|pb)?", re.I
)
#: Where `return` / `break` / `continue` stop looking for a finally they would leave: a script
#: block (a function's, a `{ }` literal's) or a trap (SemanticChecks.CheckForFlowOutOfFinally).
_FLOW_SCOPES = {"script_block", "trap_statement"}
#: Loops (and switch) a `break` / `continue` acts on, so it does not leave an enclosing finally.
_LOOPS = {
    "foreach_statement",
    "for_statement",
    "while_statement",
    "do_statement",
    "switch_statement",
}
#: The expression levels between a command argument and the variable it is.
_ARGUMENT_LEVELS = WRAPPERS | {"expression_with_unary_operator"}


class _Found(NamedTuple):
    """One ParseError: its id and text, its node, and whether it sits right after the node (an
    empty extent after it, Parser.After) rather than on it."""

    error_id: str
    node: Node
    text: str
    after: bool

    @property
    def offset(self) -> int:
        return self.node.end_byte if self.after else self.node.start_byte


def _refuse(error_id: str, node: Node, *args: str, after: bool = False) -> list[_Found]:
    """The ParseError `error_id` at `node`, its ParserStrings text filled with `args`."""
    return [_Found(error_id, node, _TEXTS[error_id].format(*args), after)]


def refused_by_5_1(root: Node, src: bytes) -> list[tuple[str, str]]:
    """(error id, text) of each ParseError Windows PowerShell 5.1 reports in a script the grammar
    parsed without error, in source order."""
    found: list[_Found] = []
    stack = [root]
    while stack:
        node = stack.pop()
        found += _refusals(node, src)
        stack.extend(node.children)
    found.sort(key=lambda f: f.offset)
    return [(f.error_id, _position(f.node, src, after=f.after) + "\n" + f.text) for f in found]


def _refusals(node: Node, src: bytes) -> list[_Found]:
    """What PowerShell's parser reports at `node` that the grammar let through."""
    t = node.type
    if t == "pipeline_chain_tail":
        op = next((c for c in node.children if c.type in ("&&", "||")), node)
        return _refuse("InvalidEndOfLine", op, op.type)
    if t == "command" and _opens_a_body(node):
        return _named_blocks_without_block(node, src)
    if t == "command" and node.prev_sibling is not None and node.prev_sibling.type == "|":
        name = next((c for c in node.children if c.type == "command_name"), None)
        if name is not None and _NUMBER.fullmatch(_text(name, src)):
            return _refuse("ExpressionsMustBeFirstInPipeline", name)
        return []
    if t == "try_statement" and not any(
        c.type in ("catch_clauses", "finally_clause") for c in node.children
    ):
        # Parser.TryStatementRule: right after the try's block.
        body = next((c for c in node.children if c.type == "statement_block"), node)
        return _refuse("MissingCatchOrFinally", body, after=True)
    if t == "flow_control_statement" and _leaves_finally(node):
        return _refuse("ControlLeavingFinally", node)
    if t == "parameter_list":
        return _duplicate_parameters(node, src)
    if t == "assignment_expression":
        return _compound_to_many(node, src)
    if t == "variable" and _text(node, src).startswith("@"):
        return _splatted_in_expression(node, src)
    if t == "command_argument_sep" and any(c.type == ":" for c in node.children):
        return _parameter_without_argument(node, src)
    return []


def _opens_a_body(node: Node) -> bool:
    """Is this command the first statement of a script or script block (where PowerShell reads
    `begin`, `process`, `end` and `dynamicparam` as the names of its blocks)?"""
    chain = node.parent
    pipeline = chain.parent if chain is not None else None
    statements = pipeline.parent if pipeline is not None else None
    if chain is None or chain.type != "pipeline_chain" or chain.named_children[:1] != [node]:
        return False
    if pipeline is None or statements is None or statements.type != "statement_list":
        return False
    first = next((c for c in statements.named_children if c.type not in SKIP), None)
    return (
        first == pipeline
        and statements.parent is not None
        and statements.parent.type in ("program", "script_block_body")
    )


def _named_blocks_without_block(node: Node, src: bytes) -> list[_Found]:
    """Parser.NamedBlockListRule: a block name with no statement block after it is
    MissingNamedStatementBlock, right after the name (the grammar read `begin process end`,
    which has none, as a command and its arguments)."""
    elements = next((c for c in node.children if c.type == "command_elements"), None)
    words = [c for c in node.children if c.type == "command_name"]
    words += [c for c in (elements.children if elements else []) if c.type not in SKIP]
    if not words or _text(words[0], src).lower() not in _BLOCK_NAMES:
        return []
    found: list[_Found] = []
    for word, following in zip(words, [*words[1:], None], strict=True):
        keyword = _text(word, src).lower()
        if (
            word.type in ("command_name", "generic_token")
            and keyword in _BLOCK_NAMES
            and (following is None or not _text(following, src).startswith("{"))
        ):
            found += _refuse("MissingNamedStatementBlock", word, keyword, after=True)
    return found


def _compound_to_many(node: Node, src: bytes) -> list[_Found]:
    """`$a, $b += 1, 2`: several targets take `=` only (Compiler.cs, ArrayAssignableValue has no
    read/modify/write), InvalidLeftHandSide at the targets."""
    kids = node.named_children
    op = next((c for c in kids if c.type == "assignement_operator"), None)
    if not kids or op is None or _text(op, src).strip() == "=":
        return []
    left = kids[0]
    while left.type in WRAPPERS and left.named_child_count == 1:
        left = left.named_children[0]
    if left.type != "array_literal_expression" or left.named_child_count < 2:
        return []
    return _refuse("InvalidLeftHandSide", left)


def _leaves_finally(node: Node) -> bool:
    """Does this return / break / continue leave a finally block (CheckForFlowOutOfFinally)?"""
    keyword = node.children[0].type if node.children else ""
    if keyword not in ("return", "break", "continue"):
        return False
    parent = node.parent
    while parent is not None and parent.type not in _FLOW_SCOPES:
        if keyword != "return" and parent.type in _LOOPS:
            return False  # the loop it acts on is inside the finally
        if parent.type == "statement_block" and _is_finally(parent.parent):
            return True
        parent = parent.parent
    return False


def _is_finally(node: Node | None) -> bool:
    return node is not None and node.type == "finally_clause"


def _duplicate_parameters(node: Node, src: bytes) -> list[_Found]:
    """SemanticChecks.CheckForDuplicateParameters: a name (case-insensitive) given twice."""
    seen: set[str] = set()
    found: list[_Found] = []
    for param in (c for c in node.children if c.type == "script_parameter"):
        var = next((c for c in param.children if c.type == "variable"), None)
        if var is None:
            continue
        name = _text(var, src)[1:]
        if name.lower() in seen:
            found += _refuse("DuplicateFormalParameter", var, name)
        seen.add(name.lower())
    return found


def _splatted_in_expression(node: Node, src: bytes) -> list[_Found]:
    """SemanticChecks.VisitVariableExpression: `@name` anywhere but as a command's argument."""
    name = _text(node, src)[1:]
    listed = False
    up = node.parent
    while up is not None and up.type in _ARGUMENT_LEVELS:
        listed = listed or (up.type == "array_literal_expression" and up.named_child_count > 1)
        up = up.parent
    if up is None or up.type != "command_elements":
        return _refuse("SplattingNotPermitted", node, name)
    if listed:
        return _refuse("SplattingNotPermittedInArgumentList", node, name)
    return []


def _parameter_without_argument(node: Node, src: bytes) -> list[_Found]:
    """Parser.CommandRule: `-Name:` with nothing after it in its command."""
    before = node.prev_sibling
    after = node.next_sibling
    while after is not None and after.type in ("command_argument_sep", "comment"):
        after = after.next_sibling
    if before is None or before.type != "command_parameter" or after is not None:
        return []
    return _refuse("ParameterRequiresArgument", node, _text(before, src) + ":", after=True)


def _text(node: Node, src: bytes) -> str:
    return src[node.start_byte : node.end_byte].decode("utf-8", errors="replace")


def _position(node: Node, src: bytes, *, after: bool = False) -> str:
    """Where a ParseError is, as PowerShell prints it: line and column, the line, and a squiggle
    under the token (PositionUtilities.VerboseMessage; one line of the token), or under the
    place right after it (`after`: an empty extent, Parser.After)."""
    at = node.end_byte if after else node.start_byte
    before = src[:at].decode("utf-8", errors="replace")
    line = before.count("\n")
    start = len(before.rpartition("\n")[2])
    lines = src.decode("utf-8", errors="replace").splitlines() or [""]
    text_line = lines[min(line, len(lines) - 1)]
    width = 1 if after else max(1, min(len(_text(node, src)), len(text_line) - start))
    return f"At line:{line + 1} char:{start + 1}\n+ {text_line}\n+ {' ' * start}{'~' * width}"


def _errors(n: Node) -> list[Node]:
    """Every ERROR / missing node, outermost first, in source order."""
    if n.type == "ERROR" or n.is_missing:
        return [n]
    found: list[Node] = []
    for c in n.children:
        if c.has_error or c.type == "ERROR" or c.is_missing:
            found += _errors(c)
    return found


def labeled_flow(n: Node) -> tuple[type[LoopFlow], Node] | None:
    """`break outer` / `continue outer`: the grammar has no label after break/continue and
    reads the statement as an ERROR node of exactly those two tokens (about_Break)."""
    kids = [c for c in n.children if c.type not in SKIP]
    if n.type != "ERROR" or len(kids) != 2 or kids[1].type != "simple_name":
        return None
    if n.parent is None or n.parent.type not in ("statement_list", "statement_block"):
        return None  # misplaced by the grammar (outside the block it was written in)
    kind = {"break": BreakFlow, "continue": ContinueFlow}.get(kids[0].type)
    return (kind, kids[1]) if kind is not None else None


def recoverable(n: Node) -> bool:
    """The grammar's known misreadings: `function F { param($A) $A }` on one line puts the
    param block in an ERROR node right after `{`; `break label` / `continue label` is an ERROR
    node of its two tokens. PowerShell accepts both; so does the emulator."""
    if labeled_flow(n) is not None:
        return True
    parent = n.parent
    kids = [c for c in n.children if c.type not in SKIP]
    return (
        n.type == "ERROR"
        and parent is not None
        and parent.type == "function_statement"
        and len(kids) == 1
        and kids[0].type == "param_block"
        and not kids[0].has_error
    )


#: Windows PowerShell 5.1's escape sequences in double-quoted strings; `e and `u{x} came with
#: PowerShell 6 (about_Special_Characters), so in 5.1 a backtick before them is the letter.
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
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


def if_parts(n: Node) -> list[tuple[Node | None, Node]]:
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


def foreach_parts(n: Node) -> tuple[Node, Node, Node]:
    """The loop variable, what it iterates and the body."""
    kids = n.named_children
    return (
        next(c for c in kids if c.type == "variable"),
        next(c for c in kids if c.type == "pipeline"),
        next(c for c in kids if c.type == "statement_block"),
    )


def try_parts(n: Node) -> tuple[Node, Node | None, Node | None]:
    """The try block, the catch clauses and the finally clause."""
    kids = n.named_children
    return (
        next(c for c in kids if c.type == "statement_block"),
        next((c for c in kids if c.type == "catch_clauses"), None),
        next((c for c in kids if c.type == "finally_clause"), None),
    )


def access_parts(n: Node) -> tuple[bool, Node]:
    """Whether a member access is static (`::`), and its target."""
    return any(c.type == "::" for c in n.children), n.named_children[0]


def here_body(raw: str) -> str:
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
