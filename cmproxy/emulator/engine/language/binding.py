"""Parameter binding the way PowerShell does it, driven by declarative definitions.

Order (as in PowerShell's ParameterBinderController): named arguments (exact name or alias,
then unambiguous prefix), positional arguments, the remaining arguments to a
ValueFromRemainingArguments parameter, parameter-set resolution, mandatory check, then, per
pipeline object, ValueFromPipeline binding. Error ids and texts are PowerShell's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.errors import (
    ARGUMENT_TRANSFORMATION_EXCEPTION,
    BINDING_EXCEPTION,
    BINDING_VALIDATION_EXCEPTION,
    NotSupportedByEmulator,
    PSError,
    binding_error,
)
from cmproxy.emulator.engine.language.values import SWITCH_PRESENT, PSObj, SecureValue

ALL_SETS = "__AllParameterSets"

#: .NET names of the parameter types the definitions use.
TYPE_NAMES = {
    "string": "System.String",
    "bool": "System.Boolean",
    "switch": "System.Management.Automation.SwitchParameter",
    "uint32": "System.UInt32",
    "int": "System.Int32",
    "long": "System.Int64",
    "securestring": "System.Security.SecureString",
    "object": "System.Object",
    "string[]": "System.String[]",
    "object[]": "System.Object[]",
    "scriptblock": "System.Management.Automation.ScriptBlock",
    "hashtable": "System.Collections.Hashtable",
}


@attrs.define
class ParamDef:
    name: str
    type: str = "string"
    #: Parameter sets the parameter belongs to; empty = all sets.
    sets: tuple[str, ...] = ()
    mandatory: bool = False
    position: int | None = None
    aliases: tuple[str, ...] = ()
    pipeline: bool = False
    validate_range: tuple[int, int] | None = None
    not_null_or_empty: bool = False
    #: PSTypeName constraint, e.g. "IResultObject#SMS_SCI_Reserved" or
    #: "IResultObject#SMS_SCI_SysResUse;RoleName=SMS Site System".
    ps_type_name: str | None = None
    #: Allowed values (ValidateSet / enum names), matched case-insensitively.
    choices: tuple[str, ...] = ()
    #: Enum type name for the error text when `choices` do not match.
    enum_type: str = ""
    secret: bool = False
    default: Any = None
    #: ValueFromRemainingArguments: takes what nothing else bound (never bound by position).
    remaining: bool = False
    #: ValueFromPipelineByPropertyName, declared by a script: not modelled (see `Binder.bind`).
    by_property_name: bool = False
    #: [AllowNull()]: a mandatory parameter that takes $null.
    allow_null: bool = False

    def in_set(self, s: str) -> bool:
        return not self.sets or s in self.sets


COMMON_PARAMS: tuple[ParamDef, ...] = (
    ParamDef("Verbose", "switch", aliases=("vb",)),
    ParamDef("Debug", "switch", aliases=("db",)),
    ParamDef("ErrorAction", "string", aliases=("ea",)),
    ParamDef("WarningAction", "string", aliases=("wa",)),
    ParamDef("InformationAction", "string", aliases=("infa",)),
    ParamDef("ErrorVariable", "string", aliases=("ev",)),
    ParamDef("WarningVariable", "string", aliases=("wv",)),
    ParamDef("InformationVariable", "string", aliases=("iv",)),
    ParamDef("OutVariable", "string", aliases=("ov",)),
    ParamDef("OutBuffer", "int", aliases=("ob",)),
    ParamDef("PipelineVariable", "string", aliases=("pv",)),
)
SHOULD_PROCESS_PARAMS: tuple[ParamDef, ...] = (
    ParamDef("WhatIf", "switch", aliases=("wi",)),
    ParamDef("Confirm", "switch", aliases=("cf",)),
)
ACTION_VALUES = ("SilentlyContinue", "Stop", "Continue", "Inquire", "Ignore", "Suspend")


@attrs.define
class CommandDef:
    """A command the engine knows: its parameters and what runs it."""

    name: str
    params: list[ParamDef]
    #: .NET class for FullyQualifiedErrorId suffixes.
    cls: str
    run: Callable[..., Any]
    default_set: str | None = None
    should_process: bool = False
    #: Called once with all pipeline input instead of once per object.
    collects_input: bool = False
    #: The module that exports it ("" = a built-in command, loaded with the runspace).
    module: str = ""
    writes: bool = False
    #: Functions defined by scripts: no common parameters unless [CmdletBinding()].
    advanced: bool = True

    def all_params(self) -> list[ParamDef]:
        extra: list[ParamDef] = []
        if self.advanced:
            extra += COMMON_PARAMS
            if self.should_process:
                extra += SHOULD_PROCESS_PARAMS
        return [*self.params, *extra]

    def sets(self) -> list[str]:
        found: list[str] = []
        for p in self.params:
            for s in p.sets:
                if s not in found:
                    found.append(s)
        return found or [ALL_SETS]


@attrs.define
class Arg:
    """One command element before binding: `-Name`, `-Name:value`, or a positional value."""

    name: str | None
    value: Any = None
    #: A `-Name` token with no `:value` (script syntax): it may take the next element.
    bare: bool = False
    #: Original spelling for error messages.
    text: str = ""


@attrs.define
class Bound:
    """Result of binding: values by canonical name, and the chosen set."""

    values: dict[str, Any]
    parameter_set: str
    explicit: set[str] = attrs.field(factory=set)
    #: `$args` of a simple (non-advanced) function or script block: what bound to nothing.
    remaining: list[Any] = attrs.field(factory=list)

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.values


@attrs.define
class _Binding:
    """What binding has gathered so far: values and definitions by canonical name, the
    positional values (with their argument index), and what a simple function takes into
    `$args` as (argument index, value)."""

    values: dict[str, Any] = attrs.field(factory=dict)
    defs: dict[str, ParamDef] = attrs.field(factory=dict)
    positional: list[Any] = attrs.field(factory=list)
    order: list[int] = attrs.field(factory=list)
    remaining: list[tuple[int, Any]] = attrs.field(factory=list)
    #: For an advanced command: the error each of `remaining` (by argument index) is if no
    #: ValueFromRemainingArguments parameter takes it.
    refused: dict[int, PSError] = attrs.field(factory=dict)


class Binder:
    """Binds one command's arguments; errors carry the command's class."""

    def __init__(self, cmd: CommandDef) -> None:
        self.cmd = cmd
        self.params = cmd.all_params()

    def _err(self, message: str, error_id: str, exc: str = BINDING_EXCEPTION) -> PSError:
        return binding_error(message, error_id, self.cmd.cls, self.cmd.name, exception=exc)

    # -- names ------------------------------------------------------------------------------
    def resolve_name(self, given: str) -> ParamDef:
        low = given.lower()
        for p in self.params:
            if p.name.lower() == low or (p.aliases and low in (a.lower() for a in p.aliases)):
                return p
        matches: list[ParamDef] = []
        for p in self.params:
            names = [p.name, *p.aliases]
            if any(n.lower().startswith(low) for n in names) and p not in matches:
                matches.append(p)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise self._err(
                f"A parameter cannot be found that matches parameter name '{given}'.",
                "NamedParameterNotFound",
            )
        listed = " ".join(f"-{m.name}" for m in matches)
        raise self._err(
            f"Parameter cannot be processed because the parameter name '{given}' is ambiguous. "
            f"Possible matches include: {listed}.",
            "AmbiguousParameter",
        )

    # -- conversion -------------------------------------------------------------------------
    def coerce(self, p: ParamDef, v: Any) -> Any:
        """Argument transformation + validation for one parameter."""
        t = p.type
        tn = TYPE_NAMES.get(t, "System.Object")
        try:
            v = self._convert(p, t, v)
        except conv.ConversionError as e:
            raise self._err(
                f"Cannot process argument transformation on parameter '{p.name}'. {e}",
                "ParameterArgumentTransformationError",
                ARGUMENT_TRANSFORMATION_EXCEPTION,
            ) from None
        self._validate(p, v, tn)
        return v

    def _convert(self, p: ParamDef, t: str, v: Any) -> Any:
        if v is SWITCH_PRESENT:
            v = True if t in ("switch", "bool") else None
        convert = _CONVERTERS.get(t)
        return v if convert is None else convert(t, v)

    def _validate(self, p: ParamDef, v: Any, tn: str) -> None:
        name = p.name
        if p.choices and v is not None:
            for c in p.choices:
                if conv.to_str(v).lower() == c.lower():
                    return
            raise self._err(
                f"Cannot process argument transformation on parameter '{name}'. Cannot convert "
                f'value "{conv.to_str(v)}" to type "{p.enum_type or tn}". Error: "Unable to '
                f"match the identifier name {conv.to_str(v)} to a valid enumerator name. Specify "
                f'one of the following enumerator names and try again:\n{", ".join(p.choices)}"',
                "ParameterArgumentTransformationError",
                ARGUMENT_TRANSFORMATION_EXCEPTION,
            )
        if p.not_null_or_empty and (v is None or v in ("", [])):
            raise self._err(
                f"Cannot validate argument on parameter '{name}'. The argument is null or empty. "
                "Provide an argument that is not null or empty, and then try the command again.",
                "ParameterArgumentValidationError",
                BINDING_VALIDATION_EXCEPTION,
            )
        if p.mandatory and v is None and not p.allow_null:
            raise self._err(
                f"Cannot bind argument to parameter '{name}' because it is null.",
                "ParameterArgumentValidationErrorNullNotAllowed",
                BINDING_VALIDATION_EXCEPTION,
            )
        if p.mandatory and v == "" and p.type == "string":
            raise self._err(
                f"Cannot bind argument to parameter '{name}' because it is an empty string.",
                "ParameterArgumentValidationErrorEmptyStringNotAllowed",
                BINDING_VALIDATION_EXCEPTION,
            )
        if p.validate_range is not None and v is not None:
            lo, hi = p.validate_range
            if v < lo:
                raise self._err(
                    f"Cannot validate argument on parameter '{name}'. The {v} argument is less "
                    f"than the minimum allowed range of {lo}. Supply an argument that is greater "
                    f"than or equal to {lo} and then try the command again.",
                    "ParameterArgumentValidationError",
                    BINDING_VALIDATION_EXCEPTION,
                )
            if v > hi:
                raise self._err(
                    f"Cannot validate argument on parameter '{name}'. The {v} argument is greater "
                    f"than the maximum allowed range of {hi}. Supply an argument that is less "
                    f"than or equal to {hi} and then try the command again.",
                    "ParameterArgumentValidationError",
                    BINDING_VALIDATION_EXCEPTION,
                )
        if p.ps_type_name and v is not None and not psobj_matches(v, p.ps_type_name):
            raise self._err(
                f"Cannot bind argument to parameter '{name}', because PSTypeNames of the "
                "argument do not match the PSTypeName required by the parameter: "
                f"{p.ps_type_name}.",
                "MismatchedPSTypeName",
            )

    # -- the algorithm ----------------------------------------------------------------------
    def bind(self, args: Sequence[Arg], expects_input: bool) -> Bound:
        """Named arguments, then positional ones over the candidate sets, then the set and
        the mandatory check (ParameterBinderController's order)."""
        if expects_input and any(p.by_property_name for p in self.cmd.params):
            # PowerShell would bind each pipeline object's property of that name; ignored, the
            # parameter would stay silently empty.
            raise NotSupportedByEmulator(
                "Binding pipeline input by property name (ValueFromPipelineByPropertyName)"
            )
        b = _Binding()
        self._bind_named(list(args), b)
        candidates = self._candidates(b.defs.values())
        if b.positional:
            self._bind_positional(b, candidates)
            candidates = self._candidates(b.defs.values())
        if b.refused:
            self._bind_remaining(b, candidates)
            candidates = self._candidates(b.defs.values())
        chosen = self._choose(candidates, b.values, expects_input)
        if not expects_input or not self._pipeline_params(chosen):
            self.check_mandatory(b.values, chosen, pipeline_pending=False)
        else:
            self.check_mandatory(b.values, chosen, pipeline_pending=True)
        extra = [v for _, v in sorted(b.remaining, key=lambda iv: iv[0])]
        return Bound(b.values, chosen, set(b.values), extra)

    def _bind_named(self, args: list[Arg], b: _Binding) -> None:
        """Bind every `-Name` argument; collect the positional ones in `b.positional`."""
        i = 0
        while i < len(args):
            a = args[i]
            if a.name is None:
                b.positional.append(a.value)
                b.order.append(i)
                i += 1
                continue
            try:
                p = self.resolve_name(a.name)
            except PSError as refusal:
                # Left unbound: a simple function takes unknown parameters into $args, a command
                # with a ValueFromRemainingArguments parameter into that one, as its text
                # (HandleRemainingArguments: argument.ParameterText); else it is refused, unless
                # an earlier argument is (VerifyArgumentsProcessed: the first one unbound).
                b.remaining.append((i, a.text or f"-{a.name}"))
                if not a.bare:
                    b.remaining.append((i, a.value))
                if self.cmd.advanced:
                    b.refused.setdefault(i, refusal)
                i += 1
                continue
            if p.name in b.values:
                raise self._err(
                    f"Cannot bind parameter because parameter '{p.name}' is specified more than "
                    "once. To provide multiple values to parameters that can accept multiple "
                    'values, use the array syntax. For example, "-parameter value1,value2,value3".',
                    "ParameterAlreadyBound",
                )
            v = a.value
            if a.bare:
                if p.type == "switch":
                    v = SWITCH_PRESENT
                elif i + 1 < len(args) and args[i + 1].name is None:
                    v = args[i + 1].value
                    i += 1
                else:
                    raise self._err(
                        f"Missing an argument for parameter '{p.name}'. Specify a parameter of "
                        f"type '{TYPE_NAMES.get(p.type, 'System.Object')}' and try again.",
                        "MissingArgument",
                    )
            b.values[p.name] = self.coerce(p, v)
            b.defs[p.name] = p
            i += 1

    def _bind_positional(self, b: _Binding, candidates: list[str]) -> None:
        """Positional values to the unbound positional parameters of the candidate sets, in
        position order (one parameter per position)."""
        slots: list[ParamDef] = []
        default = self.cmd.default_set
        for p in sorted(
            (
                p
                for p in self.cmd.params
                # Never a ValueFromRemainingArguments one, Position or not
                # (EvaluateUnboundPositionalParameters: "Skip ValueFromRemainingArguments").
                if p.position is not None and p.name not in b.values and not p.remaining
            ),
            # At one position, the default set's parameter first (when the default set is
            # still possible): ParameterBinderController picks it.
            key=lambda q: (q.position or 0, not (default in candidates and q.in_set(default))),
        ):
            if any(p.in_set(s) for s in candidates) and all(q.name != p.name for q in slots):
                if any(q.position == p.position for q in slots):
                    continue
                slots.append(p)
        for idx, v in enumerate(b.positional):
            if idx < len(slots):
                p = slots[idx]
                b.values[p.name] = self.coerce(p, v)
                b.defs[p.name] = p
                continue
            refusal = self._err(
                f"A positional parameter cannot be found that accepts argument '{conv.to_str(v)}'.",
                "PositionalParameterNotFound",
            )
            b.remaining.append((b.order[idx], v))
            if self.cmd.advanced:
                b.refused[b.order[idx]] = refusal

    def _bind_remaining(self, b: _Binding, candidates: list[str]) -> None:
        """What is still unbound, in command-line order, as one list to the unbound
        ValueFromRemainingArguments parameter of the candidate sets (HandleRemainingArguments);
        without one, the first of them is the error it was (VerifyArgumentsProcessed reports
        UnboundArguments[0])."""
        takers = [
            p
            for p in self.cmd.params
            if p.remaining and p.name not in b.values and any(p.in_set(s) for s in candidates)
        ]
        if not takers:
            raise b.refused[min(b.refused)]
        if len(takers) > 1:
            raise self._err(
                "Parameter set cannot be resolved using the specified named parameters.",
                "AmbiguousParameterSet",
            )
        p = takers[0]
        rest = [v for _, v in sorted(b.remaining, key=lambda iv: iv[0])]
        if len(rest) == 1 and p.type != "object" and isinstance(rest[0], list | tuple):
            # Windows PowerShell 5.1 binds the list itself first and unwraps its one element
            # only when that fails; PowerShell 6+ always unwraps it (PowerShell/PowerShell pull
            # request 2038). For an untyped parameter the list binds, so it stays; for a typed
            # one whether it fails is not known here: said, not guessed.
            raise NotSupportedByEmulator(
                f"One collection argument for the typed ValueFromRemainingArguments parameter "
                f"'{p.name}' (Windows PowerShell 5.1 may or may not unwrap it) [UNCONFIRMED]"
            )
        b.values[p.name] = self.coerce(p, rest)
        b.defs[p.name] = p
        b.remaining.clear()
        b.refused.clear()

    def _candidates(self, bound: Iterable[ParamDef]) -> list[str]:
        sets = self.cmd.sets()
        for p in bound:
            if p.sets:
                sets = [s for s in sets if s in p.sets]
        if not sets:
            raise self._err(
                "Parameter set cannot be resolved using the specified named parameters.",
                "AmbiguousParameterSet",
            )
        return sets

    def _choose(self, candidates: list[str], values: dict[str, Any], expects_input: bool) -> str:
        if len(candidates) == 1:
            return candidates[0]
        if self.cmd.default_set in candidates and not expects_input:
            d = self.cmd.default_set
            assert d is not None
            return d
        # Prefer sets whose mandatory parameters are all bound (or can come from the pipeline).
        ok = [
            s
            for s in candidates
            if all(
                p.name in values or (expects_input and p.pipeline)
                for p in self.cmd.params
                if p.mandatory and p.in_set(s)
            )
        ]
        if expects_input:
            with_pipe = [s for s in ok if self._pipeline_params(s)]
            if self.cmd.default_set in with_pipe:
                d = self.cmd.default_set
                assert d is not None
                return d
            if len(with_pipe) == 1:
                return with_pipe[0]
        if self.cmd.default_set in ok:
            d = self.cmd.default_set
            assert d is not None
            return d
        if len(ok) == 1:
            return ok[0]
        if self.cmd.default_set in candidates:
            d = self.cmd.default_set
            assert d is not None
            return d
        raise self._err(
            "Parameter set cannot be resolved using the specified named parameters.",
            "AmbiguousParameterSet",
        )

    def _pipeline_params(self, s: str) -> list[ParamDef]:
        return [p for p in self.cmd.params if p.pipeline and p.in_set(s)]

    def check_mandatory(self, values: dict[str, Any], s: str, pipeline_pending: bool) -> None:
        missing = [
            p.name
            for p in self.cmd.params
            if p.mandatory
            and p.in_set(s)
            and p.name not in values
            and not (pipeline_pending and p.pipeline)
        ]
        if missing:
            raise self._err(
                "Cannot process command because of one or more missing mandatory parameters: "
                f"{' '.join(missing)}.",
                "MissingMandatoryParameter",
            )

    def bind_pipeline(self, bound: Bound, obj: Any) -> Bound:
        """Bind one pipeline object ByValue; the set may narrow to one that takes it."""
        sets = [bound.parameter_set]
        if bound.parameter_set not in self.cmd.sets():
            sets = self.cmd.sets()
        tried = [
            p
            for p in self.cmd.params
            if p.pipeline and p.name not in bound.explicit and any(p.in_set(s) for s in sets)
        ]
        for p in tried:
            try:
                v = self.coerce(p, obj)
            except PSError:
                continue
            values = dict(bound.values)
            values[p.name] = v
            chosen = bound.parameter_set if p.in_set(bound.parameter_set) else p.sets[0]
            self.check_mandatory(values, chosen, pipeline_pending=False)
            return Bound(values, chosen, bound.explicit, bound.remaining)
        raise PSError(
            binding_error(
                "The input object cannot be bound to any parameters for the command either "
                "because the command does not take pipeline input or the input and its "
                "properties do not match any of the parameters that take pipeline input.",
                "InputObjectNotBound",
                self.cmd.cls,
                self.cmd.name,
            ).record
        )


def psobj_matches(v: Any, ps_type_name: str) -> bool:
    if not isinstance(v, PSObj):
        return False
    base, _, cond = ps_type_name.partition(";")
    if base not in v.type_names:
        return False
    if cond:
        key, _, want = cond.partition("=")
        return conv.to_str(v.properties.get(key)).lower() == want.lower()
    return True


# Argument conversion to a parameter's declared type (Binder._convert), one function per type
# name: each takes the type name and the value, and raises conv.ConversionError as the binder
# reports it (ParameterArgumentTransformationError).


def _to_switch(t: str, v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if v is None:
        return False
    raise conv.ConversionError(v, TYPE_NAMES[t])


def _to_bool(t: str, v: Any) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, list) and len(v) == 1 and isinstance(v[0], bool | int):
        return bool(v[0])
    shown = conv.type_name(v) if v is not None else ""
    raise conv.ConversionError(
        v,
        TYPE_NAMES[t],
        message=f'Cannot convert value "{shown}" to type "System.Boolean". Boolean '
        "parameters accept only Boolean values and numbers, such as $True, $False, 1 "
        "or 0.",
    )


def _to_integer(t: str, v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, list | PSObj | dict):
        raise conv.ConversionError(v, TYPE_NAMES[t])
    return conv.to_int(v, TYPE_NAMES[t])


def _to_string(t: str, v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, list):
        if len(v) == 1:
            return conv.to_str(v[0])
        raise conv.ConversionError(v, "System.String")
    if isinstance(v, SecureValue):
        return str(v)
    return conv.to_str(v)


def _to_strings(t: str, v: Any) -> Any:
    if v is None:
        return None
    return [conv.to_str(x) for x in conv.enumerate_value(v)]


def _to_secure(t: str, v: Any) -> Any:
    if v is None or isinstance(v, SecureValue):
        return v
    raise conv.ConversionError(SecureValue(conv.to_str(v)), TYPE_NAMES[t])


def _to_scriptblock(t: str, v: Any) -> Any:
    if v is None or isinstance(v, conv.ScriptBlock):
        return v
    raise conv.ConversionError(v, TYPE_NAMES[t])


def _to_hashtable(t: str, v: Any) -> Any:
    if v is None or isinstance(v, dict):
        return v
    raise conv.ConversionError(v, TYPE_NAMES[t])


def _to_array(t: str, v: Any) -> Any:
    return None if v is None else conv.enumerate_value(v)


#: A type name not here (object, or one the binder does not convert) takes the value as it is.
_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "switch": _to_switch,
    "bool": _to_bool,
    "uint32": _to_integer,
    "int": _to_integer,
    "long": _to_integer,
    "string": _to_string,
    "string[]": _to_strings,
    "securestring": _to_secure,
    "scriptblock": _to_scriptblock,
    "hashtable": _to_hashtable,
    "object[]": _to_array,
}
