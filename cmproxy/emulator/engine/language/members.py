"""Members of values: properties, indexing and instance methods, as PowerShell's adapters
show them (about_Properties, about_Methods)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import tree_sitter

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import Arg
from cmproxy.emulator.engine.language.conv import ScriptBlock
from cmproxy.emulator.engine.language.dotnet_threading import VOID, NetObject
from cmproxy.emulator.engine.language.errors import PSError, record
from cmproxy.emulator.engine.language.scopes import NOTHING
from cmproxy.emulator.engine.language.values import ErrorRecord, PSObj, SecureValue

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.evaluation import EvaluatorCore
    from cmproxy.emulator.engine.language.interp import Evaluator

Node = tree_sitter.Node


def dict_key(d: dict[Any, Any], key: Any) -> Any:
    """The key of hashtable `d` that `key` names (hashtable keys are case-insensitive): `key`
    itself, else the first string key equal to it ignoring case, else None."""
    if key in d:
        return key
    if isinstance(key, str):
        low = key.lower()
        if len(d) > _SCAN_IN_C:
            keys = list(d)
            if set(map(type, keys)) == {str}:  # plain strings only: the same scan, in C
                lowered = list(map(str.lower, keys))
                return keys[lowered.index(low)] if low in lowered else None
        for k in d:
            if isinstance(k, str) and k.lower() == low:
                return k
    return None


#: Hashtables larger than this are searched case-insensitively by list operations in C.
_SCAN_IN_C = 8


def get_member(target: Any, name: str) -> Any:
    low = name.lower()
    if type(target) is PSObj:  # the usual case first: the same as below
        return _psobj_member(target, name, low)
    if target is None or target is NOTHING:
        # PowerShell 3+ gives every object, $null included, Count and Length (0 for $null, 1
        # for one object) when it has no such property of its own (Adapter.Tests.ps1, "Count
        # and length property works for singletons"; about_Properties).
        return 0 if low in ("count", "length") else None
    if isinstance(target, ErrorRecord):
        return _error_member(target, low)
    if isinstance(target, list | tuple):
        return _list_member(target, name, low)
    if isinstance(target, dict):
        return _dict_member(target, name, low)
    if isinstance(target, PSObj):
        return _psobj_member(target, name, low)
    if isinstance(target, str):
        if low == "length":
            return len(target)
        return 1 if low == "count" else None
    if isinstance(target, SecureValue):
        return len(target.reveal()) if low == "length" else None
    if low in ("count", "length"):
        return 1
    return None


def _list_member(target: list[Any] | tuple[Any, ...], name: str, low: str) -> Any:
    """An array's Count/Length, else member enumeration: the member of each element."""
    if low in ("count", "length"):
        return len(target)
    vals: list[Any] = []
    for x in target:
        v = get_member(x, name)
        if v is not None:
            vals.extend(v if isinstance(v, list) else [v])
    return conv.collapse(vals)


def _dict_member(target: dict[Any, Any], name: str, low: str) -> Any:
    """A hashtable's key (case-insensitively), else its Count, Keys or Values."""
    k = dict_key(target, name)
    if k is not None:
        return target[k]
    if low == "count":
        return len(target)
    if low == "keys":
        return list(target.keys())
    if low == "values":
        return list(target.values())
    return None


def _psobj_member(target: PSObj, name: str, low: str) -> Any:
    """A PSObject's property (as written, else case-insensitively), else its intrinsic
    members (psobject, pstypenames, Count and Length)."""
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


def set_member(target: Any, name: str, value: Any, node: Node, ev: EvaluatorCore) -> None:
    if isinstance(target, dict):
        k = dict_key(target, name)
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
        k = dict_key(target, index)
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
    if target is None or target is NOTHING:
        # PSInvokeMemberBinder: a null target is a runtime error, whatever the method.
        raise PSError(
            record(
                "You cannot call a method on a null-valued expression.",
                "InvokeMethodOnNull",
                category="InvalidOperation",
                exception="System.Management.Automation.RuntimeException",
            )
        )
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
        out = _dict_method(target, low, args)
        if out is not _NO_SUCH_METHOD:
            return out
    raise ev.unsupported(node, f"The method {conv.type_name(target)}.{name}()")


#: What _dict_method returns for a method the emulator does not have.
_NO_SUCH_METHOD: Any = object()


def _dict_method(target: dict[Any, Any], low: str, args: list[Any]) -> Any:
    """A hashtable's ContainsKey/Contains, Add or Remove, or _NO_SUCH_METHOD."""
    if low in ("containskey", "contains"):
        return dict_key(target, args[0]) is not None
    if low == "add":
        if dict_key(target, args[0]) is not None:
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
        k = dict_key(target, args[0])
        if k is not None:
            del target[k]
        return NOTHING
    return _NO_SUCH_METHOD
