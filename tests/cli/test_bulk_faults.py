"""A bulk apply over the demo hierarchy with failures injected on a few chosen servers.

The emulator only knows "fail the Nth call of a cmdlet", so a transaction hook arms that fault
just before the chosen server's write (one server at a time, so the Nth call is that one).
The other servers change; the chosen ones are rolled back — a SUP whose proxy was already
written is really put back — and the results table says so. With all-or-nothing every server
is back to its before state, checked in the emulator's own state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

import cmproxy
from cmproxy import ConnectionInfo, Journal, Outcome, Session
from cmproxy.cli.render import results_table
from cmproxy.emulator.api import Emulator

from .conftest import proxy_view

pytestmark = pytest.mark.e2e

HIERARCHY = """\
version: 1
sites:
  PS2:
    proxy: {server: proxy.contoso.com, port: 8080, account: CONTOSO\\svc-proxy}
    sup: {use_proxy: true, use_proxy_for_adr: true}
servers:
  cm-ps2-dp02.contoso.com:          # Connected Cache: unauthenticated proxy only
    proxy: {server: proxy.contoso.com, port: 8080}
  cm-ps1-mp01.contoso.com:
    proxy: {server: proxy.contoso.com, port: 8080}
  cm-ps1-dp01.contoso.com:
    proxy: {server: proxy.contoso.com, port: 8080}
  cm-cas-rp01.contoso.com:
    proxy: {server: proxy.contoso.com, port: 8080}
"""

#: server → the cmdlet whose call fails on it. The SUP fails after its proxy was written.
FAIL = {
    "cm-ps2-dp03.contoso.com": "Set-CMSiteSystemServer",
    "cm-ps2-sup01.contoso.com": "Set-CMSoftwareUpdatePoint",
    "cm-ps1-mp01.contoso.com": "Set-CMSiteSystemServer",
}


def _apply(emu: Emulator, tmp: Path, *, all_or_nothing: bool) -> cmproxy.Results:
    info = ConnectionInfo(
        server=emu.host,
        port=emu.port,
        scheme="https",
        auth="basic",
        username=emu.username,
        password=emu.password,
        ca_cert=emu.cert_path,
        site_code="PS1",
        ignore_proxy=True,
    )
    spec = cmproxy.parse_desired(HIERARCHY, source="hierarchy.yaml")
    with emu.settings.lock:  # the faults follow the servers, however writes are batched
        emu.settings.faults.fail_servers = dict(FAIL)
        emu.settings.faults.fail_cmdlet_error_id = "SmsInvalidProperty"  # not transient
    with Session(info) as session, Journal(tmp / "journal.sqlite3") as journal:
        return cmproxy.apply_bulk(
            [session],
            spec,
            journal=journal,
            all_or_nothing=all_or_nothing,
            progress=False,
        )


def _table_text(results: cmproxy.Results) -> str:
    console = Console(record=True, width=250, color_system=None)
    console.print(results_table(results))
    return console.export_text()


def test_failures_on_a_few_servers_roll_back_only_those(tmp_path: Path) -> None:
    with Emulator(allow_basic=True, seed="demo", https=True, receive_timeout=3.0) as emu:
        before = proxy_view(emu)
        results = _apply(emu, tmp_path, all_or_nothing=False)
        after = proxy_view(emu)
    outcomes = {r.server.lower(): r.outcome for r in results}
    assert {s for s, o in outcomes.items() if o.outcome is Outcome.ROLLED_BACK} == set(FAIL)
    assert not results.ok
    assert results.counts()["failed"] == 0
    changed = {s for s, o in outcomes.items() if o.outcome is Outcome.CHANGED}
    assert len(changed) == len(outcomes) - len(FAIL) >= 10
    for server in FAIL:
        assert "SmsInvalidProperty" in outcomes[server].reason
        assert after[f"{server}|proxy"] == before[f"{server}|proxy"]
    assert after["cm-ps2-sup01.contoso.com|sup"] == before["cm-ps2-sup01.contoso.com|sup"]
    for server in changed:
        assert after[f"{server}|proxy"][0] == "proxy.contoso.com"
    assert after["cm-ps2-sup02.contoso.com|sup"] == (1, 1)
    text = _table_text(results)
    assert f"{len(FAIL)} rolled back" in text
    for line in text.splitlines():
        for server in FAIL:
            if server in line:
                assert "rolled back" in line
        for server in changed:
            if f" {server} " in line:
                assert "changed" in line


def test_all_or_nothing_puts_every_server_back(tmp_path: Path) -> None:
    with Emulator(allow_basic=True, seed="demo", https=True, receive_timeout=3.0) as emu:
        before = proxy_view(emu)
        results = _apply(emu, tmp_path, all_or_nothing=True)
        after = proxy_view(emu)
    assert after == before
    counts = results.counts()
    assert counts["changed"] == 0
    assert counts["failed"] == 0
    assert counts["rolled back"] == len(results)
    assert "all-or-nothing" in _table_text(results)
