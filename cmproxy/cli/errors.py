"""Errors as the user sees them: one line on stderr (or a JSON record), an exit code, no
password, no traceback unless --debug."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import typer
from rich.text import Text

from cmproxy import (
    AuthenticationError,
    CMProxyError,
    DesiredStateError,
    RuleViolation,
    ValidationError,
)
from cmproxy.cli.render import emit, make_console

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "describe_error",
    "handled",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_MASK = "********"


class _Secrets(Protocol):
    @property
    def debug(self) -> bool: ...

    def secrets(self) -> list[str]: ...


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, _MASK)
    return text


def _error_record(error: BaseException) -> dict[str, Any]:
    record: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, ValidationError):
        record.update(rule=error.rule, field=error.field, reason=error.reason)
    if isinstance(error, DesiredStateError):
        record.update(source=error.source, line=error.line, column=error.column)
    return record


class UsageError(Exception):
    """The command line cannot be acted on (exit 2)."""


def describe_error(error: BaseException) -> tuple[str, int]:
    """The message to print and the exit code."""
    if isinstance(error, UsageError):
        return str(error), EXIT_USAGE
    if isinstance(error, DesiredStateError):
        return f"invalid desired state: {error}. Nothing was written.", EXIT_USAGE
    if isinstance(error, RuleViolation):
        return (
            f"refused by rule {error.rule}: {error.field} = {error.value!r}: {error.reason} "
            "Nothing was written.",
            EXIT_USAGE,
        )
    if isinstance(error, ValidationError):
        rule = f" (rule {error.rule})" if error.rule else ""
        return (
            f"invalid {error.field}{rule}: {error.reason} (got {error.value!r}). "
            "Nothing was written.",
            EXIT_USAGE,
        )
    if isinstance(error, AuthenticationError):
        return f"authentication failed: {error}", EXIT_FAILED
    if isinstance(error, CMProxyError):
        return f"{type(error).__name__}: {error}", EXIT_FAILED
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error}", EXIT_FAILED
    return f"unexpected {type(error).__name__}: {error} (run with --debug for details)", EXIT_FAILED


@contextmanager
def handled(common: _Secrets, *, json_output: bool = False, output: str = "json") -> Iterator[None]:
    """Print errors without tracebacks (unless --debug) and never with a password."""
    try:
        yield
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        make_console(stderr=True).print("interrupted", style="bold red")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as error:  # the one place errors meet the user
        secrets = common.secrets()
        message, code = describe_error(error)
        if common.debug:
            sys.stderr.write(_scrub(traceback.format_exc(), secrets))
        if json_output:
            record = {
                k: _scrub(str(v), secrets) if isinstance(v, str) else v
                for k, v in _error_record(error).items()
            }
            emit(output, {"ok": False, "error": record})
        err = make_console(stderr=True)
        # one line however narrow the terminal: scripts grep it, people copy it
        err.print(
            Text("error: ", style="bold red") + Text(_scrub(message, secrets)), soft_wrap=True
        )
        raise typer.Exit(code) from None
