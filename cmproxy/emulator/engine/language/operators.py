"""Comparison, arithmetic and bitwise operators (about_Comparison_Operators,
about_Arithmetic_Operators) and the .NET regex dialect they use."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tree_sitter

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.errors import (
    NotSupportedByEmulator,
    PSError,
    out_of_memory,
    record,
)
from cmproxy.emulator.engine.language.members import dict_key
from cmproxy.emulator.settings import Limits

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.evaluation import EvaluatorCore

Node = tree_sitter.Node


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
    """A .NET replacement pattern as a re.sub callable: `$1`, `${name}`, `$0` / `$&`, `$$`, and
    the input around the match, `` $` `` before it, `$'` after it, `$_` all of it, `$+` the last
    group (.NET Framework "Substitutions", Regex.Replace)."""
    tokens = re.split(r"(\$\$|\$\{\w+\}|\$\d+|\$[&`'+_])", rep)

    def expand(m: re.Match[str]) -> str:
        out = []
        for tok in tokens:
            if tok == "$$":
                out.append("$")
            elif tok == "$&":
                out.append(m.group(0))
            elif tok == "$`":
                out.append(m.string[: m.start()])
            elif tok == "$'":
                out.append(m.string[m.end() :])
            elif tok == "$_":
                out.append(m.string)
            elif tok == "$+":
                out.append(m.group(m.re.groups) or "")
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


def compare_op(op: str, left: Any, right: Any, ev: EvaluatorCore) -> Any:
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
        if limit < 0:
            # Splitting from the end came with PowerShell 7.0 (CHANGELOG/7.0.md, #8960); what
            # 5.1 answers (Regex.Split with a negative count) is [UNCONFIRMED].
            raise NotSupportedByEmulator("A negative number of substrings for -split")
        rx = _net_regex(pattern, cs)
        texts = [conv.to_str(x) for x in conv.enumerate_value(left)]
        if limit == 1:  # Regex.Split(input, 1): one substring, the whole input
            return texts
        return [part for text in texts for part in rx.split(text, max(limit - 1, 0))]
    if base not in _CMP_OPS:
        raise NotSupportedByEmulator(f"The operator '{op}'")
    if isinstance(left, list):
        # A collection on the left filters it; -match does not set $Matches then.
        return [x for x in left if _compare_scalar(base, cs, x, right, None) is True]
    return _compare_scalar(base, cs, left, right, ev)


def _compare_scalar(base: str, cs: bool, left: Any, right: Any, ev: EvaluatorCore | None) -> bool:
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
        return _add_hashtables(a, op, b)
    if isinstance(a, str) and op == "+":
        return a + conv.to_str(b)
    if isinstance(a, str) and op == "*":
        return _repeat(a, b, limits)
    if not (a is None or isinstance(a, bool | int | float | str)):
        if op == "+":
            raise NotSupportedByEmulator(f"'+' on {conv.type_name(a)}")
        raise _no_op_method(a, op)
    return _number_op(op, _number(a), _number(b))


def _add_hashtables(a: dict[Any, Any], op: str, b: Any) -> dict[Any, Any]:
    """`a + b` for a hashtable: a new one with both's keys; a key in both is an error."""
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
        if dict_key(merged, k) is not None:
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


def _number_op(op: str, x: int | float, y: int | float) -> Any:
    """`x op y` for two numbers, widened as .NET widens them."""
    if op == "+":
        return _widen(x, y, x + y)
    if op == "-":
        return _widen(x, y, x - y)
    if op == "*":
        return _widen(x, y, x * y)
    if op in ("/", "%"):
        return _divide(op, x, y)
    raise NotSupportedByEmulator(f"The operator '{op}'")


def _divide(op: str, x: int | float, y: int | float) -> Any:
    """`x / y` or `x % y`: integer division by zero is an error, a double's is infinity or
    NaN; `%` is the .NET remainder, `/` of integers stays an integer when it divides evenly."""
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
