"""pytest fixtures: a fresh emulated site per test, over HTTP or HTTPS.

Register with `pytest_plugins = ["cmproxy.emulator.pytest_plugin"]`. Each test gets its own
emulator (own port, own state file seeded with the demo site), so writes and injected faults
never leak between tests; starting one costs a few tens of milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

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


@pytest.fixture
def cm_emulator() -> Iterator[Emulator]:
    """The demo site over HTTP (Basic, NTLM, Negotiate with encryption)."""
    _no_proxy()
    with Emulator(seed="demo", receive_timeout=TEST_RECEIVE_TIMEOUT) as emu:
        yield emu


@pytest.fixture
def cm_emulator_https() -> Iterator[Emulator]:
    """The demo site over HTTPS; trust `cm_emulator_https.cert_path`."""
    _no_proxy()
    with Emulator(seed="demo", https=True, receive_timeout=TEST_RECEIVE_TIMEOUT) as emu:
        yield emu
