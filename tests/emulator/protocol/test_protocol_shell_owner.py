"""A shell belongs to the user who created it: another user who knows its ShellId is refused
for every shell operation, over both resource URIs, through the real pypsrp and pywinrm clients.

Sources: Connect-PSSession (PowerShell 5.1 reference): "you cannot connect to sessions that were
started by other users, unless you can provide the credentials of the user who created the
session"; Get-PSSession -ComputerName lists only the current user's sessions
(about_Remote_Disconnected_Sessions). The fault itself is [UNCONFIRMED]
(`HostFacts.foreign_shell_fault`): by default wsman:AccessDenied (DSP0226 14.6) with WSManFault
Code 5 (ERROR_ACCESS_DENIED, "Access is denied.").
"""

from __future__ import annotations

import base64
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pypsrp.exceptions import WSManFaultError as PSRPFault
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan
from winrm.exceptions import WinRMError
from winrm.protocol import Protocol

from cmproxy.emulator import shell_enum, wsman
from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER, Emulator

from .. import clients
from ..clients import OTHER, OTHER_PASSWORD, two_user_emulator

pytestmark = pytest.mark.e2e

RSP = NAMESPACES["rsp"]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with two_user_emulator(receive_timeout=2) as e:
        yield e


def psrp_wsman(emu: Emulator, user: str, password: str) -> WSMan:
    return clients.psrp_wsman(emu, user, password, operation_timeout=3)


def winrs(emu: Emulator, user: str, password: str) -> Protocol:
    return clients.winrs_protocol(emu, user, password, operation_timeout=3)


def _el(tag: str, attrs: dict[str, str] | None = None, text: str | None = None) -> ET.Element:
    el = ET.Element(f"{{{RSP}}}{tag}", attrs or {})
    el.text = text
    return el


def _command_line(command_id: str) -> ET.Element:
    line = _el("CommandLine", {"CommandId": command_id})
    ET.SubElement(line, f"{{{RSP}}}Command").text = "Invoke-Expression"
    ET.SubElement(line, f"{{{RSP}}}Arguments").text = base64.b64encode(b"\0" * 21).decode()
    return line


def _send(command_id: str) -> ET.Element:
    send = _el("Send")
    ET.SubElement(
        send, f"{{{RSP}}}Stream", {"Name": "stdin", "CommandId": command_id}
    ).text = base64.b64encode(b"x").decode()
    return send


def _receive(command_id: str) -> ET.Element:
    receive = _el("Receive")
    ET.SubElement(receive, f"{{{RSP}}}DesiredStream", {"CommandId": command_id}).text = "stdout"
    return receive


def _signal(command_id: str) -> ET.Element:
    signal = _el("Signal", {"CommandId": command_id})
    ET.SubElement(signal, f"{{{RSP}}}Code").text = wsman.SIGNAL_TERMINATE
    return signal


def _psrp_operations(other: WSMan, shell_id: str, command_id: str) -> dict[str, Callable[[], Any]]:
    sel = SelectorSet()
    sel.add_option("ShellId", shell_id)
    uri = wsman.RESOURCE_PWSH
    return {
        "Get": lambda: other.get(uri, selector_set=sel),
        "Command": lambda: other.command(uri, _command_line(str(uuid.uuid4()).upper()), None, sel),
        "Send": lambda: other.send(uri, _send(command_id), None, sel),
        "Receive": lambda: other.receive(uri, _receive(command_id), None, sel),
        "Signal": lambda: other.signal(uri, _signal(command_id), None, sel),
        "Delete": lambda: other.delete(uri, selector_set=sel),
        # Listing the shell's commands, as RunspacePool.get_runspace_pools does (MS-WSMV
        # 3.1.4.8.2, a SelectorFilter on ShellId).
        "Enumerate commands": lambda: other.enumerate(
            shell_enum.RESOURCE_COMMAND, _command_filter(shell_id)
        ),
    }


def _command_filter(shell_id: str) -> ET.Element:
    wsen = NAMESPACES["wsen"]
    wsmn = NAMESPACES["wsman"]
    enum_msg = ET.Element(f"{{{wsen}}}Enumerate")
    ET.SubElement(enum_msg, f"{{{wsmn}}}OptimizeEnumeration")
    selector_filter = ET.SubElement(
        enum_msg,
        f"{{{wsmn}}}Filter",
        Dialect="http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter",
    )
    sel = SelectorSet()
    sel.add_option("ShellId", shell_id)
    selector_filter.append(sel.pack())
    return enum_msg


def _calls(emu: Emulator) -> list[tuple[str, str]]:
    assert emu.state is not None
    return [(c.user, c.command) for c in emu.state.call_log()]


def test_another_users_powershell_shell_is_refused_for_every_operation(emu: Emulator) -> None:
    pool = RunspacePool(psrp_wsman(emu, DEFAULT_USER, DEFAULT_PASSWORD))
    pool.open()
    try:
        running = PowerShell(pool)
        running.add_script("Start-Sleep -Milliseconds 300; 'owner output'")
        running.begin_invoke()
        shell_id = str(pool.shell.id).upper()
        command_id = str(running.id).upper()
        before = _calls(emu)
        other = psrp_wsman(emu, OTHER, OTHER_PASSWORD)
        for name, operation in _psrp_operations(other, shell_id, command_id).items():
            with pytest.raises(PSRPFault) as err:
                operation()
            assert err.value.code == wsman.CODE_ACCESS_DENIED, name
            assert "Access is denied" in str(err.value.reason), name
        # The owner's command still runs to its end and its output is the owner's alone; the
        # refused requests ran nothing, under either name.
        running.end_invoke()
        assert running.output == ["owner output"]
        ps = PowerShell(pool)
        ps.add_script("1 + 1")
        assert ps.invoke() == [2]
        assert [c for c in _calls(emu) if c not in before] == [
            c for c in _calls(emu) if c not in before and c[0] == DEFAULT_USER
        ]
        assert all(user != OTHER for user, _ in _calls(emu))
    finally:
        pool.close()


def test_another_users_cmd_shell_is_refused_for_every_operation(emu: Emulator) -> None:
    owner = winrs(emu, DEFAULT_USER, DEFAULT_PASSWORD)
    shell_id = owner.open_shell()
    command_id = owner.run_command(shell_id, "powershell", ["-NoProfile", "-Command", "1 + 1"])
    other = winrs(emu, OTHER, OTHER_PASSWORD)
    operations: dict[str, Callable[[], Any]] = {
        "Command": lambda: other.run_command(shell_id, "whoami"),
        "Send": lambda: other.send_command_input(shell_id, command_id, "x"),
        "Receive": lambda: other.get_command_output(shell_id, command_id),
        "Signal": lambda: other.cleanup_command(shell_id, command_id),
        "Delete": lambda: other.close_shell(shell_id),
    }
    for name, operation in operations.items():
        with pytest.raises(WinRMError) as err:
            operation()
        assert "Access is denied" in str(err.value), name
    sel = SelectorSet()
    sel.add_option("ShellId", shell_id)
    with pytest.raises(PSRPFault) as get_err:
        psrp_wsman(emu, OTHER, OTHER_PASSWORD).get(wsman.RESOURCE_CMD, selector_set=sel)
    assert get_err.value.code == wsman.CODE_ACCESS_DENIED
    # The owner's shell and command are untouched.
    out, _err, code = owner.get_command_output(shell_id, command_id)
    assert code == 0 and out.strip() == b"2"
    owner.cleanup_command(shell_id, command_id)
    owner.close_shell(shell_id)


def test_the_shell_not_found_variant_reveals_nothing_either(emu: Emulator) -> None:
    emu.settings.host.foreign_shell_fault = "shell_not_found"
    owner = winrs(emu, DEFAULT_USER, DEFAULT_PASSWORD)
    shell_id = owner.open_shell()
    with pytest.raises(WinRMError) as err:
        winrs(emu, OTHER, OTHER_PASSWORD).run_command(shell_id, "whoami")
    assert "shell was not found" in str(err.value)
    owner.close_shell(shell_id)


def test_the_owner_is_the_same_account_in_any_letter_case(emu: Emulator) -> None:
    """Windows account names are case-insensitive: the owner in other case is the owner."""
    owner = winrs(emu, DEFAULT_USER, DEFAULT_PASSWORD)
    shell_id = owner.open_shell()
    command_id = winrs(emu, DEFAULT_USER.upper(), DEFAULT_PASSWORD).run_command(shell_id, "whoami")
    owner.cleanup_command(shell_id, command_id)
    owner.close_shell(shell_id)
