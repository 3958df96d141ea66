"""Static members of .NET types (`[type]::Member(...)`)."""

from __future__ import annotations

import ntpath
from typing import TYPE_CHECKING, Any

import tree_sitter

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.conv import ScriptBlock
from cmproxy.emulator.engine.language.errors import PSError, record
from cmproxy.emulator.engine.language.parser import parse, parse_error

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.interp import Evaluator

Node = tree_sitter.Node


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
