"""The `cmproxy` command: show, plan, apply, recover and diagnose the proxies of a ConfigMgr site.

A thin face over the public API (`cmproxy.__all__`), split by responsibility:
`options` (the shared connection options), `commands` (one function per command), `render`
(rich tables and JSON, also used by `cmproxy.demo`), `errors` (what the user sees when
something fails), `emulator` (`cmproxy emulator serve`) and `app` (the typer application).

Importing this package does not load the commands: `main` imports them when it runs, so the
renderers can be used without the CLI.
"""

from __future__ import annotations

from collections.abc import Sequence

from cmproxy.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from cmproxy.cli.options import common_from

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "common_from", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `cmproxy` console script."""
    from cmproxy.cli.app import main as run  # noqa: PLC0415 - commands load only to run

    run(argv)
