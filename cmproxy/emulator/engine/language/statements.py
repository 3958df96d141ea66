"""Statements: blocks, if, loops and labels, switch, try/catch/finally, throw,
break/continue/return (about_If, about_Foreach, about_Switch, about_Try_Catch_Finally,
about_Break)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import tree_sitter

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.errors import (
    PSError,
    StopRequested,
    record,
)
from cmproxy.emulator.engine.language.members import (
    dict_key,
    get_member,
)
from cmproxy.emulator.engine.language.operators import compare_op
from cmproxy.emulator.engine.language.parser import (
    SKIP,
    access_parts,
    foreach_parts,
    if_parts,
    labeled_flow,
    try_parts,
)
from cmproxy.emulator.engine.language.pipelines import PipelineRules
from cmproxy.emulator.engine.language.scopes import (
    NOTHING,
    BreakFlow,
    ContinueFlow,
    Flow,
    LoopFlow,
    Return,
)
from cmproxy.emulator.engine.language.values import ErrorRecord

Node = tree_sitter.Node


class StatementRules(PipelineRules):
    """How statements run."""

    # -- statements -------------------------------------------------------------------------
    def run_block(self, n: Node | None) -> list[Any]:
        """Run a statement_list / statement_block / script_block body; returns output."""
        if n is None:
            return []
        hit = self._cache.blocks.get(n.id)
        if hit is None:  # derived once per node: the tree never changes
            hit = self._cache.blocks[n.id] = self._block_parts(n)
        kind, stmts, labels = hit
        if kind == _STATEMENTS:
            return self.run_statements(stmts, labels)
        if kind == _STATEMENT:
            return self.run_statements([n])
        if kind == _ONLY_CHILD:  # a block of one child (its statement list): what it outputs
            return self.run_block(stmts[0])
        inner = self.named(n)
        if kind == _SCRIPT_BLOCK and any(c.type == "param_block" for c in inner):
            raise self.unsupported(n, "param() inside a script block")
        out: list[Any] = []
        for c in inner:
            try:
                out += self.run_block(c)
            except (Flow, PSError) as r:
                r.value = out + r.value  # output written before return/break/throw stays
                raise
        return out

    def _block_parts(self, n: Node) -> tuple[int, list[Node], dict[int, str]]:
        """How `run_block` runs `n`, and a statement list's statements and labels."""
        kind = _block_kind(n)
        if kind == _STATEMENTS:
            return (kind, *self._labeled_statements(n))
        inner = self.named(n)
        if kind == _BLOCK and len(inner) == 1:
            return _ONLY_CHILD, inner, {}
        return kind, [], {}

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
        rs = self.rs
        for i, s in enumerate(stmts):
            if rs.stop_event is not None and rs.stop_event.is_set():  # check_stop, inlined
                raise StopRequested
            try:
                if labels and i in labels:
                    out += self.labeled(s, labels[i])
                else:
                    out += self.statement(s)
            except Flow as r:
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
        if t in SKIP:
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
            flow = labeled_flow(n)
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
        for cond, block in self.parts("if", n, if_parts):
            if cond is None or conv.truthy(self.pipeline_value(cond)):
                return self.run_block(block)
        return []

    def foreach_statement(self, n: Node, label: str | None = None) -> list[Any]:
        var, src, block = self.parts("foreach", n, foreach_parts)
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
        var, _src, block = foreach_parts(n)
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
        left, op, right, _ = self._assignment_parts(elements[0])
        kind, target = self._assign_target(left)
        if op != "=" or kind != "element_access" or right.type != "pipeline":
            return None
        table, key = self.named(target)
        key = self._expr_unwrap(key)
        value = self.pipeline_elements(right)
        if table.type != "variable" or key.type != "member_access" or len(value) != 1:
            return None
        value_node = self._expr_unwrap(value[0])
        static, owner = access_parts(key)
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
            existing = dict_key(table, key)
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
            return not isinstance(f, BreakFlow)
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
        block, catches, fin = self.parts("try", n, try_parts)
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
                out += self._run_catch(catches, e)
        except Flow as f:
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

    def _run_catch(self, catches: Node, e: PSError) -> list[Any]:
        """Run the catch clause for `e` with `$_`/`$PSItem` set to its record, restored after."""
        clause = catches.named_children[0]
        if any(c.type == "catch_type_list" for c in clause.named_children):
            raise self.unsupported(clause, "A typed catch clause") from None
        body = next(c for c in clause.named_children if c.type == "statement_block")
        old = self.rs.scope.lookup("_")
        self.rs.scope.set("_", e.record)
        self.rs.scope.set("PSItem", e.record)
        self.catching.append(e.record)
        try:
            return self.run_block(body)
        finally:
            self.catching.pop()
            self.rs.scope.set("_", old[1])
            self.rs.scope.set("PSItem", old[1])

    def flow(self, n: Node) -> list[Any]:
        kw, arg = self.parts("flow", n, _flow_parts)
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
            raise BreakFlow
        if kw == "continue":
            raise ContinueFlow
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


def _flow_parts(n: Node) -> tuple[str, Node | None]:
    """A flow statement's keyword and its pipeline (derived once per node)."""
    return n.children[0].type, next((c for c in n.named_children if c.type == "pipeline"), None)


#: What `run_block` runs a node as (`_block_kind`).
_BLOCK, _SCRIPT_BLOCK, _STATEMENTS, _STATEMENT, _ONLY_CHILD = range(5)


def _block_kind(n: Node) -> int:
    """How `run_block` runs node `n` (fixed by the tree)."""
    t = n.type
    if t in ("statement_block", "script_block_body"):
        return _BLOCK
    if t == "script_block":
        return _SCRIPT_BLOCK
    if t == "statement_list":
        return _STATEMENTS
    return _STATEMENT
