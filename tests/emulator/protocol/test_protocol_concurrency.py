"""Concurrency over the real pypsrp client: pipelines of one runspace pool run on up to
MaxRunspaces engine runspaces at once, different pools run in parallel, and the cost model
serialises writes per site only (different sites in parallel).

Which calls overlap is observed, not timed: the engine's modelled cost (its `sleep`) is
replaced by a meeting point (`Meeting`) where calls that are in their cost at the same moment
meet. Calls that are serialised can never meet there, whatever the machine's load; calls that
run in parallel meet as soon as both are scheduled (the wait is bounded far above that).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pypsrp.powershell import PowerShell, RunspacePool

from cmproxy.emulator.api import Emulator

from ..clients import psrp_wsman
from ..meeting import WAIT, Meeting

pytestmark = pytest.mark.e2e

COST = 0.3


def meet(emu: Emulator, parties: int, wait: float = WAIT) -> Meeting:
    meeting = Meeting(parties, wait)
    assert emu.engine is not None
    emu.engine.sleep = meeting.sleep  # type: ignore[attr-defined]
    return meeting


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(allow_basic=True, allow_unencrypted=True, receive_timeout=30) as emulator:
        emulator.settings.costs.set_cmdlet = COST
        yield emulator


def bootstrap(ps: PowerShell, site: str) -> PowerShell:
    ps.add_cmdlet("Import-Module").add_parameter("Name", "ConfigurationManager").add_statement()
    ps.add_cmdlet("Set-Location").add_parameter("Path", f"{site}:").add_statement()
    return ps


def set_proxy(ps: PowerShell, site: str, server: str) -> PowerShell:
    ps.add_cmdlet("Set-CMSiteSystemServer")
    ps.add_parameter("SiteSystemServerName", server).add_parameter("SiteCode", site)
    ps.add_parameter("EnableProxy", True).add_parameter("ProxyServerName", "proxy.example.com")
    return ps.add_parameter("ProxyServerPort", 3128)


def errors(ps: PowerShell) -> list[str]:
    return [str(e) for e in ps.streams.error]


def write_in_parallel(emu: Emulator, targets: list[tuple[str, str]]) -> None:
    """One pool per target (each bootstrapped first), then all writes at once."""
    pools = [RunspacePool(psrp_wsman(emu)) for _ in targets]
    try:
        for pool, (site, _server) in zip(pools, targets, strict=True):
            pool.open()
            ps = bootstrap(PowerShell(pool), site)
            ps.invoke()
            assert not ps.had_errors, errors(ps)
        barrier = threading.Barrier(len(targets) + 1)
        failures: list[Any] = []

        def write(pool: RunspacePool, site: str, server: str) -> None:
            ps = set_proxy(PowerShell(pool), site, server)
            barrier.wait()
            ps.invoke()
            if ps.had_errors:
                failures.append(errors(ps))

        threads = [
            threading.Thread(target=write, args=(pool, site, server))
            for pool, (site, server) in zip(pools, targets, strict=True)
        ]
        for t in threads:
            t.start()
        barrier.wait()
        for t in threads:
            t.join()
        assert not failures, failures
    finally:
        for pool in pools:
            pool.close()
    for site, server in targets:
        assert emu.state.server_props(site, server)["ProxyName"].value2 == "proxy.example.com"


def test_two_pools_write_to_two_sites_concurrently(emu: Emulator) -> None:
    targets = [("PS1", "cm-ps1-dp01.contoso.com"), ("PS2", "cm-ps2-dp01.contoso.com")]
    meeting = meet(emu, parties=2)
    write_in_parallel(emu, targets)
    assert meeting.met == [True, True]


def test_two_pools_writing_to_one_site_are_serialised(emu: Emulator) -> None:
    targets = [("PS1", "cm-ps1-dp01.contoso.com"), ("PS1", "cm-ps1-dp02.contoso.com")]
    # The site's write lock is held across each write's cost: the second write cannot enter its
    # cost before the first left it, so they never meet (the first waits 2 s, then both go on).
    meeting = meet(emu, parties=2, wait=2.0)
    write_in_parallel(emu, targets)
    assert meeting.met == [False, False]
    assert meeting.most_at_once == 1


def test_pool_runs_max_runspaces_pipelines_at_once(emu: Emulator) -> None:
    """max_runspaces=2: two pipelines at once, each on its own runspace (each bootstrapped in
    its own pipeline); a third waits for a free runspace."""
    emu.settings.costs.set_cmdlet = 0.0
    emu.settings.costs.get_cmdlet = COST
    with RunspacePool(psrp_wsman(emu), max_runspaces=2) as pool:

        def get_site(site: str) -> PowerShell:
            ps = bootstrap(PowerShell(pool), site)
            ps.add_cmdlet("Get-CMSite").add_parameter("SiteCode", site)
            return ps

        meeting = meet(emu, parties=2)
        pipes = [get_site("PS1"), get_site("PS2")]
        for ps in pipes:
            ps.begin_invoke()
        outputs = [ps.end_invoke() for ps in pipes]
        assert [errors(ps) for ps in pipes] == [[], []]
        assert [len(out) for out in outputs] == [1, 1]
        assert meeting.met == [True, True]

        # Three pipelines, two runspaces: at most two are in their Get at once, so a meeting of
        # three never happens (the two wait 2 s, then all three finish).
        meeting = meet(emu, parties=3, wait=2.0)
        pipes = [get_site("PS1"), get_site("PS1"), get_site("PS2")]
        for ps in pipes:
            ps.begin_invoke()
        for ps in pipes:
            ps.end_invoke()
        assert [errors(ps) for ps in pipes] == [[], [], []]
        assert meeting.most_at_once == 2
        assert meeting.met == [False, False, False]


def test_runspaces_of_a_pool_have_their_own_state(emu: Emulator) -> None:
    """A pipeline that lands on a fresh runspace sees no earlier Set-Location."""
    emu.settings.costs.get_cmdlet = COST
    with RunspacePool(psrp_wsman(emu), max_runspaces=2) as pool:
        first = bootstrap(PowerShell(pool), "PS1")
        first.add_cmdlet("Get-CMSite")
        second = PowerShell(pool)
        second.add_cmdlet("Get-Location")
        first.begin_invoke()
        second.begin_invoke()
        first.end_invoke()
        where = second.end_invoke()
        assert not first.had_errors, errors(first)
        assert [str(w) for w in where] != ["PS1:\\"]
        # Sequential pipelines reuse a runspace (one that is free): still answers.
        again = PowerShell(pool)
        again.add_cmdlet("Get-Location")
        assert len(again.invoke()) == 1
