"""The real clients the emulator protocol tests talk through, built one way for every test file.

pypsrp's `WSMan` and pywinrm's `Protocol` to the emulator over plain HTTP (Basic, so message
encryption is "never"; NTLM encrypts, "auto"), and a second account for the tests where a
shell's owner matters. Each test keeps its own timeouts: they are parameters here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan
from winrm.protocol import Protocol

from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER, Emulator

OTHER = "CONTOSO\\operator"
OTHER_PASSWORD = "0ther-Passw0rd!"


class FakeClock:
    """A clock the test moves (`now`) instead of waiting: for the emulator's idle clock
    (`ServerConfig.clock`) and its engine clock (`SiteEngine(clock=…)`)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def two_user_emulator(receive_timeout: float) -> Iterator[Emulator]:
    """A running emulator that knows the default account and `OTHER`."""
    users = {DEFAULT_USER: DEFAULT_PASSWORD, OTHER: OTHER_PASSWORD}
    with Emulator(
        allow_basic=True, allow_unencrypted=True, users=users, receive_timeout=receive_timeout
    ) as emu:
        yield emu


def psrp_wsman(
    emu: Emulator,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    *,
    auth: str = "basic",
    operation_timeout: int = 5,
    read_timeout: int = 10,
    no_proxy: bool = True,
) -> WSMan:
    """A pypsrp WSMan connection to the emulator over HTTP."""
    return WSMan(
        emu.host,
        port=emu.port,
        username=user,
        password=password,
        ssl=False,
        auth=auth,
        encryption="never" if auth == "basic" else "auto",
        operation_timeout=operation_timeout,
        read_timeout=read_timeout,
        no_proxy=no_proxy,
    )


def open_pool(
    emu: Emulator,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    *,
    operation_timeout: int = 5,
    read_timeout: int = 10,
) -> Any:
    """An opened pypsrp runspace pool (Basic); the caller closes it, or leaves it behind."""
    wsman = psrp_wsman(
        emu, user, password, operation_timeout=operation_timeout, read_timeout=read_timeout
    )
    pool = RunspacePool(wsman)
    pool.open()
    return pool


def winrs_protocol(
    emu: Emulator,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    *,
    operation_timeout: int = 5,
    read_timeout: int = 10,
) -> Protocol:
    """A pywinrm Protocol (WinRS, Basic) to the emulator."""
    return Protocol(
        emu.endpoint,
        transport="basic",
        username=user,
        password=password,
        operation_timeout_sec=operation_timeout,
        read_timeout_sec=read_timeout,
    )
