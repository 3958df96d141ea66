"""Shells a client left behind: enumerated, and stopped, as WinRM does it.

Sources: MS-WSMV 3.1.4.8.2 (Remote Shells: a wsen:Enumerate of the Shell resource lists the
active shells; with a ShellId selector, an Enumerate of the Command resource lists one shell's
commands); MS-WSMV 2.2.4.37 (the Shell data type: ShellId, ResourceUri, Owner, ClientIP,
IdleTimeOut, State, ShellRunTime, ShellInactivity); learn.microsoft.com/windows/win32/winrm/
remote-shell-infrastructure-improvements ("Users can enumerate, get, and delete the shells that
they have created"); DSP0226 8.2.3 (OptimizeEnumeration / Pull, EndOfSequence); MS-PSRP
3.2.1.1.1 (the server keys a runspace pool by its WSMV shell, not by a client connection: a
pipeline runs on when its client vanishes); System.Management.Automation.PowerShell.Stop
("stops the currently running pipeline synchronously"); a WinRS command is a process that
Signal terminate ends (MS-WSMV 3.1.4.12, Signal).
"""

from __future__ import annotations

import base64
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import NAMESPACES, SelectorSet

from cmproxy.emulator import wsman
from cmproxy.emulator.api import DEFAULT_USER, Emulator
from cmproxy.emulator.psrp_shell import PSRPShell

from ..clients import (
    OTHER,
    OTHER_PASSWORD,
    open_pool,
    psrp_wsman,
    two_user_emulator,
    winrs_protocol,
)

pytestmark = pytest.mark.e2e

LOOP = "while ($true) { Start-Sleep -Milliseconds 20 }"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with two_user_emulator(receive_timeout=2) as emu:
        yield emu


def vanish(pool: Any) -> None:
    """The client goes away without closing anything (its connection is simply dropped)."""
    pool.connection.transport.session.close()


def shell_of(emu: Emulator, pool: Any) -> PSRPShell:
    assert emu.service is not None
    shell = emu.service.shells[str(pool.shell.id).upper()]
    assert isinstance(shell, PSRPShell)
    return shell


def left_behind(emu: Emulator, script: str) -> tuple[Any, PowerShell, Any]:
    """(pool, pipeline, the emulator's pipe) of `script`, started and then left by its client."""
    pool = open_pool(emu)
    ps = PowerShell(pool)
    ps.add_script(script)
    ps.begin_invoke()
    pipe = shell_of(emu, pool).pipes[str(ps.id).upper()]
    vanish(pool)
    return pool, ps, pipe


def shell_selector(pool: Any) -> SelectorSet:
    selectors = SelectorSet()
    selectors.add_option("ShellId", str(pool.shell.id))
    return selectors


def test_enumerate_lists_only_the_callers_shells_with_their_commands(emu: Emulator) -> None:
    mine = open_pool(emu)
    theirs = open_pool(emu, OTHER, OTHER_PASSWORD)
    ps = PowerShell(mine)
    ps.add_script(LOOP)
    ps.begin_invoke()
    pools = RunspacePool.get_runspace_pools(psrp_wsman(emu))
    assert [p.id.upper() for p in pools] == [str(mine.shell.id).upper()]
    assert [cid.upper() for cid in pools[0].pipelines] == [str(ps.id).upper()]
    others = RunspacePool.get_runspace_pools(psrp_wsman(emu, OTHER, OTHER_PASSWORD))
    assert [p.id.upper() for p in others] == [str(theirs.shell.id).upper()]
    ps.stop()
    mine.close()
    theirs.close()


def test_each_shell_item_says_whose_it_is_and_how_old(emu: Emulator) -> None:
    pool = open_pool(emu)
    enum = ET.Element(f"{{{NAMESPACES['wsen']}}}Enumerate")
    ET.SubElement(enum, f"{{{NAMESPACES['wsman']}}}OptimizeEnumeration")
    body = psrp_wsman(emu).enumerate(wsman.RESOURCE_SHELL, enum)
    items = body.findall("wsen:EnumerateResponse/wsman:Items/rsp:Shell", NAMESPACES)
    assert body.find("wsen:EnumerateResponse/wsman:EndOfSequence", NAMESPACES) is not None
    assert len(items) == 1

    def text(name: str) -> str:
        return str(items[0].findtext(f"rsp:{name}", namespaces=NAMESPACES))

    assert text("ShellId") == str(pool.shell.id).upper()
    assert text("Owner") == DEFAULT_USER
    assert text("ResourceUri") == wsman.RESOURCE_PWSH
    assert text("State") == "Connected"
    assert text("ShellRunTime").startswith("P0DT0H")
    assert text("IdleTimeOut") == "PT7200.000S"
    # A cmd shell is listed too, and only it under the cmd resource URI.
    proto = winrs_protocol(emu, operation_timeout=20, read_timeout=30)
    cmd_id = proto.open_shell()
    cmd = psrp_wsman(emu).enumerate(wsman.RESOURCE_CMD, enum)
    ids = [
        s.findtext("rsp:ShellId", namespaces=NAMESPACES)
        for s in cmd.findall("wsen:EnumerateResponse/wsman:Items/rsp:Shell", NAMESPACES)
    ]
    assert ids == [cmd_id.upper()]
    proto.close_shell(cmd_id)
    pool.close()


def test_without_optimize_the_items_come_by_pull(emu: Emulator) -> None:
    pools = [open_pool(emu) for _ in range(3)]
    wsen = NAMESPACES["wsen"]
    enum = ET.Element(f"{{{wsen}}}Enumerate")
    conn = psrp_wsman(emu)
    body = conn.enumerate(wsman.RESOURCE_SHELL, enum)
    assert body.find("wsen:EnumerateResponse/wsman:Items", NAMESPACES) is None
    context = body.findtext("wsen:EnumerateResponse/wsen:EnumerationContext", namespaces=NAMESPACES)
    seen: list[str] = []
    while context:
        pull = ET.Element(f"{{{wsen}}}Pull")
        ET.SubElement(pull, f"{{{wsen}}}EnumerationContext").text = context
        ET.SubElement(pull, f"{{{wsen}}}MaxElements").text = "2"
        got = conn.pull(wsman.RESOURCE_SHELL, pull)
        seen += [
            str(s.findtext("rsp:ShellId", namespaces=NAMESPACES))
            for s in got.findall("wsen:PullResponse/wsen:Items/rsp:Shell", NAMESPACES)
        ]
        context = got.findtext("wsen:PullResponse/wsen:EnumerationContext", namespaces=NAMESPACES)
    assert sorted(seen) == sorted(str(p.shell.id).upper() for p in pools)
    for pool in pools:
        pool.close()


def test_a_pipeline_runs_to_its_end_after_its_client_vanished(emu: Emulator) -> None:
    pool, _ps, pipe = left_behind(emu, "Start-Sleep -Milliseconds 400; 'done'")
    end = time.monotonic() + 10
    while not pipe.finished:
        assert time.monotonic() < end
        time.sleep(0.02)
    assert not pipe.stop.is_set()  # it ended on its own, nobody stopped it
    # The shell is still there for its owner to find.
    ids = [p.id.upper() for p in RunspacePool.get_runspace_pools(psrp_wsman(emu))]
    assert str(pool.shell.id).upper() in ids


def test_deleting_an_unattended_shell_answers_once_its_pipeline_stopped(emu: Emulator) -> None:
    pool, _ps, pipe = left_behind(emu, LOOP)
    psrp_wsman(emu).delete(wsman.RESOURCE_PWSH, selector_set=shell_selector(pool))
    assert pipe.worker is not None and not pipe.worker.is_alive()
    assert RunspacePool.get_runspace_pools(psrp_wsman(emu)) == []


def test_winrs_signal_terminate_ends_the_process(emu: Emulator) -> None:
    proto = winrs_protocol(emu, operation_timeout=20, read_timeout=30)
    shell_id = proto.open_shell()
    encoded = base64.b64encode(LOOP.encode("utf-16-le")).decode("ascii")
    command_id = proto.run_command(shell_id, "powershell", ["-EncodedCommand", encoded])
    assert emu.service is not None
    shell = emu.service.shells[shell_id.upper()]
    procs = getattr(shell, "procs")  # noqa: B009 - a CmdShell's processes
    proc = procs[command_id.upper()]
    time.sleep(0.1)
    assert proc.worker is not None and proc.worker.is_alive()
    proto.cleanup_command(shell_id, command_id)  # Signal terminate
    assert not proc.worker.is_alive()
    proto.close_shell(shell_id)


def test_signal_terminate_from_another_connection_stops_an_unattended_pipeline(
    emu: Emulator,
) -> None:
    """The owner, on a new connection, ends a pipeline no client receives from any more: the
    SignalResponse comes once it stopped, and the command is gone from the enumeration."""
    pool, ps, pipe = left_behind(emu, LOOP)
    rsp = NAMESPACES["rsp"]
    signal = ET.Element(f"{{{rsp}}}Signal", CommandId=str(ps.id).upper())
    ET.SubElement(signal, f"{{{rsp}}}Code").text = wsman.SIGNAL_TERMINATE
    psrp_wsman(emu).signal(wsman.RESOURCE_PWSH, signal, selector_set=shell_selector(pool))
    assert pipe.worker is not None and not pipe.worker.is_alive()
    (listed,) = RunspacePool.get_runspace_pools(psrp_wsman(emu))
    assert listed.pipelines == {}
