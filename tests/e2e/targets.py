"""Fixtures for the SDK's end-to-end tests: an emulated site per test, reached through every
transport × authentication combination the SDK promises (Basic over HTTPS, NTLM and
Negotiate with message encryption over HTTP), and a session opened on it.

Only 127.0.0.1 is contacted; the top-level conftest sets NO_PROXY.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

from cmproxy.connection import ConnectionInfo
from cmproxy.emulator.api import Emulator
from cmproxy.invocation import AccountLookup, Invocation
from cmproxy.model import ProxySettings, Secret, SupFlags
from cmproxy.plan import Change, ChangeKind, FieldChange
from cmproxy.session import Session

RECEIVE_TIMEOUT = 3.0
#: The account `proxy_change` sets by default (one the demo seed registers).
BATCH_ACCOUNT = "CONTOSO\\svc-cminstall"

#: (auth, https?) — Basic only over TLS; NTLM/Negotiate over HTTP with message encryption.
AUTH_MODES = {
    "basic-https": ("basic", True),
    "ntlm-http-encrypted": ("ntlm", False),
    "negotiate-http-encrypted": ("negotiate", False),
}
TRANSPORTS = ("psrp", "winrm")
COMBOS = [(t, a) for t in TRANSPORTS for a in AUTH_MODES]


# -- sites and sessions ---------------------------------------------------------------------


@attrs.frozen
class Target:
    """A running emulator and how to reach it."""

    emulator: Emulator
    info: ConnectionInfo

    def session(self, **changes: Any) -> Session:
        return Session(self.info.evolve(**changes) if changes else self.info)


def account_change(user: str, password: str, site: str = "PS1") -> Change:
    """Creating account `user` (its password a `Secret`) at `site`: a write that sends a
    SecureString."""
    return Change(
        kind=ChangeKind.CREATE_ACCOUNT,
        site_code=site,
        target=user,
        before=None,
        after=user,
        fields=(FieldChange("account", None, user),),
        invocation=Invocation.of(
            "New-CMAccount", UserName=user, Password=Secret(password), SiteCode=site
        ),
    )


def proxy_change(
    server: str, account: str | None = BATCH_ACCOUNT, host: str = "p.contoso.com", site: str = "PS1"
) -> Change:
    after = ProxySettings(server=host, port=3128, account=account)
    params: dict[str, object] = {
        "SiteSystemServerName": server,
        "SiteCode": site,
        "EnableProxy": True,
        "ProxyServerName": host,
        "ProxyServerPort": 3128,
    }
    if account is not None:
        params["ProxyAccessAccount"] = AccountLookup(account, site)
    return Change(
        kind=ChangeKind.SET_SERVER_PROXY,
        site_code=site,
        target=server,
        before=None,
        after=after,
        fields=(),
        invocation=Invocation.of("Set-CMSiteSystemServer", **params),
    )


def sup_change(server: str, use_proxy: bool, adr: bool, site: str = "PS1") -> Change:
    return Change(
        kind=ChangeKind.SET_SUP_FLAGS,
        site_code=site,
        target=server,
        before=None,
        after=SupFlags(use_proxy=use_proxy, use_proxy_for_adr=adr),
        fields=(),
        invocation=Invocation.of(
            "Set-CMSoftwareUpdatePoint",
            SiteSystemServerName=server,
            SiteCode=site,
            UseProxy=use_proxy,
            UseProxyForAutoDeploymentRule=adr,
        ),
    )


def connection_info(emu: Emulator, transport: str, auth: str, **extra: Any) -> ConnectionInfo:
    return ConnectionInfo(
        server=emu.host,
        port=emu.port,
        scheme=emu.scheme,
        auth=auth,
        username=emu.username,
        password=emu.password,
        ca_cert=emu.cert_path,
        message_encryption="auto" if emu.https else "always",
        transport=transport,
        site_code="PS1",
        read_timeout=30,
        operation_timeout=10,
        ignore_proxy=True,
        **extra,
    )


@pytest.fixture(params=COMBOS, ids=[f"{t}-{a}" for t, a in COMBOS])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    transport, mode = request.param
    auth, https = AUTH_MODES[mode]
    with Emulator(
        allow_basic=True, seed="demo", https=https, receive_timeout=RECEIVE_TIMEOUT
    ) as emu:
        yield Target(emu, connection_info(emu, transport, auth))


@pytest.fixture(params=TRANSPORTS)
def transport_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
