"""WinRM shell quotas and idle timeouts, through the real pypsrp and pywinrm clients.

Sources: "Quota Management for Remote Shells" (learn.microsoft.com/windows/win32/winrm/quotas:
WinRS MaxShellsPerUser 30, IdleTimeout 7,200,000 ms, an inactive shell is deleted); MS-WSMV
3.1.4.5.2.1 (a quota exceeded at Create is a wsman:QuotaLimit fault); the fault a real WinRM
sent (s:Sender / w:QuotaLimit, WSManFault Code 2150859173, "This user is allowed a maximum
number of 5 concurrent shells, which has been exceeded. Close existing shells or raise the quota
for this user."); ERROR_WSMAN_QUOTA_MAX_SHELLS = 0x803381A5 in wsmerror.h (as PowerShell's
CimChildJobBase.cs copies it); the Microsoft.PowerShell plug-in's Quotas (MaxShellsPerUser 25,
IdleTimeoutms 7200000) in its registered ConfigXML; New-PSSession refused by the WinRS quota
("Configuring WSMAN Limits", PowerShell team blog, 2010).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
import xmltodict  # type: ignore[import-untyped]
from defusedxml import ElementTree as SafeET
from pypsrp.exceptions import WSManFaultError as PSRPFault
from pypsrp.powershell import PowerShell
from winrm.exceptions import WSManFaultError as WinRMFault
from winrm.protocol import Protocol

from cmproxy.emulator import serve, wsman
from cmproxy.emulator.api import DEFAULT_USER, Emulator
from cmproxy.emulator.settings import EmulatorSettings, Quotas

from ..clients import (
    OTHER,
    OTHER_PASSWORD,
    FakeClock,
    open_pool,
    two_user_emulator,
    winrs_protocol,
)

pytestmark = pytest.mark.e2e

QUOTA_MESSAGE = "This user is allowed a maximum number of {} concurrent shells, which has been"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with two_user_emulator(receive_timeout=3) as emu:
        yield emu


def test_defaults_are_windows_defaults() -> None:
    q = Quotas()
    assert (q.winrs_max_shells_per_user, q.winrs_idle_timeout_ms) == (30, 7_200_000)
    assert (q.plugin_max_shells_per_user, q.plugin_idle_timeout_ms) == (25, 7_200_000)


def test_powershell_shells_beyond_the_plugin_quota_get_the_quota_fault(emu: Emulator) -> None:
    emu.settings.quotas.plugin_max_shells_per_user = 3
    pools = [open_pool(emu) for _ in range(3)]
    with pytest.raises(PSRPFault) as err:
        open_pool(emu)
    assert err.value.code == emu.settings.quotas.plugin_max_shells_fault_code
    assert QUOTA_MESSAGE.format(3) in str(err.value.reason)
    # The quota is per user: another account still gets its shells.
    other = open_pool(emu, OTHER, OTHER_PASSWORD)
    # Closing one frees its slot; the refused Create did not take one.
    pools.pop().close()
    pools.append(open_pool(emu))
    ps = PowerShell(pools[-1])
    ps.add_script("1 + 1")
    assert ps.invoke() == [2]
    for pool in [*pools, other]:
        pool.close()
    assert emu.service is not None and emu.service.shells_of(DEFAULT_USER) == []


def test_cmd_shells_beyond_the_winrs_quota_get_the_quota_fault(emu: Emulator) -> None:
    emu.settings.quotas.winrs_max_shells_per_user = 2
    p = winrs_protocol(emu)
    shells = [p.open_shell(), p.open_shell()]
    with pytest.raises(WinRMFault) as err:
        p.open_shell()
    fault = err.value
    assert fault.wsman_fault_code == wsman.CODE_QUOTA_MAX_SHELLS == 0x803381A5
    assert fault.code == 500
    assert str(fault.fault_code).endswith(":Sender")
    assert str(fault.fault_subcode).endswith(":QuotaLimit")
    assert "maximum number of concurrent shells for this user has been exceeded" in fault.reason
    for shell in shells:
        p.close_shell(shell)
    p.close_shell(p.open_shell())


def test_the_winrs_quota_counts_powershell_shells_too(emu: Emulator) -> None:
    emu.settings.quotas.winrs_max_shells_per_user = 2
    emu.settings.quotas.plugin_max_shells_per_user = 5
    pool = open_pool(emu)
    p = winrs_protocol(emu)
    shell = p.open_shell()
    with pytest.raises(PSRPFault) as err:
        open_pool(emu)
    assert err.value.code == wsman.CODE_QUOTA_MAX_SHELLS
    assert QUOTA_MESSAGE.format(2) in str(err.value.reason)
    with pytest.raises(WinRMFault):
        p.open_shell()
    p.close_shell(shell)
    pool.close()


def test_an_idle_shell_is_deleted_and_frees_its_slot(emu: Emulator) -> None:
    clock = FakeClock()
    emu.config.clock = clock
    emu.settings.quotas.winrs_max_shells_per_user = 1
    emu.settings.quotas.winrs_idle_timeout_ms = 60_000
    p = winrs_protocol(emu)
    idle = p.open_shell()
    clock.now += 59.0  # not idle long enough: still there, still counted
    with pytest.raises(WinRMFault):
        p.open_shell()
    command = p.run_command(idle, "powershell", ["-NoProfile", "-Command", "1"])
    p.cleanup_command(idle, command)
    clock.now += 59.0  # its idle time counts from its last request, not from its Create
    with pytest.raises(WinRMFault):
        p.open_shell()
    clock.now += 1.0  # a minute since its last request: deleted, no longer counted
    fresh = p.open_shell()
    with pytest.raises(WinRMFault) as err:
        p.run_command(idle, "powershell", ["-NoProfile", "-Command", "1"])
    assert err.value.wsman_fault_code == wsman.CODE_SHELL_NOT_FOUND
    p.close_shell(fresh)


def test_an_idle_runspace_pool_is_deleted(emu: Emulator) -> None:
    clock = FakeClock()
    emu.config.clock = clock
    emu.settings.quotas.plugin_max_shells_per_user = 1
    emu.settings.quotas.plugin_idle_timeout_ms = 30_000
    pool = open_pool(emu)
    clock.now += 31.0
    assert emu.service is not None and emu.service.shells_of(DEFAULT_USER) == []
    ps = PowerShell(pool)
    ps.add_script("1")
    with pytest.raises(PSRPFault) as err:
        ps.invoke()
    assert err.value.code == wsman.CODE_SHELL_NOT_FOUND
    open_pool(emu).close()


def test_the_shell_advertises_its_idle_timeout(emu: Emulator) -> None:
    emu.settings.quotas.winrs_idle_timeout_ms = 90_000
    p = winrs_protocol(emu)
    shell = p.open_shell()
    shell_uri = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
    answer = _get(p, shell_uri, {"ShellId": shell})
    assert answer.findtext(f".//{wsman.q('rsp', 'IdleTimeOut')}") == "PT90.000S"
    p.close_shell(shell)


def _get(p: Protocol, uri: str, selectors: dict[str, str]) -> ET.Element:
    """A WSMan Get of `uri` through pywinrm's own connection; the answer's envelope."""
    header = p._get_soap_header(
        resource_uri=uri, action="http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
    )
    if selectors:
        header["env:Header"]["w:SelectorSet"] = {
            "w:Selector": [{"@Name": k, "#text": v} for k, v in selectors.items()]
        }
    header["env:Body"] = {}
    answer = p.send_message(xmltodict.unparse({"env:Envelope": header}))
    root: ET.Element = SafeET.fromstring(answer)
    return root


def test_get_of_the_configuration_shows_the_quotas(emu: Emulator) -> None:
    emu.settings.quotas.winrs_max_shells_per_user = 7
    emu.settings.quotas.plugin_max_shells_per_user = 6
    p = winrs_protocol(emu)
    winrs = _get(p, wsman.RESOURCE_CONFIG_WINRS, {})
    ns = wsman.RESOURCE_CONFIG_WINRS
    node = winrs.find(f".//{{{ns}}}Winrs")
    assert node is not None
    assert node.findtext(f"{{{ns}}}MaxShellsPerUser") == "7"
    assert node.findtext(f"{{{ns}}}IdleTimeout") == "7200000"
    plugin = _get(p, wsman.RESOURCE_CONFIG_PLUGIN, {"Name": "microsoft.powershell"})
    quotas = plugin.find(f".//{{{wsman.NS_PLUGIN_CONFIG}}}Quotas")
    assert quotas is not None
    assert quotas.attrib["MaxShellsPerUser"] == "6"
    assert quotas.attrib["IdleTimeoutms"] == "7200000"


def test_serve_options_set_the_quotas() -> None:
    args = serve.build_parser().parse_args(
        ["serve", "--max-shells-per-user", "10", "--plugin-max-shells-per-user", "8",
         "--idle-timeout-ms", "60000"]
    )  # fmt: skip
    settings = serve.settings_from(args)
    q = settings.quotas
    assert (q.winrs_max_shells_per_user, q.plugin_max_shells_per_user) == (10, 8)
    assert (q.winrs_idle_timeout_ms, q.plugin_idle_timeout_ms) == (60_000, 60_000)
    default = serve.settings_from(serve.build_parser().parse_args(["serve"]))
    assert default.quotas == EmulatorSettings().quotas
    bad = serve.build_parser().parse_args(["serve", "--max-shells-per-user", "-1"])
    with pytest.raises(SystemExit, match="--max-shells-per-user must be 0 or more, got -1"):
        serve.settings_from(bad)
    assert isinstance(args, argparse.Namespace)
