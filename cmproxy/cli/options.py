"""The options every connecting command shares, and how a command receives them.

Connection options fall back to `CMPROXY_*` environment variables (`ConnectionInfo.from_env`);
the password is best given as `CMPROXY_PASSWORD` or typed at the prompt, and never printed.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cmproxy import ConnectionInfo, Journal, Secret, ValidationError
from cmproxy.cli.errors import handled

__all__ = ["Common", "common_from", "interactive", "with_common"]

#: Auth protocols that need a password (kerberos may use a ticket; certificate a key).
_PASSWORD_AUTHS = frozenset({"negotiate", "ntlm", "credssp", "basic"})


def interactive() -> bool:
    """Whether someone can answer a prompt."""
    return sys.stdin.isatty()


# -- options shared by every command that connects ----------------------------------------------

_CONN = "Connection (default: CMPROXY_* environment variables)"


@dataclasses.dataclass(frozen=True)
class Common:
    """The connection, journal and debug options of a command."""

    server: str | None = None
    port: int | None = None
    scheme: str | None = None
    auth: str | None = None
    username: str | None = None
    #: A `Secret`, so the options' repr / `dataclasses.asdict` never show it.
    password: Secret | None = None
    transport: str | None = None
    ca_cert: str | None = None
    no_cert_validation: bool = False
    site_code: str | None = None
    journal: Path | None = None
    debug: bool = False

    def secrets(self) -> list[str]:
        """Values that must never be printed."""
        found = [
            self.password.reveal() if self.password else "",
            os.environ.get("CMPROXY_PASSWORD", ""),
        ]
        return [s for s in found if s]

    def connection(self, *, interactive: bool) -> ConnectionInfo:
        """The ConnectionInfo: flags first, then CMPROXY_* variables, then a password prompt."""
        overrides: dict[str, Any] = {
            name: getattr(self, name)
            for name in (
                "server",
                "port",
                "scheme",
                "auth",
                "username",
                "password",
                "transport",
                "ca_cert",
                "site_code",
            )
            if getattr(self, name) is not None
        }
        if self.no_cert_validation:
            overrides["cert_validation"] = False
            overrides["ca_cert"] = None
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
    """The shared options as typer gives them; the password becomes a `Secret` at once (an
    empty `--password` is none: the variable or the prompt comes next)."""
    password = options.get("password")
    return Common(**{**options, "password": Secret(password) if password else None})


_COMMON_OPTIONS: list[tuple[str, Any, Any]] = [
    (
        "server",
        str | None,
        typer.Option(
            "--server", help="SMS Provider host name (env CMPROXY_SERVER)", rich_help_panel=_CONN
        ),
    ),
    (
        "port",
        int | None,
        typer.Option(
            "--port",
            help="WinRM port (default 5986 https, 5985 http) (env CMPROXY_PORT)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "scheme",
        str | None,
        typer.Option(
            "--scheme", help="https (default) or http (env CMPROXY_SCHEME)", rich_help_panel=_CONN
        ),
    ),
    (
        "auth",
        str | None,
        typer.Option(
            "--auth",
            help="negotiate (default), ntlm, kerberos, credssp, basic, certificate "
            "(env CMPROXY_AUTH)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "username",
        str | None,
        typer.Option(
            "--username", "-u", help="DOMAIN\\user (env CMPROXY_USERNAME)", rich_help_panel=_CONN
        ),
    ),
    (
        "password",
        str | None,
        typer.Option(
            "--password",
            help="Prefer CMPROXY_PASSWORD or the prompt: a flag is visible to other users "
            "(env CMPROXY_PASSWORD)",
            rich_help_panel=_CONN,
            show_default=False,
        ),
    ),
    (
        "transport",
        str | None,
        typer.Option(
            "--transport",
            help="psrp (default) or winrm (env CMPROXY_TRANSPORT)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "ca_cert",
        str | None,
        typer.Option(
            "--ca-cert",
            help="PEM bundle of the CA that signed the server certificate (env CMPROXY_CA_CERT)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "no_cert_validation",
        bool,
        typer.Option(
            "--no-cert-validation",
            help="Do not verify the server certificate (unsafe; prefer --ca-cert)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "site_code",
        str | None,
        typer.Option(
            "--site-code",
            help="Site code of the provider's site (default: discovered) (env CMPROXY_SITE_CODE)",
            rich_help_panel=_CONN,
        ),
    ),
    (
        "journal",
        Path | None,
        typer.Option(
            "--journal",
            help="Transaction journal (env CMPROXY_JOURNAL; default ~/.cmproxy/journal.sqlite3)",
            rich_help_panel=_CONN,
            dir_okay=False,
        ),
    ),
    (
        "debug",
        bool,
        typer.Option("--debug", help="Show tracebacks on errors", envvar="CMPROXY_DEBUG"),
    ),
]

F = typing.TypeVar("F", bound=Callable[..., Any])


def with_common(func: F) -> F:
    """Give a command the shared options; it receives them as `common: Common`.

    Typer reads parameters from the signature, so the wrapper's signature is the command's own
    parameters (minus `common`) followed by the shared options.
    """
    hints = typing.get_type_hints(func, include_extras=True)
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "common"]
    params = [p.replace(annotation=hints[p.name]) for p in own]
    for name, kind, option in _COMMON_OPTIONS:
        default = False if kind is bool else None
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[kind, option],
            )
        )
    names = {name for name, _k, _o in _COMMON_OPTIONS}

    def wrapper(**kwargs: Any) -> Any:
        common = common_from({k: kwargs.pop(k) for k in list(kwargs) if k in names})
        with handled(common, json_output=bool(kwargs.get("json_output"))):
            return func(common=common, **kwargs)

    wrapper.__name__ = func.__name__
    wrapper.__qualname__ = func.__qualname__
    wrapper.__doc__ = func.__doc__
    wrapper.__module__ = func.__module__
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return typing.cast(F, wrapper)
