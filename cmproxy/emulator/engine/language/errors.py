"""PowerShell errors as the engine raises them, with PowerShell's own ids and texts.

`PSError` carries an `ErrorRecord`. PowerShell distinguishes statement-terminating errors
(binding errors, a cmdlet's ThrowTerminatingError: the script goes on with the next statement)
from script-terminating ones (`throw`, `-ErrorAction Stop`): `script` marks the latter.
`NotSupportedByEmulator` is deliberately not a `PSError`: `try/catch` in a script cannot hide
it, so a template that strays outside the emulated subset fails its test.
"""

from __future__ import annotations

from typing import Any

from cmproxy.emulator.engine.language.values import ErrorRecord

BINDING_EXCEPTION = "System.Management.Automation.ParameterBindingException"
BINDING_VALIDATION_EXCEPTION = "System.Management.Automation.ParameterBindingValidationException"
ARGUMENT_TRANSFORMATION_EXCEPTION = (
    "System.Management.Automation.ParameterBindingArgumentTransformationException"
)


class PSError(Exception):
    """A terminating PowerShell error (catchable by try/catch)."""

    def __init__(self, record: ErrorRecord, *, script: bool = False) -> None:
        super().__init__(record.message)
        self.record = record
        self.script = script
        #: The output written before the error: PowerShell streams output, so what a script
        #: wrote before a terminating error has already reached the caller (about_Throw).
        self.value: list[Any] = []


class NotSupportedByEmulator(Exception):  # noqa: N818 - named after its error id
    """A construct outside the emulated subset; never caught by the script."""

    def __init__(self, what: str) -> None:
        self.record = ErrorRecord(
            message=f"{what} is not supported by the emulator",
            fully_qualified_error_id="NotSupportedByEmulator",
            category="NotImplemented",
            exception_type="System.NotSupportedException",
        )
        super().__init__(self.record.message)


class StopRequested(Exception):  # noqa: N818 - control flow
    """The pipeline was stopped (ctrl_c)."""


def fqid(error_id: str, cls: str) -> str:
    return f"{error_id},{cls}" if cls else error_id


def record(  # noqa: PLR0913 - one keyword per ErrorRecord field it fills
    message: str,
    error_id: str,
    cls: str = "",
    *,
    category: str = "NotSpecified",
    exception: str = "System.Management.Automation.RuntimeException",
    command: str = "",
    target: Any = None,
) -> ErrorRecord:
    return ErrorRecord(
        message=message,
        fully_qualified_error_id=fqid(error_id, cls),
        category=category,
        exception_type=exception,
        target_object=target,
        target_name="" if target is None else str(target),
        command_name=command,
    )


def binding_error(
    message: str, error_id: str, cls: str, command: str, *, exception: str = BINDING_EXCEPTION
) -> PSError:
    return PSError(
        record(
            message,
            error_id,
            cls,
            category="InvalidArgument"
            if exception != BINDING_VALIDATION_EXCEPTION
            else "InvalidData",
            exception=exception,
            command=command,
        )
    )


def command_not_found(name: str) -> PSError:
    return PSError(
        record(
            f"The term '{name}' is not recognized as the name of a cmdlet, function, script "
            "file, or operable program. Check the spelling of the name, or if a path was "
            "included, verify that the path is correct and try again.",
            "CommandNotFoundException",
            category="ObjectNotFound",
            exception="System.Management.Automation.CommandNotFoundException",
            target=name,
        )
    )


def runtime_error(message: str, error_id: str, *, category: str = "InvalidOperation") -> PSError:
    return PSError(record(message, error_id, category=category))


def call_depth_overflow() -> ErrorRecord:
    """ScriptCallDepthException's record: the script ran out of stack (deep recursion or
    nesting). Windows PowerShell has no hard-coded maximum depth (the exception's CallDepth
    is "Always 0"); the emulator's stack ends where its interpreter's does."""
    return record(
        "The script failed due to call depth overflow.",
        "CallDepthOverflow",
        category="InvalidOperation",
        exception="System.Management.Automation.ScriptCallDepthException",
    )


def out_of_memory() -> PSError:
    """A .NET OutOfMemoryException reaching the script, as PowerShell reports it."""
    return PSError(
        record(
            "Exception of type 'System.OutOfMemoryException' was thrown.",
            "System.OutOfMemoryException",
            category="OperationStopped",
            exception="System.OutOfMemoryException",
        )
    )
