"""The `cmproxy` command: show, plan, apply, recover and diagnose the proxies of a ConfigMgr site.

A thin face over the public API (`cmproxy.__all__`), split by responsibility: `options` (the
shared options, the connection flags generated from `cmproxy.connection_options`), `connect`
(opening the session, choosing a site code), `commands` (one function per command), `planfile`
(saved plans and drift), `render` (rich tables, JSON and YAML; also used by `cmproxy.cli.demo`),
`ui` (the status line and the apply bar on stderr), `errors` (what the user sees when something
fails), `emulator` (`cmproxy emulator serve`) and `typer_app` (the typer application).

Importing this package does not load the commands: `main` imports them when it runs, so the
renderers can be used without the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cmproxy.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from cmproxy.cli.options import common_from

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "app",
    "common_from",
    "main",
]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cmproxy` console script."""
    from cmproxy.cli.typer_app import main as run  # noqa: PLC0415 - commands load only to run

    run(argv)


def __getattr__(name: str) -> Any:
    """`cmproxy.cli.app`, the typer application, loaded when first asked for."""
    if name == "app":
        from cmproxy.cli.typer_app import app  # noqa: PLC0415 - commands load only when asked

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
