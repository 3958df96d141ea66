"""What a step is and what it brings back: pure values, shared by the core and transports.

A `Step` is a script (usually a template, by name) with parameters bound to its `param()`
block; a `Result` is what it brought back as plain data, its errors as `ErrorInfo` (mapped to
cmproxy's error tree by `error_from_info`). `RemoteShell` and `PipelineRef` name what a killed
run may leave on an endpoint. No IO here: `cmproxy.transports` sends steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from cmproxy._exceptions import ItemNotFoundError, ParameterBindingError, PowerShellError
from cmproxy.model import Secret
from cmproxy.templates import load_template

__all__ = [
    "ErrorInfo",
    "PipelineRef",
    "PipelineWatcher",
    "RemoteShell",
    "Result",
    "Script",
    "Step",
    "Value",
    "category_name",
    "error_from_info",
    "plain",
]

#: Parameter values a transport can bind.
Value = str | int | bool | float | Secret | None | Sequence[str]


@attrs.frozen
class Script:
    """PowerShell text with a name for logs and errors (the template name).

    A template's script holds only its name: its text is read when a transport sends it
    (`text`), at the edge, so building a `Step` does no IO. Ad-hoc text is given as `source`.
    """

    name: str
    source: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def template(cls, name: str) -> Script:
        return cls(name)

    @property
    def text(self) -> str:
        """The PowerShell text: `source`, or the template's file (read once, then cached)."""
        return self.source if self.source is not None else load_template(self.name)


@attrs.frozen
class Step:
    """A script and the parameters bound to its `param()` block, in order."""

    script: Script
    parameters: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, template: str | Script, **parameters: Any) -> Step:
        """A step for template `template` (a name or a Script); None values are left out.
        Pure: the template's text is read only when a transport sends it."""
        script = Script.template(template) if isinstance(template, str) else template
        return cls(script, tuple((k, v) for k, v in parameters.items() if v is not None))

    @property
    def has_secret(self) -> bool:
        return any(isinstance(v, Secret) for _, v in self.parameters)

    def describe(self) -> str:
        """The step for logs: parameter names and values, secrets masked."""
        shown = ", ".join(
            f"{k}={'<SecureString>' if isinstance(v, Secret) else repr(v)}"
            for k, v in self.parameters
        )
        return f"{self.script.name}({shown})"


@attrs.frozen
class ErrorInfo:
    """What cmproxy keeps of a PowerShell ErrorRecord."""

    message: str
    fully_qualified_error_id: str = ""
    category: str = ""
    target: str = ""
    command: str = ""
    exception_type: str = ""

    @property
    def error_id(self) -> str:
        return self.fully_qualified_error_id.split(",", 1)[0]


@attrs.frozen
class Result:
    """What one step brought back: output objects as plain data, and the other streams."""

    output: tuple[Any, ...] = ()
    errors: tuple[ErrorInfo, ...] = ()
    warnings: tuple[str, ...] = ()
    verbose: tuple[str, ...] = ()
    information: tuple[str, ...] = ()

    def records(self) -> list[dict[str, Any]]:
        """The output objects that are property bags (projected template output)."""
        return [o for o in self.output if isinstance(o, dict)]


_BINDING_IDS = frozenset(
    {
        "ParameterArgumentValidationError",
        "ParameterArgumentTransformationError",
        "NamedParameterNotFound",
        "AmbiguousParameterSet",
        "MissingMandatoryParameter",
        "ParameterBindingFailed",
        "PositionalParameterNotFound",
        "InputObjectNotBound",
        "CannotConvertArgumentNoMessage",
        "ParameterArgumentValidationErrorNullNotAllowed",
        "ParameterArgumentValidationErrorEmptyStringNotAllowed",
    }
)
_NOT_FOUND_IDS = frozenset({"ItemNotFound", "ObjectNotFound", "PathNotFound", "DriveNotFound"})


#: System.Management.Automation.ErrorCategory, by value.
_CATEGORIES = [
    "NotSpecified",
    "OpenError",
    "CloseError",
    "DeviceError",
    "DeadlockDetected",
    "InvalidArgument",
    "InvalidData",
    "InvalidOperation",
    "InvalidResult",
    "InvalidType",
    "MetadataError",
    "NotImplemented",
    "NotInstalled",
    "ObjectNotFound",
    "OperationStopped",
    "OperationTimeout",
    "SyntaxError",
    "ParserError",
    "PermissionDenied",
    "ResourceBusy",
    "ResourceExists",
    "ResourceUnavailable",
    "ReadError",
    "WriteError",
    "FromStdErr",
    "SecurityError",
    "ProtocolError",
    "ConnectionError",
    "AuthenticationError",
    "LimitsExceeded",
    "QuotaExceeded",
    "NotEnabled",
]


def category_name(value: Any) -> str:
    """An ErrorCategory name from its number or name (PSRP sends the number)."""
    if value is None or value == "":
        return ""
    if isinstance(value, int) and 0 <= value < len(_CATEGORIES):
        return _CATEGORIES[value]
    text = str(value)
    if text.isdigit() and int(text) < len(_CATEGORIES):
        return _CATEGORIES[int(text)]
    return text


def error_from_info(info: ErrorInfo) -> PowerShellError:
    """The cmproxy exception for a remote error record (FullyQualifiedErrorId → class)."""
    kwargs: dict[str, Any] = {
        "fully_qualified_error_id": info.fully_qualified_error_id,
        "category": info.category,
        "target": info.target,
        "command": info.command,
    }
    if info.error_id in _BINDING_IDS or info.exception_type.endswith("ParameterBindingException"):
        return ParameterBindingError(info.message, **kwargs)
    if info.error_id in _NOT_FOUND_IDS or info.category == "ObjectNotFound":
        return ItemNotFoundError(info.message, **kwargs)
    return PowerShellError(info.message, **kwargs)


def plain(value: Any, _depth: int = 0) -> Any:
    """JSON-like plain data from a deserialised value (dicts, lists, primitives)."""
    if _depth > 8:
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, _depth + 1) for v in value]
    return str(value)


@attrs.frozen
class PipelineRef:
    """A pipeline about to be sent: the shell (runspace pool) and the command carrying it."""

    resource_uri: str
    shell_id: str
    command_id: str


PipelineWatcher = Callable[[PipelineRef], None]


@attrs.frozen
class RemoteShell:
    """One of the caller's shells, as the endpoint lists it (MS-WSMV 3.1.4.8.2)."""

    shell_id: str
    resource_uri: str
    owner: str = ""
    state: str = ""
