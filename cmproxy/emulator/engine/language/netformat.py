""".NET composite formatting (`String.Format`), which PowerShell's `-f` operator calls, as .NET
Framework 4.x (Windows PowerShell 5.1) does it with the en-US culture.

Format items are `{index[,alignment][:formatString]}`; `{{` and `}}` are literal braces. Numbers
take the standard format strings N, F, D, X, E and G (no precision), and custom ones built of
`0`, `#`, `,` and `.`; other valid format strings (C, P, R, sections, `%`, ...) are
NotSupportedByEmulator rather than guessed. A value that is not a number ignores its format
string (it is not IFormattable), as .NET does. .NET Framework rounds a midpoint away from zero
when formatting.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.errors import NotSupportedByEmulator


class FormatError(Exception):
    """A FormatException of String.Format (PowerShell reports it as the FormatError error)."""


_BAD_INPUT = "Input string was not in a correct format."
_BAD_INDEX = (
    "Index (zero based) must be greater than or equal to zero and less than the size of the "
    "argument list."
)
_ITEM = re.compile(r"\{(\d+)(?:\s*,\s*(-?\d+))?(?::([^{}]*))?\}")


def composite(fmt: str, args: list[Any]) -> str:
    """`String.Format(fmt, args)`."""
    out: list[str] = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "{":
            if fmt.startswith("{{", i):
                out.append("{")
                i += 2
                continue
            m = _ITEM.match(fmt, i)
            if m is None:
                raise FormatError(_BAD_INPUT)
            index = int(m.group(1))
            if index >= len(args):
                raise FormatError(_BAD_INDEX)
            text = format_value(args[index], m.group(3))
            width = int(m.group(2) or 0)
            out.append(text.rjust(width) if width >= 0 else text.ljust(-width))
            i = m.end()
            continue
        if c == "}":
            if fmt.startswith("}}", i):
                out.append("}")
                i += 2
                continue
            raise FormatError(_BAD_INPUT)
        out.append(c)
        i += 1
    return "".join(out)


def format_value(v: Any, spec: str | None) -> str:
    """One argument with its format string (None: no format string)."""
    if not spec or isinstance(v, bool) or not isinstance(v, int | float):
        return conv.to_str(v)
    m = re.fullmatch(r"([A-Za-z])(\d{0,2})", spec)
    if m is None:
        return _custom(v, spec)
    kind, digits = m.group(1), m.group(2)
    precision = int(digits) if digits else None
    k = kind.upper()
    if k == "D":
        if not isinstance(v, int):
            raise FormatError("Format specifier was invalid.")
        body = str(abs(v)).zfill(precision or 0)
        return ("-" if v < 0 else "") + body
    if k == "X":
        if not isinstance(v, int):
            raise FormatError("Format specifier was invalid.")
        bits = 32 if -(2**31) <= v < 2**31 else 64
        text = format(v & (2**bits - 1), "X" if kind == "X" else "x")
        return text.zfill(precision or 0)
    if k == "N":
        return _fixed(v, 2 if precision is None else precision, group=True)
    if k == "F":
        return _fixed(v, 2 if precision is None else precision, group=False)
    if k == "E":
        return _exponent(v, 6 if precision is None else precision, kind)
    if k == "G" and precision is None:
        return conv.to_str(v)
    if k in ("C", "G", "P", "R"):  # valid .NET specifiers the emulator does not write
        raise NotSupportedByEmulator(f"The format string '{spec}' of -f")
    raise FormatError("Format specifier was invalid.")


def _decimal(v: int | float) -> Decimal:
    """The value as .NET Framework formats a Double: its 15 significant digits."""
    return Decimal(v) if isinstance(v, int) else Decimal(format(v, ".15g"))


def _fixed(v: int | float, decimals: int, group: bool) -> str:
    d = _decimal(v).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    text = format(abs(d), f",.{decimals}f" if group else f".{decimals}f")
    return ("-" if d < 0 and d != 0 else "") + text


def _exponent(v: int | float, decimals: int, kind: str) -> str:
    d = _decimal(v)
    if d == 0:
        return f"{0:.{decimals}f}{kind}+000"
    exp = d.copy_abs().adjusted()
    mantissa = (d.copy_abs().scaleb(-exp)).quantize(
        Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP
    )
    if mantissa >= 10:
        exp += 1
        mantissa = (mantissa / 10).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    sign = "-" if d < 0 else ""
    return f"{sign}{mantissa:.{decimals}f}{kind}{'-' if exp < 0 else '+'}{abs(exp):03d}"


def _custom(v: int | float, spec: str) -> str:
    """A custom numeric format made of `0`, `#`, `,` and one `.` (other characters are
    copied around the number)."""
    m = re.fullmatch(r"([^0#,.%;\\'\"eE]*)([0#,]*)(?:\.([0#]*))?([^0#,.%;\\'\"eE]*)", spec)
    if m is None or not (m.group(2) or m.group(3)):
        # Sections, percent, exponents, quoted literals: valid .NET, not written here.
        raise NotSupportedByEmulator(f"The custom format string '{spec}' of -f")
    prefix, int_part, frac_part, suffix = m.group(1), m.group(2), m.group(3) or "", m.group(4)
    group = "," in int_part.strip(",") if int_part else False
    min_int = int_part.replace(",", "").replace("#", "").count("0")
    min_frac = len(frac_part.rstrip("#")) if frac_part else 0
    max_frac = len(frac_part)
    d = _decimal(v).quantize(Decimal(1).scaleb(-max_frac), rounding=ROUND_HALF_UP)
    text = format(abs(d), f".{max_frac}f")
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0").ljust(min_frac, "0") if max_frac else ""
    whole = whole.lstrip("0").rjust(min_int, "0")
    if group and whole:
        whole = f"{int(whole):,}".rjust(min_int, "0")
    number = whole + ("." + frac if frac else "")
    sign = "-" if d < 0 and number.strip("0.") else ""
    return prefix + sign + number + suffix
