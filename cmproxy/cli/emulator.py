"""`cmproxy emulator …`: the emulated site, loaded only when asked for."""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["emulator_app", "start_demo_emulator"]

emulator_app = typer.Typer(
    help="Run the emulated ConfigMgr site (a real WinRM endpoint on this machine).",
    no_args_is_help=True,
)


@emulator_app.command(
    "serve",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def emulator_serve(ctx: typer.Context) -> None:
    """Serve the emulated site in the foreground until Ctrl-C (options: serve --help)."""
    from cmproxy.emulator import serve  # noqa: PLC0415 - the emulator is loaded only here

    raise typer.Exit(serve.main(["serve", *ctx.args]))


def start_demo_emulator(state_path: str) -> Any:
    """The emulated demo hierarchy over HTTPS, started, for `cmproxy demo`."""
    from cmproxy.emulator.api import Emulator  # noqa: PLC0415 - the emulator is loaded only here

    return Emulator(seed="demo", https=True, state_path=state_path).start()
