"""The options every connecting command shares, and how a command receives them.

The connection flags are generated from `cmproxy.connection_options.CONNECTION_OPTIONS`, the
one table of connection settings. A flag wins over its `CMPROXY_*` environment variable
(`ConnectionInfo.from_env`); the password is best given as `CMPROXY_PASSWORD` or typed at the
prompt, and is a `Secret` from the moment typer hands it over.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import logging
import os
import sys
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from cmproxy import ConnectionInfo, Journal, Secret, ValidationError
from cmproxy.cli.errors import handled, option_name
from cmproxy.connection_options import CONNECTION_OPTIONS, ConnectionOption

__all__ = ["Common", "Output", "common_from", "interactive", "option_name", "with_common"]

#: Auth protocols that need a password (kerberos may use a ticket; certificate a key).
_PASSWORD_AUTHS = frozenset({"negotiate", "ntlm", "credssp", "basic"})
_CONN = "Connection (default: CMPROXY_* environment variables)"
_PY_TYPES: dict[str, Any] = {"str": str, "path": str, "int": int, "float": float, "bool": bool}


class Output(enum.StrEnum):
    """How a command prints what it found."""

    TABLE = "table"
    JSON = "json"
    YAML = "yaml"


def interactive() -> bool:
    """Whether someone can answer a prompt."""
    return sys.stdin.isatty()


@dataclasses.dataclass(frozen=True)
class Common:
    """The connection, journal, output and logging options of a command."""

    #: ConnectionInfo field → value given as a flag (a password as a `Secret`, never shown).
    given: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    journal: Path | None = None
    debug: bool = False
    output: Output = Output.TABLE
    verbose: int = 0
    quiet: bool = False

    @property
    def structured(self) -> bool:
        """JSON or YAML on stdout: nothing else may go there."""
        return self.output is not Output.TABLE

    def secrets(self) -> list[str]:
        """Values that must never be printed."""
        password = self.given.get("password")
        found = [
            password.reveal() if isinstance(password, Secret) else "",
            os.environ.get("CMPROXY_PASSWORD", ""),
        ]
        return [s for s in found if s]

    def connection(self, *, interactive: bool, site_code: str | None = None) -> ConnectionInfo:
        """The ConnectionInfo: flags first, then CMPROXY_* variables, then a password prompt.

        `site_code` (a command's own `--site`) is used when no site code was given otherwise.
        """
        overrides = dict(self.given)
        if overrides.get("cert_validation") is False:
            overrides["ca_cert"] = None  # a CA bundle only serves to validate
        if site_code and "site_code" not in overrides and not os.environ.get("CMPROXY_SITE_CODE"):
            overrides["site_code"] = site_code
        info = ConnectionInfo.from_env(**overrides)
        if info.password is None and info.auth in _PASSWORD_AUTHS:
            if not interactive:
                raise ValidationError(
                    "password",
                    None,
                    f"is not set for {info.username}: set CMPROXY_PASSWORD, or run in a "
                    "terminal to be asked",
                )
            typed = typer.prompt(f"Password for {info.username}", hide_input=True)
            info = info.evolve(password=typed)
        return info

    def open_journal(self) -> Journal:
        return Journal(self.journal) if self.journal is not None else Journal()


def common_from(options: dict[str, Any]) -> Common:
    """The shared options as typer gives them (connection values by field name); the password
    becomes a `Secret` at once (an empty `--password` is none: the variable or the prompt
    comes next)."""
    fields = {o.field for o in CONNECTION_OPTIONS}
    given = {k: v for k, v in options.items() if k in fields and v is not None}
    if given.get("password"):
        given["password"] = Secret(given["password"])
    else:
        given.pop("password", None)
    rest = {k: v for k, v in options.items() if k not in fields}
    if rest.get("json_output"):
        rest["output"] = Output.JSON
    rest.pop("json_output", None)
    return Common(given=given, **rest)


def _connection_parameter(option: ConnectionOption) -> inspect.Parameter:
    """The typer parameter of one connection option."""
    kind = _PY_TYPES[option.type]
    names = [option.flag] if option.short is None else [option.flag, option.short]
    if kind is bool:
        names = [f"{option.flag}/--no-{option.flag.removeprefix('--')}"]
    choices = f": {'|'.join(option.choices)}" if option.choices else ""
    default = f"; default {option.default}" if option.default else ""
    typer_option = typer.Option(
        *names,
        help=f"{option.help}{choices} (env {option.env}{default})",
        rich_help_panel=_CONN,
        show_default=False,
    )
    return inspect.Parameter(
        option.field,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[kind | None, typer_option],
    )


_OTHER_OPTIONS: list[tuple[str, Any, Any]] = [
    (
        "journal",
        Path | None,
        typer.Option(
            "--journal",
            help="Transaction journal (env CMPROXY_JOURNAL; default ~/.cmproxy/journal.sqlite3)",
            dir_okay=False,
        ),
    ),
    (
        "output",
        Output,
        typer.Option("--output", "-o", help="How to print the result", case_sensitive=False),
    ),
    ("json_output", bool, typer.Option("--json", help="Same as --output json")),
    (
        "verbose",
        int,
        typer.Option(
            "--verbose", "-v", count=True, help="Log what cmproxy does on stderr (-vv: debug)"
        ),
    ),
    ("quiet", bool, typer.Option("--quiet", "-q", help="Only errors on stderr: no status line")),
    (
        "debug",
        bool,
        typer.Option("--debug", help="Show tracebacks on errors", envvar="CMPROXY_DEBUG"),
    ),
]
_OTHER_DEFAULTS: dict[str, Any] = {
    "journal": None,
    "output": Output.TABLE,
    "json_output": False,
    "verbose": 0,
    "quiet": False,
    "debug": False,
}

F = typing.TypeVar("F", bound=Callable[..., Any])


def configure_logging(common: Common) -> None:
    """-v: cmproxy's INFO records on stderr; -vv: DEBUG; -q: errors only; default warnings."""
    level = (
        logging.ERROR
        if common.quiet
        else {0: logging.WARNING, 1: logging.INFO}.get(common.verbose, logging.DEBUG)
    )
    logger = logging.getLogger("cmproxy")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False


def with_common(func: F) -> F:
    """Give a command the shared options; it receives them as `common: Common`.

    Typer reads parameters from the signature, so the wrapper's signature is the command's own
    parameters (minus `common`) followed by the shared options.
    """
    hints = typing.get_type_hints(func, include_extras=True)
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "common"]
    params = [p.replace(annotation=hints[p.name]) for p in own]
    params += [_connection_parameter(option) for option in CONNECTION_OPTIONS]
    params += [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_OTHER_DEFAULTS[name],
            annotation=Annotated[kind, option],
        )
        for name, kind, option in _OTHER_OPTIONS
    ]
    names = {o.field for o in CONNECTION_OPTIONS} | set(_OTHER_DEFAULTS)

    def wrapper(**kwargs: Any) -> Any:
        common = common_from({k: kwargs.pop(k) for k in list(kwargs) if k in names})
        configure_logging(common)
        detailed = bool(kwargs.get("detailed_exitcode"))
        with handled(
            common,
            json_output=common.structured,
            output=common.output,
            error_exit=lambda: 1 if detailed else None,
        ):
            return func(common=common, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    wrapper.__doc__ = func.__doc__
    wrapper.__module__ = func.__module__
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return typing.cast(F, wrapper)
