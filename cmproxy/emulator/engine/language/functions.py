"""Functions and param blocks: definitions, calls, parameter attributes and types
(about_Functions, about_Functions_Advanced_Parameters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tree_sitter

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import CommandDef, ParamDef
from cmproxy.emulator.engine.language.evaluation import UNBOUND
from cmproxy.emulator.engine.language.expressions import ExpressionRules
from cmproxy.emulator.engine.language.parser import (
    recoverable,
)
from cmproxy.emulator.engine.language.scopes import (
    Return,
    Scope,
)

Node = tree_sitter.Node


class FunctionRules(ExpressionRules):
    """How functions are defined and called."""

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
        for err in (c for c in n.children if c.type == "ERROR" and recoverable(c)):
            pb = next(c for c in err.children if c.type == "param_block")
        params, advanced, default_set = self.param_defs(pb)
        ev = self

        def run(ctx: Any, args: dict[str, Any], items: Any) -> list[Any]:
            return ev.call_function(params, args, stmts, {"args": list(ctx.bound.remaining)})

        self.rs.functions[name.lower()] = CommandDef(
            name, params, "", run, default_set=default_set, advanced=advanced
        )

    def call_function(
        self,
        params: list[ParamDef],
        args: dict[str, Any],
        body: Node | None,
        automatic: Mapping[str, list[Any]],
        *,
        dot: bool = False,
    ) -> list[Any]:
        """Run a function or script block body: in a new child scope of the current one, or
        (`dot`) in the current scope itself, with the `automatic` variables set first ($args,
        and $input for a script block that takes no pipeline input), then its parameters.
        break/continue leave it for an enclosing loop of the caller (about_Break); `return`
        ends it."""
        outer = self.rs.scope
        if not dot:
            self.rs.scope = Scope(outer)
        try:
            for var, value in automatic.items():
                self.rs.scope.set(var, value)
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
                v = UNBOUND.get(p.type)
            self.declare(p.name, v, p.type)

    def param_defs(self, pb: Node | None) -> tuple[list[ParamDef], bool, str | None]:
        """ParamDefs from a `param(...)` block; (defs, is_advanced, default set)."""
        if pb is None:
            return [], False, None
        advanced, default_set = self._cmdlet_binding(pb)
        plist = next((c for c in pb.named_children if c.type == "parameter_list"), None)
        defs: list[ParamDef] = []
        if plist is None:
            return defs, advanced, default_set
        for sp in (c for c in plist.named_children if c.type == "script_parameter"):
            p, declared = self._script_parameter(sp)
            advanced = advanced or declared
            defs.append(p)
        if all(p.position is None for p in defs):
            # PowerShell numbers parameters in declaration order when none has a Position.
            for i, p in enumerate(q for q in defs if q.type != "switch"):
                p.position = i
        return defs, advanced, default_set

    def _cmdlet_binding(self, pb: Node) -> tuple[bool, str | None]:
        """(is_advanced, default set) from the [CmdletBinding()] attributes of a param block."""
        advanced = False
        default_set: str | None = None
        for al in (c for c in pb.named_children if c.type == "attribute_list"):
            for a in al.named_children:
                name, kwargs, _ = self.attribute(a)
                if name.lower() == "cmdletbinding":
                    advanced = True
                    ds = kwargs.get("defaultparametersetname")
                    default_set = conv.to_str(ds) if ds is not None else None
        return advanced, default_set

    def _script_parameter(self, sp: Node) -> tuple[ParamDef, bool]:
        """One `param()` entry as a ParamDef, and whether it has a [Parameter()] attribute
        (which makes the function advanced)."""
        var = next(c for c in sp.named_children if c.type == "variable")
        p = ParamDef(self.var_name(var), "object")
        dflt = next((c for c in sp.named_children if c.type == "script_parameter_default"), None)
        if dflt is not None:
            p.default = self.named(dflt)[0]  # a Node, evaluated at bind time
        declared = False
        plist_attrs = next((c for c in sp.named_children if c.type == "attribute_list"), None)
        for a in plist_attrs.named_children if plist_attrs is not None else []:
            if a.named_children and a.named_children[0].type == "type_literal":
                p.type = self.param_type(a.named_children[0])
                continue
            declared = self._parameter_attribute(p, a) or declared
        return p, declared

    def _parameter_attribute(self, p: ParamDef, a: Node) -> bool:
        """Apply one attribute of a parameter to `p`; True when it is [Parameter()]."""
        name, kwargs, pos = self.attribute(a)
        low = name.lower()
        if low == "parameter":
            p.mandatory = conv.truthy(kwargs.get("mandatory", False))
            if "position" in kwargs:
                p.position = int(kwargs["position"])
            p.pipeline = conv.truthy(kwargs.get("valuefrompipeline", False))
            p.remaining = conv.truthy(kwargs.get("valuefromremainingarguments", False))
            p.by_property_name = conv.truthy(kwargs.get("valuefrompipelinebypropertyname", False))
            if "parametersetname" in kwargs:
                p.sets = (*p.sets, conv.to_str(kwargs["parametersetname"]))
            return True
        if low == "validaterange":
            p.validate_range = (int(pos[0]), int(pos[1]))
        elif low == "validatenotnullorempty":
            p.not_null_or_empty = True
        elif low == "validateset":
            p.choices = tuple(conv.to_str(x) for x in pos)
        elif low == "alias":
            p.aliases = tuple(conv.to_str(x) for x in pos)
        elif low == "pstypename":
            p.ps_type_name = conv.to_str(pos[0])
        elif low not in ("allownull", "allowemptystring", "allowemptycollection"):
            raise self.unsupported(a, f"The parameter attribute [{name}]")
        return False

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
