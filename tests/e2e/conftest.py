"""End-to-end fixtures: the real SDK against the emulator, NTLM with message encryption."""

from __future__ import annotations

from typing import Any

import attrs

from cmproxy import ConnectionInfo, ServerSnapshot, SupFlags
from cmproxy.emulator.api import Emulator
from cmproxy.model import ProxySettings

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
