"""Data cmdlets: ConvertTo-Json / ConvertFrom-Json, ConvertTo-SecureString, New-Object
(where a new .NET type New-Object can create goes)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.language import conv, dotnet_threading
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.dotnet import CONSTRUCTORS
from cmproxy.emulator.engine.language.errors import NotSupportedByEmulator, PSError
from cmproxy.emulator.engine.language.values import SecureValue
from cmproxy.emulator.engine.stdlib.table import command

if TYPE_CHECKING:
    from cmproxy.emulator.engine.language.commands import Context


@command(
    "ConvertTo-Json",
    [
        ParamDef("InputObject", "object", position=0, pipeline=True),
        ParamDef("Depth", "int", validate_range=(1, 100)),
        ParamDef("Compress", "switch"),
    ],
    collects_input=True,
)
def _to_json(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    v = a.get("InputObject") if items is None else conv.collapse(list(items))
    return conv.to_json(v, a.get("Depth") or 2, bool(a.get("Compress")))


@command(
    "ConvertFrom-Json",
    [ParamDef("InputObject", "string", mandatory=True, position=0, pipeline=True)],
    collects_input=True,
)
def _from_json(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    """Windows PowerShell 5.1 writes a JSON array as ONE object (PowerShell 6+ enumerates it:
    PowerShell/PowerShell#3424)."""
    text = "\n".join(conv.to_str(x) for x in items) if items is not None else a["InputObject"]
    try:
        if not text.strip():
            return []
        value = conv.from_json(text)
        return [conv.WrappedArray(value) if isinstance(value, list) else value]
    except ValueError as e:
        raise PSError(
            ctx.error(
                f"Invalid JSON primitive: {e}.",
                "System.ArgumentException",
                category="NotSpecified",
                exception="System.ArgumentException",
            )
        ) from None


@command(
    "ConvertTo-SecureString",
    [
        ParamDef("String", "string", mandatory=True, position=0, pipeline=True, secret=True),
        ParamDef("AsPlainText", "switch"),
        ParamDef("Force", "switch"),
    ],
)
def _to_secure(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    s = a["String"]
    if not a.get("AsPlainText"):
        raise NotSupportedByEmulator("ConvertTo-SecureString without -AsPlainText")
    if not a.get("Force"):
        raise PSError(
            ctx.error(
                "The system cannot protect plain text input. To suppress this warning and "
                "convert the plain text to a SecureString, reissue the command specifying the "
                "Force parameter. For more information ,type: get-help ConvertTo-SecureString.",
                "ImportSecureString_InvalidArgument",
                category="InvalidArgument",
                exception="System.ArgumentException",
            )
        )
    return SecureValue(s)


@command(
    "New-Object",
    [
        ParamDef("TypeName", "string", mandatory=True, position=0),
        ParamDef("ArgumentList", "object[]", position=1),
        ParamDef("Property", "hashtable"),
    ],
)
def _new_object(ctx: Context, a: dict[str, Any], items: Any) -> Any:
    type_name = conv.to_str(a["TypeName"])
    if dotnet_threading.constructs(type_name):  # System.Threading.Mutex and its security types
        return dotnet_threading.construct(ctx.rs, type_name, a.get("ArgumentList") or [])
    make = CONSTRUCTORS.get(type_name.lower())
    if make is None:
        raise NotSupportedByEmulator(f"New-Object {a['TypeName']}")
    return make([], a.get("Property"))
