"""Issue "Transactions", end to end: the client process killed (SIGKILL) at random points of
a three-step change, 50 times; `recover` then leaves the server verified in its old or its
new state, and the journal holds no open entry.

The client is forked from the test process (cmproxy already imported, so a run costs a
connection and a transaction, not an interpreter start) and killed by the parent.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmproxy import (
    DesiredState,
    Journal,
    ProxyRequest,
    ProxySettings,
    ServerSnapshot,
    Session,
    SupFlagsRequest,
    recover,
    run_transaction,
)
from cmproxy.emulator.api import Emulator
from cmproxy.retry import RetryPolicy

from .conftest import (
    ACCOUNT,
    SERVER,
    fork_client,
    info_for,
    kill_client,
    oracle,
    skip_idle_timeouts,
)

RUNS_PER_TRANSPORT = 25
PASSWORD = "Kill-P@ss'w0rd"


def _desired(run: int) -> DesiredState:
    """Alternate between two target states, each a three-step change with a new account."""
    proxy = ProxySettings(
        server=f"proxy-{'ab'[run % 2]}.contoso.com",
        port=3128 + run % 2,
        account=f"{ACCOUNT}-kill{run}",
        password=PASSWORD,
    )
    on = run % 2 == 0
    return DesiredState(
        proxies=[ProxyRequest(SERVER, proxy)],
        sup_flags=[SupFlagsRequest(SERVER, use_proxy=on, use_proxy_for_adr=on)],
    )


def _start_client(emu: Emulator, transport: str, journal_path: Path, run: int) -> tuple[int, int]:
    """Fork a client running transaction `run`; return (its pid, the pipe it reports on) once
    it said it is connected."""
    return fork_client(
        info_for(emu, transport),
        lambda session: run_transaction(
            session, _desired(run), journal=Journal(journal_path), policy=RetryPolicy.for_tests()
        ),
    )


def _uninterrupted(emu: Emulator, transport: str, journal_path: Path, run: int) -> float:
    """Seconds one transaction takes in a forked client, from "ready" to "done" (no kill)."""
    pid, reports = _start_client(emu, transport, journal_path, run)
    start = time.monotonic()
    assert os.read(reports, 1) == b"d", "the transaction did not finish"
    took = time.monotonic() - start
    os.waitpid(pid, 0)
    os.close(reports)
    return took


@pytest.fixture(scope="module", params=["psrp", "winrm"])
def emulator(request: pytest.FixtureRequest) -> Iterator[tuple[Emulator, str]]:
    with Emulator(seed="demo", receive_timeout=3.0) as emu:
        yield emu, str(request.param)


def _expected_after(before: ServerSnapshot, run: int) -> ServerSnapshot:
    desired = _desired(run)
    flags = desired.sup_flags[0]
    assert before.sup is not None
    sup = type(before.sup)(bool(flags.use_proxy), bool(flags.use_proxy_for_adr))
    return ServerSnapshot(desired.proxies[0].proxy.replace(password=None), sup)


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_sigkill_at_random_points_then_recover(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    emu, transport = emulator
    rng = random.Random(f"cmproxy-{transport}")
    journal_path = tmp_path / "journal.sqlite3"
    seen = {"old": 0, "new": 0}
    # Kill points spread over one uninterrupted transaction and a bit after it, however fast
    # this machine and the emulator run it.
    window = 1.3 * _uninterrupted(emu, transport, journal_path, RUNS_PER_TRANSPORT)
    for run in range(RUNS_PER_TRANSPORT):
        before = oracle(emu)
        after = _expected_after(before, run)
        pid, reports = _start_client(emu, transport, journal_path, run)
        time.sleep(rng.uniform(0.0, window))
        kill_client(pid, reports)
        skip_idle_timeouts(emu)

        with Session(info_for(emu, transport)) as session, Journal(journal_path) as journal:
            outcomes = recover(session, journal, policy=RetryPolicy.for_tests())
            assert journal.open_transactions() == []
        now = oracle(emu)
        assert now in (before, after), f"run {run}: {now} is neither {before} nor {after}"
        for done in outcomes:
            assert len(done.servers) == 1
            expected = after if done.status == "committed" else before
            assert now == expected, f"run {run}: recovery said {done.status}, server is {now}"
        seen["new" if now == after else "old"] += 1
    # The random kill points covered both endings.
    assert seen["old"] > 0 and seen["new"] > 0, seen
