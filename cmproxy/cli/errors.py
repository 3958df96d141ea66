"""Errors as the user sees them: one line on stderr (or a JSON record), an exit code, no
password, no traceback unless --debug."""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import typer
from rich.text import Text

from cmproxy import (
    AuthenticationError,
    CMProxyError,
    DesiredStateError,
    RuleViolation,
    TLSError,
    ValidationError,
)
from cmproxy.cli.render import emit, make_console
from cmproxy.connection_options import CONNECTION_OPTIONS, ConnectionOption

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "RefusedError",
    "UsageError",
    "describe_error",
    "handled",
    "in_cli_terms",
    "option_name",
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


class RefusedError(Exception):
    """Nothing was written: the site is not as a saved plan expects (exit 1)."""


def option_name(field: str) -> str:
    """The CLI option (and its variable) that sets an SDK connection field, as errors name it:
    `ca_cert` → `--ca-cert (CMPROXY_CA_CERT)`; other fields unchanged."""
    for option in CONNECTION_OPTIONS:
        if field in (option.field, option.env):
            return f"{option.flag} ({option.env})"
    return field


#: A quoted Python repr whose only escapes are doubled backslashes ('CONTOSO\\cmadmin').
_REPR = re.compile(r"'((?:[^'\\]|\\\\)*\\\\(?:[^'\\]|\\\\)*)'")


def as_typed(text: str) -> str:
    """`text` with Python reprs of values undone: `'CONTOSO\\cmadmin'` → `'CONTOSO\\cmadmin'`."""
    return _REPR.sub(lambda m: "'" + m.group(1).replace("\\\\", "\\") + "'", text)


def _shown(value: Any) -> str:
    """A value as the user typed it (quoted when text, no escapes)."""
    if value is None:
        return "not set"
    return f"'{value}'" if isinstance(value, str) else str(value)


def _flag_value(option: ConnectionOption, value: str) -> str:
    if option.type == "bool" and value in {"True", "False"}:
        return option.flag if value == "True" else "--no-" + option.flag.removeprefix("--")
    return f"{option.flag} {value.strip(chr(39))}"


def in_cli_terms(text: str) -> str:
    """An SDK message in the words of the command line: `ca_cert=X` → `--ca-cert X`,
    `cert_validation=False` → `--no-cert-validation`, `site_code (CMPROXY_SITE_CODE)` →
    `--site-code (CMPROXY_SITE_CODE)`, reprs undone."""
    for option in CONNECTION_OPTIONS:
        name = re.escape(option.field)
        text = re.sub(
            rf"(?<![\w-]){name}=('[^']*'|[^\s,;)]+)",
            lambda m, o=option: _flag_value(o, m.group(1)),  # type: ignore[misc]
            text,
        )
        text = re.sub(rf"(?<![\w-]){name}(?=\s*(?:\(|/)\s*{option.env})", option.flag, text)
        if "_" in option.field:  # a bare SDK name ("needs certificate_pem and …")
            text = re.sub(rf"(?<![\w.$-]){name}(?![\w-])", option.flag, text)
    return as_typed(text)


def _plain_http(error: BaseException) -> bool:
    """An https request answered in plain HTTP: the TLS layer's "wrong version number"."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if "WRONG_VERSION_NUMBER" in str(current) or "wrong version number" in str(current):
            return True
        stack += [current.__cause__, current.__context__]
    return False


def describe_error(error: BaseException) -> tuple[str, int]:
    """The message to print and the exit code."""
    if isinstance(error, UsageError):
        return str(error), EXIT_USAGE
    if isinstance(error, RefusedError):
        return str(error), EXIT_FAILED
    if isinstance(error, DesiredStateError):
        return f"invalid desired state: {as_typed(str(error))}. Nothing was written.", EXIT_USAGE
    if isinstance(error, RuleViolation):
        return (
            f"refused by rule {error.rule}: {error.field} = {_shown(error.value)}: "
            f"{as_typed(error.reason)} Nothing was written.",
            EXIT_USAGE,
        )
    if isinstance(error, ValidationError):
        rule = f" (rule {error.rule})" if error.rule else ""
        return (
            f"invalid {option_name(error.field)}{rule}: {in_cli_terms(error.reason)} "
            f"({'' if error.value is None else 'got '}{_shown(error.value)}). "
            "Nothing was written.",
            EXIT_USAGE,
        )
    if isinstance(error, TLSError) and _plain_http(error):
        where = re.search(r"https://\S+?/wsman", str(error))
        endpoint = where.group(0) if where else "the endpoint"
        return (
            f"{endpoint} answered in plain HTTP, not TLS: it is an http endpoint. Connect "
            "with --scheme http (and its port, usually 5985), or enable an HTTPS listener "
            "on the server.",
            EXIT_FAILED,
        )
    if isinstance(error, AuthenticationError):
        return f"authentication failed: {in_cli_terms(str(error))}", EXIT_FAILED
    if isinstance(error, CMProxyError):
        return f"{type(error).__name__}: {in_cli_terms(str(error))}", EXIT_FAILED
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {as_typed(str(error))}", EXIT_FAILED
    return f"unexpected {type(error).__name__}: {error} (run with --debug for details)", EXIT_FAILED


@contextmanager
def handled(
    common: _Secrets,
    *,
    json_output: bool = False,
    output: str = "json",
    error_exit: Callable[[], int | None] = lambda: None,
) -> Iterator[None]:
    """Print errors without tracebacks (unless --debug) and never with a password.

    `error_exit()`, when it gives a code, is the exit code of every error (`plan
    --detailed-exitcode`: 1, as terraform, since 2 there means "changes").
    """
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
        override = error_exit()
        raise typer.Exit(code if override is None else override) from None
