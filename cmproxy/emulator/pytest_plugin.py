"""pytest fixtures: a fresh emulated site per test, over HTTP or HTTPS.

Installed as a pytest plugin (entry point `pytest11`), so `cm_emulator` and
`cm_emulator_https` are there in any project that installs `cmproxy[emulator]`; inside this
repository `tests/conftest.py` also names it in `pytest_plugins` (same name, loaded once).
Each test gets its own emulator (own port, own state file seeded with the demo site), so
writes and injected faults never leak between tests; starting one costs a few tens of
milliseconds.

The emulator is imported only when a fixture is used: pytest loads every installed plugin, and
a base install (no `emulator` extra) must not fail to start pytest for projects that never use
these fixtures. Using one there fails with the line that names the extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cmproxy.emulator.api import Emulator

#: Long-poll cap in tests: short, so a test waiting on a Receive never waits long.
TEST_RECEIVE_TIMEOUT = 3.0


def _no_proxy() -> None:
    for var in ("NO_PROXY", "no_proxy"):
        current = [v for v in os.environ.get(var, "").split(",") if v]
        for host in ("127.0.0.1", "localhost"):
            if host not in current:
                current.append(host)
        os.environ[var] = ",".join(current)


def _emulator(*, https: bool) -> Emulator:
    from cmproxy.emulator.api import Emulator  # noqa: PLC0415 - only when a fixture is used

    _no_proxy()
    return Emulator(seed="demo", https=https, receive_timeout=TEST_RECEIVE_TIMEOUT)


@pytest.fixture
def cm_emulator() -> Iterator[Emulator]:
    """The demo site over HTTP: NTLM or Negotiate, with message encryption (WinRM's defaults:
    Basic is off; an `Emulator(allow_basic=True)` is a lab that turned it on)."""
    with _emulator(https=False) as emu:
        yield emu


@pytest.fixture
def cm_emulator_https() -> Iterator[Emulator]:
    """The demo site over HTTPS; trust `cm_emulator_https.cert_path`."""
    with _emulator(https=True) as emu:
        yield emu
