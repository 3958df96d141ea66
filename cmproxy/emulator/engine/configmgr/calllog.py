"""How a command call appears in the call log (`state.record_call`): arguments masked (a
value may be a secret in clear), ConfigMgr objects labelled by their keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import Arg, CommandDef, ParamDef
from cmproxy.emulator.engine.language.values import SWITCH_PRESENT, PSObj, SecureValue


def mask_value(p: ParamDef | None, v: Any) -> Any:
    """A value as the log keeps it: secrets as `********`, objects as labels or text."""
    t = type(v)
    if p is None or not p.secret:  # the usual cases first, as below
        if v is None or t is str or t is int:
            return v
        if t is PSObj:
            return _psobj_label(v)
    if isinstance(v, SecureValue) or (p is not None and p.secret):
        return "********"
    if isinstance(v, PSObj):
        return _psobj_label(v)
    if isinstance(v, list | tuple):
        return [mask_value(None, x) for x in v]
    if isinstance(v, dict):
        return {str(k): mask_value(None, x) for k, x in v.items()}
    if v is SWITCH_PRESENT:
        return True
    if isinstance(v, conv.ScriptBlock):
        return "{" + str(v) + "}"
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return conv.to_str(v)


def _psobj_label(o: PSObj) -> str | dict[str, Any]:
    """An IResultObject by its type and key properties; any other object by its text."""
    if o.type_names and o.type_names[0].startswith("IResultObject#"):
        props = o.properties
        label: dict[str, Any] = {"type": o.type_names[0]}
        for k in _LABEL_KEYS:
            if k in props:
                label[k] = props[k]
        return label
    return conv.to_str(o)


#: The key properties an IResultObject is labelled by, in this order after its type.
_LABEL_KEYS = ("SiteCode", "NetworkOSPath", "RoleName", "UserName", "ComponentName")


def param_named(
    cmd: CommandDef, name: str, all_params: Sequence[ParamDef] | None = None
) -> ParamDef | None:
    """The parameter (common ones included) a bound value belongs to; `all_params`:
    `cmd.all_params()` when the caller has it already (a Binder's `params`)."""
    params = cmd.all_params() if all_params is None else all_params
    return next((p for p in params if p.name == name), None)


def raw_params(args: Sequence[Arg], cmd: CommandDef | None = None) -> dict[str, Any]:
    """Unbound arguments for the call log, masked: a value may be a secret in clear."""
    out: dict[str, Any] = {}
    pos = 0
    has_secret = cmd is not None and any(p.secret or p.type == "securestring" for p in cmd.params)
    for a in args:
        secret_name = has_secret or (a.name is not None and "password" in a.name.lower())
        v = "********" if secret_name else mask_value(None, a.value)
        if a.name is None:
            out[f"${pos}"] = v
            pos += 1
        else:
            out[a.name] = True if a.bare and a.value is None else v
    return out
