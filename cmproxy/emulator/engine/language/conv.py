"""PowerShell value semantics on Python values.

Values in the engine: None ($null), bool, int, float, str, list (object[]), dict (hashtable,
insertion ordered, keys matched case-insensitively), PSObj, SecureValue, ScriptBlock.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any, cast

from cmproxy.emulator.engine.language.values import ErrorRecord, PSObj, SecureValue

PSCUSTOM = ["System.Management.Automation.PSCustomObject", "System.Object"]


class ScriptBlock:
    """A `{ ... }` literal or `[scriptblock]::Create(text)`: the body node (None when empty),
    its `param()` block if any, and the source they came from."""

    def __init__(
        self, node: Any, source: bytes, params: Any = None, text: str | None = None
    ) -> None:
        self.node = node
        self.source = source
        self.params = params
        self.text = text

    def __str__(self) -> str:
        if self.text is not None:
            return self.text
        if self.node is None:
            return ""
        text = self.source[self.node.start_byte : self.node.end_byte].decode()
        return text[1:-1] if text.startswith("{") else text


class WrappedArray(list[Any]):
    """An array a cmdlet wrote as ONE object (Windows PowerShell 5.1's ConvertFrom-Json): it
    travels wrapped in a PSObject, so 5.1's ConvertTo-Json writes it with its ETS Count
    property, `{"value": [...], "Count": n}` (PowerShell/PowerShell#3153). Otherwise an
    ordinary array."""


def custom(props: dict[str, Any] | None = None) -> PSObj:
    return PSObj(list(PSCUSTOM), dict(props or {}))


def enumerate_value(v: Any) -> list[Any]:
    """How PowerShell unrolls a value into a pipeline."""
    if isinstance(v, list | tuple):
        return list(v)
    return [v]


def collapse(items: list[Any]) -> Any:
    """A pipeline's output as a value: nothing → $null, one → itself, more → array."""
    if not items:
        return None
    if len(items) == 1:
        return items[0]
    return items


def truthy(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str):
        return v != ""
    if isinstance(v, list | tuple):
        if not v:
            return False
        if len(v) == 1:
            return truthy(v[0])
        return True
    return True


def to_str(v: Any) -> str:
    """PowerShell's string conversion ($OFS = ' ' for arrays)."""
    if type(v) is str:  # the usual case, first: str(v) is v itself
        return v
    if v is None:
        return ""
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, float):
        return double_str(v)
    if isinstance(v, list | tuple):
        return " ".join(to_str(x) for x in v)
    if isinstance(v, dict):
        return "System.Collections.Hashtable"
    if isinstance(v, PSObj):
        return v.to_string()
    if isinstance(v, ErrorRecord):
        return v.message
    return str(v)


def double_str(v: float) -> str:
    """Double.ToString() of .NET Framework (Windows PowerShell 5.1): 15 significant digits,
    an exponent as `E+XX` / `E-XX`, `Infinity` / `NaN` for the special values."""
    if math.isnan(v):
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "Infinity" if v > 0 else "-Infinity"
    text = format(v, ".15g")
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{mantissa}E{exp[0]}{exp[1:].zfill(2)}"
    return text


VERSION = ["System.Version", "System.Object"]


def version(text: str) -> PSObj:
    """A `[version]` (System.Version): two to four components; an unset one is -1."""
    parts = text.strip().split(".")
    if not 2 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        raise ConversionError(
            text, "System.Version", "Version string portion was too short or too long."
        )
    nums = [int(p) for p in parts] + [-1] * (4 - len(parts))
    props = {
        "Major": nums[0],
        "Minor": nums[1],
        "Build": nums[2],
        "Revision": nums[3],
        "MajorRevision": nums[3] >> 16 if nums[3] >= 0 else -1,
        "MinorRevision": nums[3] & 0xFFFF if nums[3] >= 0 else -1,
    }
    return PSObj(list(VERSION), props, string=".".join(parts))


def is_version(v: Any) -> bool:
    return isinstance(v, PSObj) and v.type_names[:1] == VERSION[:1]


def to_version(v: Any) -> PSObj:
    if is_version(v):
        return cast(PSObj, v)
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return version(to_str(v))
    raise ConversionError(v, "System.Version")


def _version_key(v: PSObj) -> tuple[int, ...]:
    return tuple(int(v.properties[k]) for k in ("Major", "Minor", "Build", "Revision"))


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "System.Boolean"
    if isinstance(v, int):
        return "System.Int32" if -(2**31) <= v < 2**31 else "System.Int64"
    if isinstance(v, float):
        return "System.Double"
    if isinstance(v, str):
        return "System.String"
    if isinstance(v, list | tuple):
        return "System.Object[]"
    if isinstance(v, dict):
        return "System.Collections.Hashtable"
    if isinstance(v, SecureValue):
        return "System.Security.SecureString"
    if isinstance(v, ScriptBlock):
        return "System.Management.Automation.ScriptBlock"
    if isinstance(v, PSObj):
        return v.type_names[0] if v.type_names else "System.Object"
    return "System.Object"


class ConversionError(Exception):
    """Value cannot be converted; `inner` is the .NET inner message if any."""

    def __init__(self, value: Any, target: str, inner: str = "", message: str = "") -> None:
        self.value, self.target, self.inner = value, target, inner
        super().__init__(message or conversion_message(value, target, inner))


def conversion_message(value: Any, target: str, inner: str = "") -> str:
    # An array shows as .NET's ToString() of it: "System.Object[]".
    shown = (
        "********"
        if isinstance(value, SecureValue)
        else (type_name(value) if isinstance(value, list | tuple) else to_str(value))
    )
    if inner:
        return f'Cannot convert value "{shown}" to type "{target}". Error: "{inner}"'
    return f'Cannot convert the "{shown}" value of type "{type_name(value)}" to type "{target}".'


_INT_RANGES = {
    "System.Int32": (-(2**31), 2**31 - 1, "Int32"),
    "System.UInt32": (0, 2**32 - 1, "UInt32"),
    "System.Int64": (-(2**63), 2**63 - 1, "Int64"),
}


def to_int(v: Any, target: str = "System.Int32") -> int:
    lo, hi, short = _INT_RANGES[target]
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    n: int
    if v is None:
        n = 0
    elif isinstance(v, bool):
        n = int(v)
    elif isinstance(v, int):
        n = v
    elif isinstance(v, float):
        n = round(v)
    elif isinstance(v, str):
        s = v.strip()
        try:
            n = int(s, 16) if s.lower().startswith("0x") else int(s)
        except ValueError:
            try:
                n = round(float(s)) if s and s.lower() not in ("nan", "inf", "-inf") else 0
                if not s:
                    raise ValueError from None
            except ValueError:
                raise ConversionError(
                    v, target, "Input string was not in a correct format."
                ) from None
    else:
        raise ConversionError(v, target)
    if not lo <= n <= hi:
        raise ConversionError(v, target, f"Value was either too large or too small for a {short}.")
    return n


def to_double(v: Any) -> float:
    if isinstance(v, bool | int | float):
        return float(v)
    if v is None:
        return 0.0
    if isinstance(v, str):
        try:
            return float(v.strip() or "0")
        except ValueError:
            msg = "Input string was not in a correct format."
            raise ConversionError(v, "System.Double", msg) from None
    raise ConversionError(v, "System.Double")


def to_number(v: Any) -> int | float:
    """Operand conversion for arithmetic/comparison with a numeric left side."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int | float):
        return v
    if isinstance(v, str):
        s = v.strip()
        try:
            return int(s, 16) if s.lower().startswith("0x") else int(s)
        except ValueError:
            return to_double(s)
    if v is None:
        return 0
    raise ConversionError(v, "System.Int32")


# ---- comparison ----------------------------------------------------------------------------


def wildcard_regex(pattern: str) -> re.Pattern[str]:
    """PowerShell wildcards: * ? [abc]; ` escapes."""
    out = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "`" and i + 1 < len(pattern):
            out += re.escape(pattern[i + 1])
            i += 2
            continue
        if c == "*":
            out += ".*"
        elif c == "?":
            out += "."
        elif c == "[":
            j = pattern.find("]", i)
            if j == -1:
                out += re.escape(c)
            else:
                out += "[" + pattern[i + 1 : j].replace("\\", "\\\\") + "]"
                i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z", re.IGNORECASE | re.DOTALL)


def like(value: Any, pattern: Any) -> bool:
    return wildcard_regex(to_str(pattern)).match(to_str(value)) is not None


def has_wildcard(s: str) -> bool:
    return any(c in s for c in "*?[")


def equals(a: Any, b: Any, case_sensitive: bool = False) -> bool:
    """`a -eq b` for a scalar left side (right side converted to left's type)."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool):
        return a == truthy(b)
    if isinstance(a, int | float):
        try:
            return a == to_number(b)
        except (ConversionError, TypeError):
            return False
    if isinstance(a, str):
        sb = to_str(b)
        return a == sb if case_sensitive else a.lower() == sb.lower()
    if is_version(a):
        try:
            return _version_key(a) == _version_key(to_version(b))
        except ConversionError:
            return False
    if isinstance(a, SecureValue):
        return a is b
    return a is b or (isinstance(b, str) and to_str(a).lower() == b.lower())


def _culture_key(s: str) -> list[tuple[int, str]]:
    """The order of a culture-aware string comparison (the one PowerShell's -lt / -gt and
    Sort-Object use): symbols sort before digits, digits before letters, letters
    alphabetically whatever their case."""
    return [(2, c.lower()) if c.isalpha() else (1 if c.isdigit() else 0, c) for c in s]


def compare_strings(x: str, y: str, case_sensitive: bool = False) -> int:
    """String.Compare with the current culture: case-insensitive by default; case-sensitive, a
    lower-case letter sorts before its upper case ('macOS' -clt 'MacOS')."""
    kx, ky = _culture_key(x), _culture_key(y)
    if kx != ky:
        return (kx > ky) - (kx < ky)
    if not case_sensitive:
        return 0
    sx, sy = x.swapcase(), y.swapcase()
    return (sx > sy) - (sx < sy)


def compare(a: Any, b: Any, case_sensitive: bool = False) -> int:
    """-lt/-gt ordering with the left side's type."""
    if isinstance(a, str):
        return compare_strings(a, to_str(b), case_sensitive)
    if is_version(a):
        x, y = _version_key(a), _version_key(to_version(b))
        return (x > y) - (x < y)
    if a is None:
        a = 0 if isinstance(b, int | float) else ""
        return compare(a, b)
    na, nb = to_number(a), to_number(b)
    return (na > nb) - (na < nb)


# ---- JSON ----------------------------------------------------------------------------------

_JS_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "'": "\\u0027", "&": "\\u0026"}
_JS_SHORT = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


#: The characters `_json_str` escapes: the short escapes, the JavaScript ones, controls.
_JS_SPECIAL = re.compile(r"[\x00-\x1f\"\\<>'&]")


def _json_escape(m: re.Match[str]) -> str:
    c = m.group()
    short = _JS_SHORT.get(c)
    if short is not None:
        return short
    if c in _JS_ESCAPES:
        return _JS_ESCAPES[c]
    return f"\\u{ord(c):04x}"


def _json_str(s: str) -> str:
    """A string as JavaScriptSerializer (Windows PowerShell 5.1's ConvertTo-Json) writes it:
    `<`, `>`, `'`, `&` and control characters as lower-case \\uXXXX escapes."""
    return '"' + _JS_SPECIAL.sub(_json_escape, s) + '"'


def _json_number(v: int | float) -> str:
    """A number as JavaScriptSerializer writes it (a double with the round-trip "R" format)."""
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return double_str(v)
    text = format(v, ".15g")
    if float(text) != v:
        text = format(v, ".17g")
    if "e" in text:
        mantissa, exp = text.split("e")
        return f"{mantissa}E{exp[0]}{exp[1:].zfill(2)}"
    return text


def _to_json_tree(v: Any, depth: int, max_depth: int) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, SecureValue):
        return {"Length": len(v.reveal())}
    if isinstance(v, ScriptBlock):
        return str(v)
    if isinstance(v, list | tuple):
        if depth > max_depth:
            return to_str(v)
        items = [_to_json_tree(x, depth + 1, max_depth) for x in v]
        return {"value": items, "Count": len(v)} if isinstance(v, WrappedArray) else items
    if isinstance(v, dict):
        if depth > max_depth:
            return to_str(v)
        return {str(k): _to_json_tree(x, depth + 1, max_depth) for k, x in v.items()}
    if isinstance(v, PSObj):
        if depth > max_depth:
            return v.to_string()
        return {k: _to_json_tree(x, depth + 1, max_depth) for k, x in v.properties.items()}
    if isinstance(v, ErrorRecord):
        return v.message
    return to_str(v)


_CRLF = "\r\n"
_INDENT = "    "


def _emit(tree: Any, pad: str, compress: bool) -> str:
    """`tree` as Windows PowerShell 5.1's ConvertTo-Json writes it. Uncompressed: CRLF line
    ends, four spaces a level, two spaces after a colon, and a nested object or array indented
    past its key (its brackets under the column after `"key":  `)."""
    if isinstance(tree, dict):
        if compress:
            return (
                "{"
                + ",".join(f"{_json_str(k)}:{_emit(x, '', True)}" for k, x in tree.items())
                + "}"
            )
        inner = pad + _INDENT
        entries = []
        for k, x in tree.items():
            head = f"{_json_str(k)}:  "
            entries.append(inner + head + _emit(x, inner + " " * len(head), False))
        return "{" + _CRLF + ("," + _CRLF).join(entries) + _CRLF + pad + "}"
    if isinstance(tree, list):
        if compress:
            return "[" + ",".join(_emit(x, "", True) for x in tree) + "]"
        inner = pad + _INDENT
        items = [inner + _emit(x, inner, False) for x in tree]
        return "[" + _CRLF + ("," + _CRLF).join(items) + _CRLF + pad + "]"
    if isinstance(tree, str):
        return _json_str(tree)
    if tree is None:
        return "null"
    if isinstance(tree, bool):
        return "true" if tree else "false"
    return _json_number(tree)


def to_json(v: Any, depth: int = 2, compress: bool = False) -> str:
    """ConvertTo-Json as Windows PowerShell 5.1 writes it (see `_emit`)."""
    return _emit(_to_json_tree(v, 0, depth), "", compress)


def from_json(text: str) -> Any:
    def conv(x: Any) -> Any:
        if isinstance(x, dict):
            return custom({k: conv(v) for k, v in x.items()})
        if isinstance(x, list):
            return [conv(i) for i in x]
        return x

    return conv(json.loads(text))


def iter_props(v: Any) -> Iterable[tuple[str, Any]]:
    if isinstance(v, PSObj):
        return v.properties.items()
    if isinstance(v, dict):
        return ((str(k), x) for k, x in v.items())
    return ()
