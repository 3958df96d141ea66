"""A runspace pool is sent the prelude once, by its first pipeline, not with every template
(issue 18).

The prelude only defines functions, dot-sourced into the runspace's global scope (PSRP
Command.UseLocalScope false), and a pool's runspace keeps its global scope between pipelines:
sent again with every template it was 6.7 KB of each pipeline to serialise, encrypt and parse
on both ends. Real pypsrp against the emulator, NTLM with message encryption; what pypsrp is
asked to send is recorded at `PowerShell.add_script`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pypsrp.powershell import PowerShell

from cmproxy.emulator.api import Emulator
from cmproxy.model import ProxySettings
from cmproxy.plan import DesiredState, ProxyRequest, plan
from cmproxy.session import Session
from cmproxy.templates import load_prelude
from cmproxy.transports import psrp as psrp_transport
from cmproxy.writer import WriteResult

from .targets import RECEIVE_TIMEOUT, connection_info

pytestmark = pytest.mark.e2e

DP = "cm-ps1-dp01.contoso.com"


def _record_scripts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    original: Callable[..., PowerShell] = PowerShell.add_script

    def add_script(
        self: PowerShell, script: str, use_local_scope: bool | None = None
    ) -> PowerShell:
        sent.append(script)
        return original(self, script, use_local_scope)

    monkeypatch.setattr(PowerShell, "add_script", add_script)
    return sent


def _write_and_read(session: Session, port: int) -> None:
    """A write (Set-ProxyBatch: the prelude's lock and projection) and two reads (Get-SiteState:
    its projection), each working only if the runspace has the prelude's functions."""
    desired = DesiredState(
        proxies=[ProxyRequest(DP, ProxySettings(server="proxy-a.contoso.com", port=port))]
    )
    changes = list(plan(session.read_state(site_codes=["PS1"]), desired))
    assert changes
    (written,) = session.apply_many(changes)
    assert isinstance(written, WriteResult), written
    shown = session.read_state(site_codes=["PS1"]).server(DP)
    assert shown is not None and shown.proxy.port == port


def test_one_pool_gets_the_prelude_with_its_first_pipeline_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = _record_scripts(monkeypatch)
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, "psrp", "ntlm")) as session,
    ):
        _write_and_read(session, 81)
        _write_and_read(session, 82)
    assert sent.count(load_prelude()) == 1
    assert len(sent) > 6  # the bootstrap, then each step: template and output packing


def test_a_changed_prelude_is_sent_again_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A role setting registered after the pool was bootstrapped changes the prelude's
    projection (`load_prelude` inserts the registered settings' rows): the pool gets the new
    text with its next pipeline, and only then."""
    sent = _record_scripts(monkeypatch)
    changed = load_prelude() + "\n# a role setting registered meanwhile\n"
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, "psrp", "ntlm")) as session,
    ):
        _write_and_read(session, 81)
        monkeypatch.setattr(psrp_transport, "load_prelude", lambda: changed)
        _write_and_read(session, 82)
        _write_and_read(session, 83)
    assert (sent.count(load_prelude()), sent.count(changed)) == (1, 1)
