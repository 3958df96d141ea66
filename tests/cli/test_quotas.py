"""Three `cmproxy apply` processes under one account against an endpoint with a shell quota.

The emulator enforces the Microsoft.PowerShell plug-in's MaxShellsPerUser (lowered from
Windows' 25 to 10 to keep the test small; learn.microsoft.com/windows/win32/winrm/quotas and
the plug-in's registered Quotas). Each process would open up to 12 runspace pools (one shell
each), so together they ask for more shells than the account may hold: without the SDK's
per-account cap and its handling of the quota fault, some of their steps fail with
"This user is allowed a maximum number of 10 concurrent shells". With them, every process
completes, and none of them leaves a shell behind.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cmproxy.emulator.api import Emulator
from cmproxy.emulator.settings import EmulatorSettings

from .conftest import cli_env, proxy_view

pytestmark = pytest.mark.e2e

QUOTA = 10

#: Disjoint servers per process (one process per team, say), all of the demo hierarchy.
BATCHES = [
    [f"cm-ps1-{name}.contoso.com" for name in ("mp01", "mp02", "dp01", "dp02", "fsp01", "sup01")],
    [f"cm-ps2-{name}.contoso.com" for name in ("mp01", "dp01", "dp03", "dp04", "dp05", "dp06")],
    ["cm-cas-rp01.contoso.com", "cm-ss1-dp01.contoso.com", "cm-ps1-dp03.contoso.com"],
]


def desired(servers: list[str]) -> str:
    lines = ["version: 1", "servers:"]
    for server in servers:
        lines += [f"  {server}:", "    proxy: {server: proxy9.contoso.com, port: 3128}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    settings = EmulatorSettings()
    settings.quotas.plugin_max_shells_per_user = QUOTA
    # A provider's pace (seconds): pools are held while the module imports and the cmdlets
    # run, so the three processes' pools are open at the same time, as on a real site.
    settings.costs.module_import = 0.5
    settings.costs.get_cmdlet = 0.05
    settings.costs.set_cmdlet = 0.5
    with Emulator(
        allow_basic=True, seed="demo", https=True, receive_timeout=3.0, settings=settings
    ) as emu:
        yield emu


def _wait_for(condition: Callable[[], bool], procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            pytest.fail("the first processes did not take the account's shells")
        time.sleep(0.05)


@pytest.mark.parametrize(
    "cap",
    [
        pytest.param(None, id="default-cap-above-the-quota"),  # 20: quota faults are handled
        pytest.param(8, id="cap-below-the-quota"),  # the endpoint never refuses a shell
    ],
)
def test_three_processes_under_one_account_complete_within_the_quota(
    emu: Emulator, tmp_path: Path, cap: int | None
) -> None:
    assert emu.service is not None
    service = emu.service
    full = min(QUOTA, cap or QUOTA)
    procs: list[subprocess.Popen[str]] = []
    servers_of: dict[int, str] = {}
    for i, servers in enumerate(BATCHES):
        if i == len(BATCHES) - 1:
            # The last one starts while the first two hold the account's every shell.
            _wait_for(lambda: len(service.shells_of(emu.username)) >= full, procs)
        path = tmp_path / f"batch{i}.yaml"
        path.write_text(desired(servers), encoding="utf-8")
        env = cli_env(emu, tmp_path)
        env["CMPROXY_JOURNAL"] = str(tmp_path / f"journal{i}.sqlite3")
        env["CMPROXY_STATE_DIR"] = str(tmp_path / "state")  # shared by the three processes
        if cap is not None:
            env["CMPROXY_ACCOUNT_MAX_SHELLS"] = str(cap)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cmproxy.cli", "apply", "-f", str(path), "--yes"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
            )
        )
        servers_of[id(procs[-1])] = path.name
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, f"{servers_of[id(proc)]}: exit {proc.returncode}\n{out}\n{err}"
    view = proxy_view(emu)
    for servers in BATCHES:
        for server in servers:
            assert view[f"{server}|proxy"][:2] == ("proxy9.contoso.com", 3128), server
    # Every process closed its pools: the account holds no shell any more.
    assert service.shells_of(emu.username) == []
    if cap is None:
        assert service.quota_refusals > 0  # the quota was met, and handled
    else:
        assert service.quota_refusals == 0  # the processes shared `cap` shells among them
