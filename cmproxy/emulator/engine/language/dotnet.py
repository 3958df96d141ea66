""".NET types as scripts reach them: static methods (`[type]::Method(...)`) and properties
(`[type]::Property`), the types
New-Object can create, what `-is` knows (`is_type`) and the types a variable can be constrained
to (`CONSTRAINABLE`).

This is where a .NET type the emulated subset needs is registered: `@static_method_of("type",
name="Method")` for `[type]::Method(args)` (and `[type]::new(args)`, a static call named `new`),
`@static_property_of("type", name="Property")` for `[type]::Property`,
`@constructor_of("type")` for `New-Object type`, a check in `is_type`. Type names are lower
case; static calls and `-is` match them without a leading `system.`, New-Object as written.
Instance methods of values live in `members.call_method`; conversions to a type (`[type]$x`,
casts) in `interp.Evaluator.convert_to`.
"""

from __future__ import annotations

import ntpath
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import tree_sitter

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.conv import ScriptBlock
from cmproxy.emulator.engine.language.errors import PSError, record
from cmproxy.emulator.engine.language.parser import parse, parse_error
from cmproxy.emulator.engine.language.values import ErrorRecord, PSObj, SecureValue

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.evaluation import EvaluatorCore

Node = tree_sitter.Node


#: A static method: its arguments → its value.
StaticMethod = Callable[[list[Any]], Any]
#: A static property: the evaluator reading it (its session's engine knows the machine) → its
#: value.
StaticProperty = Callable[["EvaluatorCore"], Any]
#: A constructor for New-Object: (its -ArgumentList, its -Property hashtable) → the object.
Constructor = Callable[[list[Any], dict[str, Any] | None], Any]
_F = TypeVar("_F", bound=Callable[..., Any])

#: (type, method), both lower case, the type without `system.` → the method.
STATIC_METHODS: dict[tuple[str, str], StaticMethod] = {}
#: (type, property), both lower case, the type without `system.` → its getter.
STATIC_PROPERTIES: dict[tuple[str, str], StaticProperty] = {}
#: Type name as New-Object is given it, lower case → its constructor.
CONSTRUCTORS: dict[str, Constructor] = {}


def _member_of(
    table: dict[tuple[str, str], Any], types: tuple[str, ...], name: str
) -> Callable[[_F], _F]:
    """Register the decorated function in `table` as member `name` of each of `types`."""

    def register(fn: _F) -> _F:
        for t in types:
            table[t.lower(), name.lower()] = fn
        return fn

    return register


def static_method_of(*types: str, name: str) -> Callable[[_F], _F]:
    """Register the decorated function as `[type]::name(...)` for each of `types`."""
    return _member_of(STATIC_METHODS, types, name)


def static_property_of(*types: str, name: str) -> Callable[[_F], _F]:
    """Register the decorated function as the getter of `[type]::name` for each of `types`."""
    return _member_of(STATIC_PROPERTIES, types, name)


def constructor_of(*types: str) -> Callable[[_F], _F]:
    """Register the decorated function as what `New-Object <type>` creates."""

    def register(fn: _F) -> _F:
        for t in types:
            CONSTRUCTORS[t.lower()] = fn
        return fn

    return register


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


def is_type(v: Any, t: str) -> bool | None:
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


def _type_key(ev: EvaluatorCore, tl: Node) -> str:
    """A type literal's name as the static member tables key it: lower case, no `system.`."""
    return ev.text(tl).strip("[]").lower().removeprefix("system.")


def static_method(ev: EvaluatorCore, tl: Node, name: str, args: list[Any]) -> Any:
    t = _type_key(ev, tl)
    method = STATIC_METHODS.get((t, name.lower()))
    if method is None:
        raise ev.unsupported(tl, f"The static method [{t}]::{name}()")
    return method(args)


def static_property(ev: EvaluatorCore, tl: Node, name: str) -> Any:
    t = _type_key(ev, tl)
    getter = STATIC_PROPERTIES.get((t, name.lower()))
    if getter is None:
        raise ev.unsupported(tl, f"The static member [{t}]::{name}")
    return getter(ev)


@static_property_of("environment", name="ProcessorCount")
def _environment_processor_count(ev: EvaluatorCore) -> int:
    """The machine's logical processors (System.Environment.ProcessorCount: "the number of
    processors available to the current process"), as the emulated host has them."""
    return ev.rs.engine.settings.logical_processors


@static_method_of("string", name="IsNullOrEmpty")
def _string_is_null_or_empty(args: list[Any]) -> bool:
    return args[0] is None or conv.to_str(args[0]) == ""


@static_method_of("string", name="IsNullOrWhiteSpace")
def _string_is_null_or_white_space(args: list[Any]) -> bool:
    return args[0] is None or conv.to_str(args[0]).strip() == ""


@static_method_of("string", name="Join")
def _string_join(args: list[Any]) -> str:
    items = args[1] if len(args) == 2 and isinstance(args[1], list) else args[1:]
    return conv.to_str(args[0]).join(conv.to_str(x) for x in items)


@static_method_of("scriptblock", "management.automation.scriptblock", name="Create")
def _scriptblock_create(args: list[Any]) -> ScriptBlock:
    return create_scriptblock(conv.to_str(args[0]) if args else "")


@static_method_of("io.path", name="Combine")
def _path_combine(args: list[Any]) -> str:
    return ntpath.join(*(conv.to_str(a) for a in args))


@constructor_of("psobject", "pscustomobject", "system.management.automation.psobject")
def _new_psobject(arguments: list[Any], properties: dict[str, Any] | None) -> Any:
    return conv.custom(properties or {})


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
