"""Pipelines and command calls: elements, arguments, the call operators `&` and `.`
(about_Pipelines, about_Operators)."""

from __future__ import annotations

import re
from typing import Any

import tree_sitter

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import Arg, CommandDef
from cmproxy.emulator.engine.language.conv import ScriptBlock
from cmproxy.emulator.engine.language.errors import (
    PSError,
    StopRequested,
    record,
)
from cmproxy.emulator.engine.language.functions import FunctionRules
from cmproxy.emulator.engine.language.members import (
    get_member,
)
from cmproxy.emulator.engine.language.parser import (
    WRAPPERS,
)
from cmproxy.emulator.engine.language.scopes import (
    NOTHING,
    LoopFlow,
)
from cmproxy.emulator.engine.language.values import PSObj

Node = tree_sitter.Node


class PipelineRules(FunctionRules):
    """How pipelines and commands run."""

    # -- pipelines --------------------------------------------------------------------------
    def pipeline_value(self, n: Node) -> Any:
        """The value of a pipeline used as an expression (condition, `(…)`, assignment)."""
        plan = self._cache.plans.get(n.id)
        if plan is None:
            plan = self._cache.plans[n.id] = self._pipeline_plan(n)
        if len(plan) == 1:
            el, kind = plan[0]
            if kind == _ASSIGNMENT:
                self.assignment(el)
                return NOTHING
            if kind == _EXPRESSION:
                return self.expr(el)
        return conv.collapse([x for x in self.pipeline(n) if x is not NOTHING])

    def _pipeline_plan(self, n: Node) -> list[tuple[Node, int]]:
        """A pipeline's elements, each with its kind (command, assignment, expression)."""
        plan = []
        for el in self.pipeline_elements(n):
            t = el.type
            kind = (
                _COMMAND
                if t == "command"
                else _ASSIGNMENT
                if t == "assignment_expression"
                else _EXPRESSION
            )
            plan.append((el, kind))
        return plan

    def pipeline_elements(self, n: Node) -> list[Node]:
        found = self._cache.elements.get(n.id)
        if found is None:
            found = self._cache.elements[n.id] = self._pipeline_elements(n)
        return found

    def _pipeline_elements(self, n: Node) -> list[Node]:
        node = n
        while node.type in ("pipeline", "pipeline_chain") or (
            node.type in WRAPPERS and len(self.named(node)) == 1 and node.child_count == 1
        ):
            kids = self.named(node)
            # `&&` / `||` never get here: the grammar puts them in a pipeline_chain_tail, and
            # Windows PowerShell 5.1 refuses them when it parses (parser.refused_by_5_1).
            if len(kids) != 1:
                return kids
            node = kids[0]
        return [node]

    def pipeline(self, n: Node) -> list[Any]:
        plan = self._cache.plans.get(n.id)
        if plan is None:
            plan = self._cache.plans[n.id] = self._pipeline_plan(n)
        items: list[Any] | None = None
        rs = self.rs
        for idx, (el, kind) in enumerate(plan):
            if rs.stop_event is not None and rs.stop_event.is_set():  # check_stop, inlined
                raise StopRequested
            if kind == _COMMAND:
                try:
                    items = self.command(el, items)
                except LoopFlow as f:
                    if f.value and idx < len(plan) - 1:
                        # PowerShell streams: the next commands saw those objects one by one.
                        raise self.unsupported(
                            el, "break/continue in a command whose output goes on down a pipeline"
                        ) from None
                    raise
            elif kind == _ASSIGNMENT:
                if len(plan) > 1:
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
        return self.rs.call(name, args, items, self.as_evaluator())

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
            return self.rs.call_def(cmd, args, items, self.as_evaluator(), log=False)
        if dot:
            raise self.unsupported(n, "Dot-sourcing a command name or script file")
        if isinstance(callee, PSObj) and any(t.endswith("CommandInfo") for t in callee.type_names):
            callee = get_member(callee, "Name")
        if isinstance(callee, str) and callee:
            return self.rs.call(callee, args, items, self.as_evaluator())
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
        ev = self if sb.source is self.src else type(self)(self.rs, sb.source)
        params, advanced, default_set = ev.param_defs(sb.params)
        takes_pipeline = any(p.pipeline for p in params)

        def run(ctx: Any, args: dict[str, Any], items: Any) -> list[Any]:
            ev.try_depth = self.try_depth
            automatic = {"args": list(ctx.bound.remaining)}
            if not takes_pipeline:
                automatic["input"] = list(items or [])
            return ev.call_function(params, args, sb.node, automatic, dot=dot)

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
        while n.type in WRAPPERS and len(self.named(n)) == 1 and n.child_count == 1:
            n = self.named(n)[0]
        return n

    def command_args_present(self, elements: Node | None) -> bool:
        return elements is not None and any(
            c.type not in ("command_argument_sep", "comment") for c in elements.children
        )

    def command_args(self, elements: Node) -> list[Arg]:
        args: list[Arg] = []
        colon = False
        for c, kind, name, text in self.parts("args", elements, self._args_parts):
            if kind == _SEP_COLON:
                if args and args[-1].bare:
                    colon = True
                continue
            if kind == _SKIP:
                continue
            if kind in (_PARAMETER, _PARAMETER_COLON):
                colon = kind == _PARAMETER_COLON
                args.append(Arg(name, bare=True, text=text))
                continue
            if kind == _REDIRECTION:
                raise self.unsupported(c, "Redirection")
            if kind == _SPLAT:
                args += self._splatted(c)
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

    def _args_parts(self, elements: Node) -> list[tuple[Node, int, str, str]]:
        """What `command_args` does with each element of a command (fixed by the tree):
        (the node, which kind of element it is, a parameter's name and text)."""
        out: list[tuple[Node, int, str, str]] = []
        for c in elements.children:
            if c.type == "command_argument_sep":
                colon = any(ch.type == ":" for ch in c.children)
                out.append((c, _SEP_COLON if colon else _SKIP, "", ""))
            elif c.type == "comment":
                out.append((c, _SKIP, "", ""))
            elif c.type == "command_parameter":
                text = self.text(c)
                name = text[1:]
                kind = _PARAMETER
                if name.endswith(":"):
                    name = name[:-1]
                    kind = _PARAMETER_COLON
                out.append((c, kind, name, text))
            elif c.type == "redirection" or (
                c.type == "generic_token" and _REDIRECTION_WORD.match(self.text(c))
            ):
                out.append((c, _REDIRECTION, "", ""))
            elif self.text(c).startswith("@") and self.unwrap(c).type == "variable":
                out.append((c, _SPLAT, "", ""))
            else:
                out.append((c, _ARGUMENT, "", ""))
        return out

    def _splatted(self, c: Node) -> list[Arg]:
        """The arguments `@name` splats: a hashtable's entries by name, an array's by position."""
        v = self.variable_value(self.var_name(self.unwrap(c)))
        if isinstance(v, dict):
            return [Arg(str(k), x, text=f"-{k}") for k, x in v.items()]
        if isinstance(v, list):
            return [Arg(None, x) for x in v]
        return []

    def argument(self, n: Node) -> Any:
        if n.type == "generic_token":
            return self.text(n)
        return self.expr(n)


#: A bare word the grammar reads as an argument where PowerShell reads a redirection: one that
#: starts with `>`, `1>` to `6>` or `*>` (`2>$null`, `*>>log`, `>out` written without a space).
#: PowerShell's tokenizer checks for those before it scans a word or a number (tokenizer.cs,
#: NextToken); any other digits before '>' make one bare word in a command's arguments
#: (`7>x`, ScanNumberHelper), and so does a '>' inside a word (CharTraits.cs: '>' does not
#: force a new token).
_REDIRECTION_WORD = re.compile(r"[1-6*]?>")

#: The kinds of a pipeline's elements (`PipelineRules._pipeline_plan`).
_COMMAND, _ASSIGNMENT, _EXPRESSION = range(3)
#: The kinds of a command's elements (`PipelineRules._args_parts`).
_SEP_COLON, _SKIP, _PARAMETER, _PARAMETER_COLON, _REDIRECTION, _SPLAT, _ARGUMENT = range(7)
