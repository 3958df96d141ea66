"""Pipeline cmdlets: Where-Object, ForEach-Object, Select-Object, Sort-Object, Out-String,
Out-Null."""

from __future__ import annotations

from functools import cmp_to_key
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.conv import ScriptBlock
from cmproxy.emulator.engine.language.errors import NotSupportedByEmulator
from cmproxy.emulator.engine.language.members import get_member
from cmproxy.emulator.engine.language.operators import compare_op
from cmproxy.emulator.engine.language.scopes import LoopFlow
from cmproxy.emulator.engine.language.values import ErrorRecord, PSObj
from cmproxy.emulator.engine.stdlib.table import PIPELINE_INPUT, command

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.commands import Context
    from cmproxy.emulator.engine.language.interp import Evaluator

_WHERE_OPS = (
    "EQ",
    "NE",
    "GT",
    "GE",
    "LT",
    "LE",
    "Like",
    "NotLike",
    "Match",
    "NotMatch",
    "Contains",
    "NotContains",
    "In",
    "NotIn",
    "CEQ",
    "CNE",
)


@command(
    "Where-Object",
    [
        ParamDef("FilterScript", "object", position=0),
        ParamDef("Value", "object", position=1),
        *(ParamDef(o, "switch") for o in _WHERE_OPS),
        PIPELINE_INPUT,
    ],
)
def _where(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    f = a.get("FilterScript")
    ev = ctx.evaluator()
    if isinstance(f, ScriptBlock):
        try:
            return [obj] if conv.truthy(ev.invoke_block(f, obj)) else []
        except LoopFlow as flow:
            flow.value = []  # what the filter wrote was its verdict, never output
            raise

    if f is None:
        raise NotSupportedByEmulator("Where-Object without a filter")
    val = get_member(obj, conv.to_str(f))
    ops = [o for o in _WHERE_OPS if a.get(o)]
    if not ops:
        return [obj] if conv.truthy(val) else []
    return [obj] if compare_op("-" + ops[0].lower(), val, a.get("Value"), ev) is True else []


@command(
    "ForEach-Object",
    [ParamDef("Process", "object", position=0, aliases=("MemberName",)), PIPELINE_INPUT],
)
def _foreach(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    proc = a.get("Process")
    ev = ctx.evaluator()
    if isinstance(proc, list) and len(proc) == 1:
        proc = proc[0]
    if isinstance(proc, ScriptBlock):
        return ev.invoke_block(proc, obj)
    if isinstance(proc, str):
        return conv.enumerate_value(get_member(obj, proc))
    raise NotSupportedByEmulator("ForEach-Object without a script block or member name")


@command(
    "Select-Object",
    [
        ParamDef("Property", "object[]", position=0),
        ParamDef("ExpandProperty", "string"),
        ParamDef("First", "int"),
        ParamDef("Last", "int"),
        ParamDef("Skip", "int"),
        ParamDef("Unique", "switch"),
        PIPELINE_INPUT,
    ],
    collects_input=True,
)
def _select(ctx: Context, a: dict[str, Any], items: Any) -> Any:

    objs = list(items or [])
    if a.get("InputObject") is not None and items is None:
        objs = [a["InputObject"]]
    if a.get("Skip"):
        objs = objs[a["Skip"] :]
    if a.get("First") is not None:
        objs = objs[: a["First"]]
    if a.get("Last") is not None:
        objs = objs[-a["Last"] :] if a["Last"] else []
    props = a.get("Property")
    ev = ctx.evaluator()
    out: list[Any] = []
    for item in objs:
        o = item
        if props:
            o = _selected(ev, o, props)
        if a.get("ExpandProperty"):
            v = get_member(o, a["ExpandProperty"])
            if v is None:
                ctx.write_error(
                    ctx.error(
                        f'Property "{a["ExpandProperty"]}" cannot be found.',
                        "ExpandPropertyNotFound",
                        category="InvalidArgument",
                        exception="System.Management.Automation.PSArgumentException",
                    )
                )
                continue
            out += conv.enumerate_value(v)
        else:
            out.append(o)
    if a.get("Unique"):
        seen: list[Any] = []
        for o in out:
            if not any(conv.equals(o, s) for s in seen):
                seen.append(o)
        out = seen
    return out


def _selected(ev: Evaluator, o: Any, props: list[Any]) -> Any:
    """`o` as Select-Object -Property makes it: a new object with the named properties,
    those matching a wildcard, and calculated ones (@{Name=...; Expression=...})."""
    d: dict[str, Any] = {}
    for p in props:
        if isinstance(p, dict):
            name, value = _calculated_property(ev, o, p)
            d[name] = value
        elif conv.has_wildcard(conv.to_str(p)):
            for k, v in conv.iter_props(o):
                if conv.like(k, p):
                    d[k] = v
        else:
            d[conv.to_str(p)] = get_member(o, conv.to_str(p))
    return conv.custom(d)


def _calculated_property(ev: Evaluator, o: Any, p: dict[Any, Any]) -> tuple[str, Any]:
    """(name, value) of a calculated property: Name/N/Label/L, and the Expression/E script
    block's output (collapsed) or the member it names."""
    name = next(
        (conv.to_str(v) for k, v in p.items() if str(k).lower() in ("name", "n", "label", "l")),
        "",
    )
    expr = next((v for k, v in p.items() if str(k).lower() in ("expression", "e")), None)
    if isinstance(expr, ScriptBlock):
        return name, conv.collapse(ev.invoke_block(expr, o))
    return name, get_member(o, conv.to_str(expr))


@command(
    "Sort-Object",
    [
        ParamDef("Property", "object[]", position=0),
        ParamDef("Descending", "switch"),
        PIPELINE_INPUT,
    ],
    collects_input=True,
)
def _sort(ctx: Context, a: dict[str, Any], items: Any) -> Any:

    objs = list(items or [])
    props = a.get("Property") or []

    def key(o: Any) -> list[Any]:
        return [get_member(o, conv.to_str(p)) for p in props] if props else [o]

    def cmp(x: Any, y: Any) -> int:
        for vx, vy in zip(key(x), key(y), strict=True):
            try:
                c = conv.compare(vx, vy)
            except conv.ConversionError:
                c = conv.compare(conv.to_str(vx), conv.to_str(vy))
            if c:
                return c
        return 0

    objs.sort(key=cmp_to_key(cmp), reverse=bool(a.get("Descending")))
    return objs


def format_table(objs: list[Any]) -> list[str]:
    """Out-String-ish rendering: scalars as text; objects as list (Format-List) blocks."""
    lines: list[str] = []
    for o in objs:
        if isinstance(o, PSObj) and o.properties and (o.string is None or o.live):
            width = max(len(k) for k in o.properties)
            lines.append("")
            for k, v in o.properties.items():
                if isinstance(v, list):
                    shown = "{" + ", ".join(conv.to_str(x) for x in v) + "}"
                else:
                    shown = conv.to_str(v)
                lines.append(f"{k.ljust(width)} : {shown}")
            lines.append("")
        elif isinstance(o, dict):
            width = max([4, *(len(str(k)) for k in o)])
            lines.append("")
            lines.append(f"{'Name'.ljust(width)} Value")
            lines.append(f"{'----'.ljust(width)} -----")
            lines += [f"{str(k).ljust(width)} {conv.to_str(v)}" for k, v in o.items()]
            lines.append("")
        elif isinstance(o, ErrorRecord):
            lines.append(o.message)
        else:
            lines.append(conv.to_str(o))
    return lines


@command(
    "Out-String",
    [
        ParamDef("InputObject", "object", pipeline=True),
        ParamDef("Stream", "switch"),
        ParamDef("Width", "int"),
    ],
    collects_input=True,
)
def _out_string(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    objs = list(items) if items is not None else conv.enumerate_value(a.get("InputObject"))
    lines = format_table(objs)
    if a.get("Stream"):
        return lines
    return "\n".join(lines) + "\n" if lines else ""


@command("Out-Null", [PIPELINE_INPUT], collects_input=True)
def _out_null(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    return None
