"""End-to-end fixtures: the real SDK against the emulator, NTLM with message encryption.

The transport × authentication fixtures (`target`, `transport_name`, `closed_port`) are defined
in targets.py and imported here so that every test of this folder has them."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from cmproxy import (
    ConnectionInfo,
    DesiredState,
    Journal,
    Outcome,
    ProxyRequest,
    ServerSnapshot,
    Session,
    SupFlags,
    run_transaction,
)
from cmproxy.emulator.api import Emulator
from cmproxy.model import ProxySettings

from .targets import closed_port, target, transport_name  # noqa: F401 - fixtures, used by name

SERVER = "cm-ps2-sup01.contoso.com"
SITE = "PS2"
ACCOUNT = "CONTOSO\\svc-tx"


def info_for(emu: Emulator, transport: str, **extra: Any) -> ConnectionInfo:
    return ConnectionInfo(
        server=emu.host,
        port=emu.port,
        scheme=emu.scheme,
        auth="ntlm",
        username=emu.username,
        password=emu.password,
        message_encryption="always",
        transport=transport,
        site_code=SITE,
        read_timeout=30,
        operation_timeout=5,
        ignore_proxy=True,
        **extra,
    )


def fork_client(info: ConnectionInfo, change: Callable[[Session], object]) -> tuple[int, int]:
    """Fork a client process (cmproxy already imported, so a run costs a connection, not an
    interpreter start): it connects with `info`, says "r", runs `change`, says "d" and exits.
    Returns (its pid, the pipe it reports on) once it said it is connected."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_end)
        try:
            with Session(info) as session:
                os.write(write_end, b"r")
                change(session)
            os.write(write_end, b"d")
        finally:
            os._exit(0)
    os.close(write_end)
    assert os.read(read_end, 1) == b"r", "the client did not connect"
    return pid, read_end


def kill_client(pid: int, reports: int) -> None:
    """SIGKILL a forked client and reap it."""
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    os.close(reports)


def skip_idle_timeouts(emu: Emulator) -> None:
    """Let the endpoint's idle timeouts pass (its clock jumps): a killed client's shells stay
    on the endpoint until then (two hours by default, learn.microsoft.com/windows/win32/winrm/
    quotas), holding the account's shells; a few dozen kills in a row would exhaust them."""
    quotas = emu.settings.quotas
    skip = max(quotas.plugin_idle_timeout_ms, quotas.winrs_idle_timeout_ms) / 1000.0 + 1.0
    clock = emu.config.clock
    emu.config.clock = lambda: clock() + skip


def change_one_proxy(emu: Emulator, session: Session, journal: Path, new: ProxySettings) -> None:
    """Read the site, give SERVER the proxy `new` in one journalled transaction, and check the
    emulator's store shows it (the authentication tests' common scenario)."""
    state = session.read_state()
    assert SERVER.lower() in {s.name.lower() for s in state.servers}
    with Journal(journal) as opened:
        result = run_transaction(
            session, DesiredState(proxies=[ProxyRequest(SERVER, new)]), journal=opened
        )
    assert result.outcome(SERVER).outcome is Outcome.CHANGED
    assert oracle(emu).proxy == new


def oracle(emu: Emulator, server: str = SERVER, site: str = SITE) -> ServerSnapshot:
    """The server's state straight from the emulator's store (not through the SDK)."""
    props = emu.state.server_props(site, server)
    sup = emu.state.server_props(site, server, "SMS Software Update Point")

    def value(p: dict[str, Any], name: str) -> int:
        prop = p.get(name)
        return int(prop.value) if prop is not None else 0

    def text(p: dict[str, Any], name: str) -> str:
        prop = p.get(name)
        return str(prop.value2 or "") if prop is not None else ""

    if value(props, "UseProxy"):
        proxy = ProxySettings(
            server=text(props, "ProxyName"),
            port=value(props, "ProxyServerPort"),
            account=None if value(props, "AnonymousProxyAccess") else text(props, "ProxyUserName"),
        )
    else:
        proxy = ProxySettings.disabled()
    flags = (
        SupFlags(bool(value(sup, "UseProxy")), bool(value(sup, "UseProxyForADR"))) if sup else None
    )
    return attrs.evolve(ServerSnapshot(proxy), sup=flags)
