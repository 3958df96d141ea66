"""Opening the session a command works in: the status line while it connects, and the site
code chosen on a provider that serves several sites (asked on a terminal, otherwise an error
that lists the codes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from cmproxy import ConnectionInfo, Session, SiteDriveError
from cmproxy.cli.errors import UsageError
from cmproxy.cli.options import Common, interactive
from cmproxy.cli.ui import Ui

__all__ = ["open_session"]


def _choose(info: ConnectionInfo, codes: list[str], ui: Ui) -> ConnectionInfo:
    listed = ", ".join(codes)
    if not interactive():
        raise UsageError(
            f"{info.server} serves {len(codes)} sites ({listed}): choose one with "
            "--site-code CODE (or CMPROXY_SITE_CODE)"
        )
    ui.console.print(f"{info.server} serves {len(codes)} sites: {listed}")
    while True:
        code = str(typer.prompt(f"Site code ({' / '.join(codes)})")).strip().upper()
        if code in codes:
            return info.evolve(site_code=code)
        ui.console.print(f"{code!r} is not one of {listed}")


def _open(info: ConnectionInfo, ui: Ui) -> Session:
    with ui.status(f"Connecting to {info.endpoint} as {info.username or 'the current user'}…"):
        try:
            return Session(info).open()
        except SiteDriveError as error:
            codes = list(error.site_codes) if info.site_code is None else []
            if not codes:
                raise
    chosen = _choose(info, codes, ui)
    with ui.status(f"Connecting to {chosen.endpoint}, site {chosen.site_code}…"):
        return Session(chosen).open()


@contextmanager
def open_session(common: Common, ui: Ui, *, site_code: str | None = None) -> Iterator[Session]:
    """The command's session, closed when the block ends. `site_code` (a command's single
    `--site`) is used as the session's site when no site code was given."""
    info = common.connection(interactive=interactive(), site_code=site_code)
    session = _open(info, ui)
    try:
        yield session
    finally:
        session.close()
