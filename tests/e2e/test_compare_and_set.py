"""Compare-and-set inside the write pipeline (issue 15, point 3): each write compares its
server with the values it was planned from just before its Set, so an edit made after the read
is detected and not overwritten, with the default options and no extra round trip.
"""

from __future__ import annotations

import threading
from pathlib import Path

import attrs
import pytest

from benchmarks import seed
from cmproxy import (
    DesiredState,
    Journal,
    Outcome,
    ProxyRequest,
    ProxySettings,
    Session,
    SupFlagsRequest,
    TransactionEvent,
    apply_bulk,
)
from cmproxy.emulator.api import Emulator
from cmproxy.emulator.state import SITE_SYSTEM, Prop

from .conftest import SERVER, SITE, info_for, oracle

pytestmark = pytest.mark.e2e

CONSOLE = ProxySettings(server="console-proxy.contoso.com", port=9999)
NEW = ProxySettings(server="proxy-new.contoso.com", port=3128)


def _console_edit(emu: Emulator, site: str, server: str) -> None:
    """What the ConfigMgr console does to a server: its site control data changed directly."""
    with emu.state.transaction():
        emu.state.set_props(
            site,
            server,
            SITE_SYSTEM,
            [
                Prop("UseProxy", 1),
                Prop("ProxyName", 0, "", str(CONSOLE.server)),
                Prop("ProxyServerPort", CONSOLE.port),
            ],
        )


def test_a_console_edit_during_a_1000_server_bulk_run_is_not_overwritten(tmp_path: Path) -> None:
    """The bar: 1,000 servers, default options (recheck_after=inf: no re-read before writing).
    When the first batch starts writing, an administrator changes one server that a later batch
    writes. That server is reported as a conflict naming the console's value and keeps it;
    every other server is changed."""
    chosen = seed.targets(1000)
    seeded = tmp_path / "seeded.sqlite"
    seed.build(seeded, 1000)
    late = chosen[-1]  # the last server of its site: written by its site's last batch
    desired = DesiredState(
        proxies=[ProxyRequest(t.name, NEW) for t in chosen],
        sup_flags=[SupFlagsRequest(t.name, True, False) for t in chosen if t.sup],
    )
    edited = threading.Event()

    def console_now(event: TransactionEvent) -> None:
        if event.kind == "apply" and not edited.is_set():
            edited.set()
            _console_edit(emu, late.site, late.name)

    with Emulator(seed="demo", state_path=str(seeded), receive_timeout=5.0) as emu:
        info = attrs.evolve(info_for(emu, "psrp"), site_code="PS1")
        with Session(info) as session, Journal(tmp_path / "journal.sqlite3") as journal:
            results = apply_bulk(
                [session], desired, journal=journal, progress=False, hooks=[console_now]
            )
            assert journal.open_transactions() == []
        assert edited.is_set()
        by_server = {item.outcome.server.lower(): item.outcome for item in results.items}
        conflicted = by_server[late.name.lower()]
        assert conflicted.outcome is Outcome.FAILED
        assert "changed since it was read" in conflicted.reason
        assert "console-proxy.contoso.com:9999" in conflicted.reason
        assert oracle(emu, late.name, late.site).proxy.same_as(CONSOLE)
        others = [by_server[t.name.lower()] for t in chosen if t is not late]
        assert [o.server for o in others if o.outcome is not Outcome.CHANGED] == []
        assert all(oracle(emu, t.name, t.site).proxy.same_as(NEW) for t in chosen[:50])


@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_a_console_edit_before_a_lone_write_is_not_overwritten(
    transport: str, tmp_path: Path
) -> None:
    """A bulk run of one server makes one write: it gets the same compare-and-set (it goes
    through the batch template like any other server write), over both transports."""
    desired = DesiredState(proxies=[ProxyRequest(SERVER, NEW)])

    def console_now(event: TransactionEvent) -> None:
        if event.kind == "apply":
            _console_edit(emu, SITE, SERVER)

    with Emulator(seed="demo", receive_timeout=3.0) as emu:
        sets = len(emu.state.call_log("Set-CMSiteSystemServer"))
        with Session(info_for(emu, transport)) as session, Journal(tmp_path / "j.db") as journal:
            results = apply_bulk(
                [session], desired, journal=journal, progress=False, hooks=[console_now]
            )
            assert journal.open_transactions() == []
        (item,) = results.items
        assert item.outcome.outcome is Outcome.FAILED
        assert "console-proxy.contoso.com:9999" in item.outcome.reason
        assert oracle(emu).proxy.same_as(CONSOLE)
        assert len(emu.state.call_log("Set-CMSiteSystemServer")) == sets
