"""`cmproxy.diagnose(session)` over both transports: R13 is found in the log of the session's own
site server (read through the FileSystem provider), and the logs behind a second hop are named
as unreadable, not silently empty (tests/cli/test_diagnose_logs.py does the same via the CLI)."""

from __future__ import annotations

from cmproxy import diagnose
from cmproxy.emulator.api import Emulator
from cmproxy.session import Session

from .targets import RECEIVE_TIMEOUT, connection_info


def test_diagnose_names_found_and_unreadable_logs(transport_name: str) -> None:
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, transport_name, "ntlm")) as session,
    ):
        diagnosis = diagnose(session)
    r13 = [f for f in diagnosis if f.rule == "R13"]
    errors = [f.server for f in r13 if f.severity == "error"]
    assert errors == ["cm-ps1.contoso.com"]
    hops = {f.server: f for f in r13 if "second hop" in f.message}
    assert set(hops) == {"cm-cas01.contoso.com", "cm-ps2.contoso.com"}
    assert "ruleengine.log" in hops["cm-ps2.contoso.com"].message
    assert "CredSSP" in hops["cm-ps2.contoso.com"].fix
