"""CredSSP end to end (issue 17, point 1) over PSRP and WinRS, through requests-credssp.

The emulator accepts CredSSP with pyspnego's CredSSP acceptor when it is enabled, as WinRM does
after `Enable-WSManCredSSP -Role Server` (Auth/CredSSP is false by default: winrm get
winrm/config/service/auth). The client delegates the user's password; the endpoint logs the
user on with it. Bodies are encrypted by the CredSSP TLS session under
`application/HTTP-CredSSP-session-encrypted`, in 16 KiB parts (`multipart/x-multi-encrypted`)
when longer (MS-WSMV 2.2.9.1.3); reading the demo site's state exceeds 16 KiB.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from cmproxy import (
    AuthenticationError,
    ConnectionInfo,
    ProxySettings,
    Session,
)
from cmproxy.emulator.api import Emulator

from .conftest import change_one_proxy, info_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("requests_credssp") is None,
        reason="requests-credssp not installed (pip install -e '.[credssp]')",
    ),
]

NEW = ProxySettings(server="proxy-credssp.contoso.com", port=8081)


def _info(emu: Emulator, transport: str, **extra: Any) -> ConnectionInfo:
    return info_for(emu, transport).evolve(auth="credssp", **extra)


@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_a_transaction_over_credssp_changes_the_proxy(transport: str, tmp_path: Path) -> None:
    with (
        Emulator(seed="demo", allow_credssp=True, receive_timeout=5.0) as emu,
        Session(_info(emu, transport)) as session,
    ):
        change_one_proxy(emu, session, tmp_path / "journal.sqlite3", NEW)
        assert {call.user for call in emu.state.call_log()} == {emu.username}


def test_credssp_is_refused_where_winrm_has_it_off() -> None:
    """Auth/CredSSP = false (the default): the 401 does not offer it and the client fails."""
    with Emulator(seed="demo", receive_timeout=5.0) as emu:
        with pytest.raises(AuthenticationError):
            Session(_info(emu, "psrp")).open()
        assert emu.state.call_log() == []


def test_a_wrong_password_is_refused(tmp_path: Path) -> None:
    with Emulator(seed="demo", allow_credssp=True, receive_timeout=5.0) as emu:
        with pytest.raises(AuthenticationError) as caught:
            Session(_info(emu, "psrp", password="Wr0ng-Passw0rd")).open()
        assert "Wr0ng-Passw0rd" not in str(caught.value)
        assert emu.state.call_log() == []
