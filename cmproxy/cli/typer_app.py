"""The `cmproxy` typer application: the commands registered, the root options, `main`.

Exit codes: 0 done; 1 a change or check failed, the user declined, or the site could not be
reached; 2 bad usage or a desired state that is invalid or refused by a rule (nothing written);
130 interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

import cmproxy
from cmproxy.cli import commands
from cmproxy.cli.emulator import emulator_app, require_emulator, start_demo_emulator
from cmproxy.cli.render import make_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="cmproxy",
    help="Manage the proxy settings of ConfigMgr (SCCM/MECM) site system servers over WinRM.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(emulator_app, name="emulator")
for _command in (
    commands.show,
    commands.plan,
    commands.apply,
    commands.recover,
    commands.diagnose,
    commands.doctor,
):
    app.command()(_command)


@app.command()
def demo() -> None:
    """Rehearse a proxy migration against a built-in emulated site (takes seconds)."""
    require_emulator()
    from cmproxy.cli.demo import run_demo  # noqa: PLC0415 - loaded only for the demo

    raise typer.Exit(run_demo(make_console(), start_demo_emulator))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cmproxy {cmproxy.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version"),
    ] = False,
) -> None:
    """Manage the proxy settings of ConfigMgr (SCCM/MECM) site system servers over WinRM.

    Exit codes: 0 done, 1 failed, 2 invalid input or refused by a rule (nothing written).
    """


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cmproxy` console script."""
    app(args=list(argv) if argv is not None else None, prog_name="cmproxy")
