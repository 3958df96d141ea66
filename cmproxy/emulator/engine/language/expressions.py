"""Expressions: literals, strings, variables and assignment, hashtables, members,
unary and binary operators, casts and conversions (about_Operators, about_Variables)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import tree_sitter

from cmproxy.emulator.engine.language import conv, netformat
from cmproxy.emulator.engine.language.conv import ScriptBlock
from cmproxy.emulator.engine.language.dotnet import (
    CONSTRAINABLE,
    is_type,
    static_method,
    static_property,
)
from cmproxy.emulator.engine.language.dotnet_threading import Reference
from cmproxy.emulator.engine.language.errors import (
    NotSupportedByEmulator,
    PSError,
    record,
)
from cmproxy.emulator.engine.language.evaluation import (
    CONSTANTS,
    EXPANDABLE,
    MISSING,
    EvaluatorCore,
    metadata_error,
)
from cmproxy.emulator.engine.language.members import (
    call_method,
    dict_key,
    get_index,
    get_member,
    set_member,
)
from cmproxy.emulator.engine.language.operators import arith_op, bitwise_op, compare_op
from cmproxy.emulator.engine.language.parser import (
    WRAPPERS,
    access_parts,
    here_body,
    unescape_dq,
)
from cmproxy.emulator.engine.language.scopes import (
    NOTHING,
    Return,
    Scope,
)

Node = tree_sitter.Node


class ExpressionRules(EvaluatorCore):
    """How expressions evaluate."""

    # -- expressions ------------------------------------------------------------------------
    def _expr_unwrap(self, n: Node) -> Node:
        """The node `expr` evaluates under one-child precedence wrappers (cached per node)."""
        found = self._cache.unwrapped.get(n.id)
        if found is None:
            found = n
            while (
                found.type.replace("_argument_expression", "_expression") in WRAPPERS
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
            hit = self._cache.exprs[n.id] = self._expr_step(n)
        n, t, kids, step, name = hit
        if step == _HANDLER:
            return _EXPRESSIONS[t](self, n, kids)
        if step == _VARIABLE:
            return self.variable_value(name)
        if step == _MEMBER:
            return self.member_access(n)
        if step == _WRAPPER:
            return self.expr(kids[0])
        if step == _LITERAL:
            found = self._parts.get(("literal", n.id), MISSING)
            if found is MISSING:
                found = self._parts[("literal", n.id)] = self._literal(n, t)
            return self.string(n) if found is EXPANDABLE else found
        if t == "type_literal":
            raise self.unsupported(n, f"The type literal {self.text(n)}")
        raise self.unsupported(n)

    def _expr_step(self, n: Node) -> tuple[Node, str, list[Node], int, str]:
        """(the node `expr` evaluates, its kind, its named children, which of its steps
        evaluates it, a variable's name), in the order `expr` tries them: all fixed by the
        tree."""
        u = self._expr_unwrap(n)
        t = u.type.replace("_argument_expression", "_expression")
        kids = self.named(u)
        if t == "variable":
            # a name var_name refuses ($using:) is not kept: that step raises every time
            return u, t, kids, _VARIABLE, self.var_name(u)
        if t == "member_access":
            step = _MEMBER
        elif t in WRAPPERS and len(kids) == 1 and u.child_count == 1:
            step = _WRAPPER
        elif t in _LITERALS:
            step = _LITERAL
        elif t in _EXPRESSIONS:
            step = _HANDLER
        else:
            step = _UNSUPPORTED
        return u, t, kids, step, ""

    def _literal(self, n: Node, t: str) -> Any:
        """A literal's value (the same every time), or EXPANDABLE for a string with `$x` or
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
        return EXPANDABLE

    def _sub_expression(self, n: Node, kids: list[Node]) -> Any:
        body = next((c for c in kids if c.type == "statement_list"), None)
        return conv.collapse([x for x in self.run_block(body) if x is not NOTHING])

    def _array_expression(self, n: Node, kids: list[Node]) -> Any:
        body = next((c for c in kids if c.type == "statement_list"), None)
        return [x for x in self.run_block(body) if x is not NOTHING]

    def _script_block(self, n: Node, kids: list[Node]) -> Any:
        sb = next((c for c in kids if c.type == "script_block"), None)
        pb = next((c for c in kids if c.type == "param_block"), None)
        # Its text is the literal's without the curly braces, param block included
        # (ScriptBlockAst.ToStringForSerialization, PowerShell/PowerShell ast.cs).
        return ScriptBlock(sb, self.src, pb, self.text(n)[1:-1])

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
            return here_body(raw)
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
            return here_body(text)
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
        kind = _PLAIN_NAMES.get(name)
        if kind is not None:  # a plain name (the usual case): the scopes, from this one up
            found, v = self.rs.scope.lookup_low(kind)
            if found:
                return v
            return self.rs.location_obj() if kind == "pwd" else None
        low = name.lower()
        if low in CONSTANTS:
            return CONSTANTS[low]
        if low.startswith("env:"):
            return self.rs.env.get(name[4:].lower(), (None, None))[1]
        if low.startswith(("global:", "script:")):
            # A scope-qualified name is looked up in that scope only (about_Scopes).
            scope, low = self.qualified_scope(low)
            return scope.vars.get(low)
        if low in ("input",):
            found, v = self.rs.scope.lookup_low("input")
            return v if found else []
        if len(_PLAIN_NAMES) < _PLAIN_NAMES_MAX:
            _PLAIN_NAMES[name] = low  # none of the cases above: the same next time
        found, v = self.rs.scope.lookup_low(low)
        if found:
            return v
        if low in ("pwd",):
            return self.rs.location_obj()
        return None

    def set_variable(self, name: str, value: Any) -> None:
        low = _PLAIN_NAMES.get(name)
        if low is not None:  # a plain name (see variable_value): the current scope's variable
            scope = self.rs.scope
            if scope.types and low in scope.types:
                value = self.constrain(scope.types[low], value)
            scope.vars[low] = value
            return
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
        elif low != "input" and len(_PLAIN_NAMES) < _PLAIN_NAMES_MAX:
            _PLAIN_NAMES[name] = low  # a plain name: the fast path above next time
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
                raise metadata_error(
                    f'Cannot convert value "{shown}" to type "{target}". Boolean parameters '
                    "accept only Boolean values and numbers, such as $True, $False, 1 or 0."
                )
            return conv.truthy(value)
        try:
            return self.convert_to(tname, value, None)
        except PSError as e:
            raise metadata_error(e.record.message) from None

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
        static, target = self.parts("access", n, access_parts)
        if static:
            if target.type != "type_literal":
                raise self.unsupported(n, f"The static member {self.text(n)}")
            return static_property(self, target, self.member_name(n))
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
        return call_method(target, name, args, n, self.as_evaluator())

    # -- operators --------------------------------------------------------------------------
    def unary(self, n: Node) -> Any:
        op, kids = self.parts("unary", n, self._unary_parts)
        if op is None:
            return self.cast(kids[0])
        if op in ("-not", "!"):
            return not conv.truthy(self.expr(kids[-1]))
        if op == ",":
            return [self.expr(kids[-1])]
        if op in ("-", "+"):
            v = self.expr(kids[-1])
            if isinstance(v, int | float) and not isinstance(v, bool):
                return -v if op == "-" else v
            # Of anything not numeric, PowerShell's PSUnaryOperationBinder binds 0 - x / 0 + x:
            # the binary operation's conversions and errors.
            return arith_op(op, 0, v, self.rs.engine.settings.limits)
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
        while node.type in WRAPPERS and len(self.named(node)) == 1:
            node = self.named(node)[0]
        return node.type == "hash_literal_expression"

    def convert_to(self, tname: str, v: Any, where: Node | None) -> Any:
        t = tname.removeprefix("system.")
        try:
            converted = _convert_scalar(t, v)
            if converted is _UNCONVERTED:
                converted = _convert_collection(t, v)
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
        if converted is not _UNCONVERTED:
            return converted
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
        found = is_type(left, tname.removeprefix("system."))
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
        left, op, right, piped = self.parts("assignment", n, self._assignment_parts)
        value = self.pipeline_value(right) if piped else self.expr(right)
        if value is NOTHING:
            value = None
        if op != "=":
            cur = self.expr(left)
            value = arith_op(op[0], cur, value, self.rs.engine.settings.limits)
        self.assign_to(left, value)

    def _assignment_parts(self, n: Node) -> tuple[Node, str, Node, bool]:
        """(target, operator, value, whether the value is a pipeline)."""
        kids = n.named_children
        op = self.text(next(c for c in kids if c.type == "assignement_operator")).strip()
        return kids[0], op, kids[-1], kids[-1].type == "pipeline"

    def _assign_target(self, left: Node) -> tuple[str, Node]:
        """What `left` assigns to, derived once per node (a hot path)."""
        hit = self._cache.targets.get(left.id)
        if hit is None:
            node = left
            while node.type in WRAPPERS and len(self.named(node)) == 1:
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
                existing = dict_key(target, idx)
                target[existing if existing is not None else idx] = value
                return
            if isinstance(target, list):
                target[conv.to_int(idx)] = value
                return
        if kind == "array_literal_expression":
            # `$a, $b = …` (about_Assignment_Operators): each target its share of the value.
            targets = self.named(node)
            for target, share in zip(targets, spread(value, len(targets)), strict=True):
                self.assign_to(target, share)
            return
        raise self.unsupported(node, f"Assigning to {self.text(node)}")

    # -- script blocks ----------------------------------------------------------------------
    def invoke_block(self, sb: ScriptBlock, dollar_: Any) -> list[Any]:
        """Run a script block in the current scope with `$_` set (Where/ForEach-Object)."""
        ev = self if sb.source is self.src else type(self)(self.rs, sb.source)
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


#: The literals whose value `Evaluator.expr` derives once per node.
#: What the two conversion tables return for a type name they do not hold.
_UNCONVERTED: Any = object()


def _convert_scalar(t: str, v: Any) -> Any:
    """`[t]v` for a scalar type name (`system.` removed), or _UNCONVERTED."""
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
    return _UNCONVERTED


def _convert_collection(t: str, v: Any) -> Any:
    """`[t]v` for an array, hashtable or object type name (`system.` removed), or _UNCONVERTED."""
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
    return _UNCONVERTED


_LITERALS = frozenset({"integer_literal", "real_literal", "string_literal", "generic_token"})
#: Variable names (as written) that name no constant, env: or scope-qualified variable and
#: not $input → their lower-case form: `variable_value` looks them up in the scopes directly.
_PLAIN_NAMES: dict[str, str] = {}
_PLAIN_NAMES_MAX = 100_000
#: How `ExpressionRules.expr` evaluates a node (`_expr_step`).
_HANDLER, _VARIABLE, _MEMBER, _WRAPPER, _LITERAL, _UNSUPPORTED = range(6)

_Handler = Callable[[ExpressionRules, Node, list[Node]], Any]
#: Expression kinds → how `Evaluator.expr` evaluates them (the node, its named children).
_EXPRESSIONS: dict[str, _Handler] = {
    "pipeline": lambda ev, n, kids: ev.pipeline_value(n),
    "element_access": lambda ev, n, kids: ev.element_access(n),
    "invokation_expression": lambda ev, n, kids: ev.invoke_method(n),
    "parenthesized_expression": lambda ev, n, kids: ev.pipeline_value(kids[0]),
    "sub_expression": ExpressionRules._sub_expression,
    "array_expression": ExpressionRules._array_expression,
    "hash_literal_expression": lambda ev, n, kids: ev.hashtable(n),
    "script_block_expression": ExpressionRules._script_block,
    "array_literal_expression": lambda ev, n, kids: [ev.expr(c) for c in kids],
    "expression_with_unary_operator": lambda ev, n, kids: ev.unary(n),
    "cast_expression": lambda ev, n, kids: ev.cast(n),
    "comparison_expression": lambda ev, n, kids: ev.comparison(n),
    "logical_expression": lambda ev, n, kids: ev.logical(n),
    "bitwise_expression": lambda ev, n, kids: ev.bitwise(n),
    "additive_expression": lambda ev, n, kids: ev.arith(n),
    "multiplicative_expression": lambda ev, n, kids: ev.arith(n),
    "format_expression": lambda ev, n, kids: ev.format_op(n),
    "range_expression": ExpressionRules._range,
    "post_increment_expression": lambda ev, n, kids: ev.increment(n),
    "post_decrement_expression": lambda ev, n, kids: ev.increment(n),
    "pre_increment_expression": lambda ev, n, kids: ev.increment(n),
    "pre_decrement_expression": lambda ev, n, kids: ev.increment(n),
    "assignment_expression": ExpressionRules._assignment_value,
}


def spread(value: Any, count: int) -> list[Any]:
    """`value` shared among `count` assignment targets, as PSArrayAssignmentRHSBinder does
    (Binders.cs): a list's elements one each, $null for targets beyond its end, the rest as an
    array for the last target; a value that is not a list to the first target alone."""
    if not isinstance(value, list):
        return [value] + [None] * (count - 1)
    if len(value) <= count:
        return list(value) + [None] * (count - len(value))
    return [*value[: count - 1], list(value[count - 1 :])]
