"""Issue 15, points 1-2: `recover` while the killed client's pipeline is still writing.

When a client dies, its pipeline keeps running on the server: a PSRP pipeline belongs to the
runspace pool, which outlives its client until it is closed or its shell's idle timeout deletes
it (MS-PSRP 3.1.1.1.1/3.2.1.1.1: the pool is keyed by its WSMV shell, not by a connection), and
a WinRS command is a process that runs until it ends or is signalled (MS-WSMV 3.1.4.11). With a
realistic cost per write (0.25-0.4 s, `EmulatorSettings.costs.set_cmdlet`) a killed client's
batch is still landing writes when `recover` starts at once, so `recover` must first make the
site quiet (find the orphaned shells by WSMan Enumerate, MS-WSMV 3.1.4.8.2, and delete them)
and only then read and decide.

Each case forks a client (cmproxy already imported), lets it run a two-server change, SIGKILLs
it (at a seeded random point, or at the first write of a change kind), runs `recover` at once,
then waits until nothing of that client runs on the emulator any more ("the site once quiet")
and compares every server with what `recover` reported. Kills run in two lanes side by side
(sites PS1 and PS2, one account each, separate journals): a site serialises its writes, two
sites do not wait for each other, so the 50 seeded points take half the time.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from cmproxy import (
    DesiredState,
    Journal,
    ProxyRequest,
    ProxySettings,
    ServerSnapshot,
    Session,
    SupFlagsRequest,
    apply_bulk,
    recover,
    run_transaction,
)
from cmproxy.connection import ConnectionInfo
from cmproxy.emulator.api import Emulator
from cmproxy.emulator.cmd_shell import CmdShell
from cmproxy.emulator.psrp_shell import PSRPShell
from cmproxy.retry import RetryPolicy

from .conftest import (
    ACCOUNT,
    fork_client,
    info_for,
    kill_client,
    oracle,
    skip_idle_timeouts,
)

PASSWORD = "Orphan-P@ss'w0rd"
USERS = {"CONTOSO\\cmadmin": "Lane-1-P@ss", "CONTOSO\\cmadmin2": "Lane-2-P@ss"}
#: Seeded random kill points per transport: the bar's 50 over PSRP; WinRS, whose every step
#: is a new process on the server, 16.
KILLS = {"psrp": 50, "winrm": 16}


@attrs.frozen
class Lane:
    """One site's two SUPs, written by one account with its own journal."""

    site: str
    servers: tuple[str, str]
    user: str
    journal: Path

    def info(self, emu: Emulator, transport: str) -> ConnectionInfo:
        return attrs.evolve(
            info_for(emu, transport),
            site_code=self.site,
            username=self.user,
            password=USERS[self.user],
        )

    def desired(self, run: int, *, on: bool | None = None) -> DesiredState:
        """Run `run`'s target: both SUPs to proxy A or B with a new account and their SUP
        options on (even runs), or proxy and options off (odd runs)."""
        on = run % 2 == 0 if on is None else on
        proxy = ProxySettings(
            server=f"proxy-{'ab'[run % 4 // 2]}.contoso.com",
            port=3128 + run % 4 // 2,
            account=f"{ACCOUNT}-{self.site.lower()}-{run}",
            password=PASSWORD,
        )
        return DesiredState(
            proxies=[
                ProxyRequest(s, proxy if on else ProxySettings.disabled()) for s in self.servers
            ],
            sup_flags=[
                SupFlagsRequest(s, use_proxy=on, use_proxy_for_adr=on) for s in self.servers
            ],
        )

    def state(self, emu: Emulator) -> dict[str, ServerSnapshot]:
        return {s: oracle(emu, s, self.site) for s in self.servers}

    def after(
        self, before: dict[str, ServerSnapshot], want: DesiredState
    ) -> dict[str, ServerSnapshot]:
        after = {}
        for request, flags in zip(want.proxies, want.sup_flags, strict=True):
            sup = before[request.server].sup
            assert sup is not None
            after[request.server] = ServerSnapshot(
                request.proxy.replace(password=None),
                type(sup)(bool(flags.use_proxy), bool(flags.use_proxy_for_adr)),
            )
        return after

    def running(self, emu: Emulator) -> bool:
        """Whether a pipeline or process of this lane's account still runs on the emulator
        (a test-side look at its shells: running from its start until its results are in)."""
        service = emu.service
        assert service is not None
        mine = {sid for sid, held in list(service._held.items()) if held.owner == self.user.lower()}
        for sid, shell in list(service.shells.items()):
            if sid not in mine:
                continue
            if isinstance(shell, PSRPShell):
                work: list[Any] = list(shell.pipes.values())
            elif isinstance(shell, CmdShell):
                work = list(shell.procs.values())
            else:
                continue
            if any(p.started and not p.finished for p in work):
                return True
        return False

    def wait_quiet(self, emu: Emulator, bound: float = 60.0) -> None:
        end = time.monotonic() + bound
        while self.running(emu):
            assert time.monotonic() < end, "the emulator never became quiet"
            time.sleep(0.05)


def lanes(tmp_path: Path) -> list[Lane]:
    users = list(USERS)
    return [
        Lane("PS2", ("cm-ps2-sup01.contoso.com", "cm-ps2-sup02.contoso.com"), users[0],
             tmp_path / "ps2.sqlite3"),
        Lane("PS1", ("cm-ps1-sup01.contoso.com", "cm-ps1-sup02.contoso.com"), users[1],
             tmp_path / "ps1.sqlite3"),
    ]  # fmt: skip


def start_client(emu: Emulator, transport: str, lane: Lane, want: DesiredState) -> tuple[int, int]:
    """Fork a client running `want`; (its pid, the pipe it reports on) once it connected."""
    return fork_client(
        lane.info(emu, transport),
        lambda session: run_transaction(
            session, want, journal=Journal(lane.journal), policy=RetryPolicy.for_tests()
        ),
    )


def new_tally() -> dict[str, Any]:
    return {"mixed": 0, "wrong report": 0, "left open": 0, "new": 0, "old": 0, "detail": []}


def recover_and_check(  # noqa: PLR0917 - one call shape, used three times
    emu: Emulator,
    transport: str,
    lane: Lane,
    before: dict[str, ServerSnapshot],
    after: dict[str, ServerSnapshot],
    label: str,
    tally: dict[str, Any],
) -> None:
    """`recover` at once; then, the site once quiet, every server is old or new and is what
    `recover` said. Counts mixed servers and wrong reports in `tally` (callers assert)."""
    with Session(lane.info(emu, transport)) as session, Journal(lane.journal) as journal:
        outcomes = recover(session, journal, policy=RetryPolicy.for_tests())
        left_open = journal.open_transactions()
    lane.wait_quiet(emu)
    now = lane.state(emu)
    reported = {s.server.lower(): done.status for done in outcomes for s in done.servers}
    for name in lane.servers:
        if now[name] not in (before[name], after[name]):
            tally["mixed"] += 1
            tally["detail"].append(f"{label}: {name} mixed: {now[name]}")
            continue
        status = reported.get(name.lower())
        if status is None:
            continue  # no open transaction: the client had finished (or had not begun)
        if now[name] != (after[name] if status == "committed" else before[name]):
            tally["wrong report"] += 1
            shown = "new" if now[name] == after[name] else "old"
            tally["detail"].append(f"{label}: {name} reported {status}, site shows {shown}")
    if left_open:
        tally["left open"] += 1
    tally["new" if all(now[n] == after[n] for n in lane.servers) else "old"] += 1


def expire_idle_shells(emu: Emulator) -> None:
    """Let the idle timeouts pass (the clock jumps): shells a killed client left behind (and
    recovery did not need to stop) must not exhaust the accounts' shell quotas over many runs."""
    skip_idle_timeouts(emu)
    assert emu.service is not None
    emu.service.expire_idle()


@pytest.fixture(scope="module", params=["psrp", "winrm"])
def emulator(request: pytest.FixtureRequest) -> Iterator[tuple[Emulator, str]]:
    with Emulator(seed="demo", receive_timeout=3.0, users=USERS) as emu:
        # A killed client also leaves the pools it opened but sent no write through (recovery
        # stops only the shells its journal names): raised quotas (an administrator's
        # setting) keep those idle leftovers from refusing later runs a shell.
        quotas = emu.settings.quotas
        quotas.plugin_max_shells = quotas.plugin_max_shells_per_user = 1000
        quotas.winrs_max_shells_per_user = 1000
        yield emu, str(request.param)


def side_by_side(work: Callable[[Lane], None], all_lanes: list[Lane]) -> None:
    """Run `work` for every lane at once; re-raise the first failure."""
    errors: list[BaseException] = []

    def one(lane: Lane) -> None:
        try:
            work(lane)
        except BaseException as error:  # handed to the test thread
            errors.append(error)

    threads = [threading.Thread(target=one, args=(lane,)) for lane in all_lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def costs(emu: Emulator, rng: random.Random) -> None:
    emu.settings.costs.set_cmdlet = rng.uniform(0.25, 0.4)


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_sigkill_at_50_seeded_points_with_write_costs(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    """The bar: 50 seeded kill points (PSRP), costs 0.25-0.4 s per write, recovery at once:
    0 mixed servers, and the report equals the site once quiet, server by server."""
    emu, transport = emulator
    all_lanes = lanes(tmp_path)
    tallies = {lane.site: new_tally() for lane in all_lanes}

    def work(lane: Lane) -> None:
        rng = random.Random(f"cmproxy-orphans-{transport}-{lane.site}")
        tally = tallies[lane.site]
        # One uninterrupted run measures the window the kill points are spread over.
        costs(emu, rng)
        pid, reports = start_client(emu, transport, lane, lane.desired(0))
        start = time.monotonic()
        assert os.read(reports, 1) == b"d", "the uninterrupted run did not finish"
        window = 1.2 * (time.monotonic() - start)
        os.waitpid(pid, 0)
        os.close(reports)
        for run in range(1, KILLS[transport] // len(all_lanes) + 1):
            costs(emu, rng)
            before = lane.state(emu)
            want = lane.desired(run)
            pid, reports = start_client(emu, transport, lane, want)
            time.sleep(rng.uniform(0.0, window))
            kill_client(pid, reports)
            recover_and_check(
                emu, transport, lane, before, lane.after(before, want), f"run {run}", tally
            )

    try:
        side_by_side(work, all_lanes)
    finally:
        expire_idle_shells(emu)
    for site, tally in tallies.items():
        print(transport, site, {k: v for k, v in tally.items() if k != "detail"})
        assert (tally["mixed"], tally["wrong report"], tally["left open"]) == (0, 0, 0), tally
    assert sum(t["old"] for t in tallies.values()) > 0
    assert sum(t["new"] for t in tallies.values()) > 0


def _first_write(
    emu: Emulator, lane: Lane, kind: str, before: dict[str, ServerSnapshot], bound: float = 30.0
) -> None:
    """Return as soon as the first write of `kind` landed on the emulator."""
    accounts = {a.username.lower() for a in emu.state.accounts(lane.site)}

    def landed() -> bool:
        if kind == "create account":
            return any(a.username.lower() not in accounts for a in emu.state.accounts(lane.site))
        now = lane.state(emu)
        if kind == "set server proxy":
            return any(now[s].proxy != before[s].proxy for s in lane.servers)
        return any(now[s].sup != before[s].sup for s in lane.servers)

    end = time.monotonic() + bound
    while not landed():
        assert time.monotonic() < end, f"no {kind} write was seen"
        time.sleep(0.005)


#: (change kind, whether the run turns the proxy and SUP options on): the first write of each
#: kind, in either direction. Turning off writes the SUP options before the proxy (R11).
KINDS = [
    ("create account", True),
    ("set server proxy", True),
    ("set SUP proxy options", True),
    ("set SUP proxy options", False),
    ("set server proxy", False),
]


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_sigkill_at_the_first_write_of_every_change_kind(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    emu, transport = emulator
    lane = lanes(tmp_path)[0]
    emu.settings.costs.set_cmdlet = 0.3
    tally = new_tally()
    try:
        for run, (kind, on) in enumerate(KINDS, start=100):
            want = lane.desired(run, on=on)
            # The servers in the opposite state first, uninterrupted.
            pid, reports = start_client(emu, transport, lane, lane.desired(run + 50, on=not on))
            assert os.read(reports, 1) == b"d"
            os.waitpid(pid, 0)
            os.close(reports)
            before = lane.state(emu)
            pid, reports = start_client(emu, transport, lane, want)
            _first_write(emu, lane, kind, before)
            kill_client(pid, reports)
            recover_and_check(
                emu, transport, lane, before, lane.after(before, want), f"first {kind}", tally
            )
    finally:
        expire_idle_shells(emu)
    assert (tally["mixed"], tally["wrong report"], tally["left open"]) == (0, 0, 0), tally


def before_is_on(before: dict[str, ServerSnapshot]) -> bool:
    return all(s.proxy.enabled and s.sup is not None and s.sup.use_proxy for s in before.values())


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_an_orphan_that_cannot_be_stopped_leaves_the_journal_open(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    """A killed client's shell the endpoint refuses to delete: `recover` decides nothing,
    says why (status `not quiet`) and leaves the transaction open; once the shell can be
    stopped, the next `recover` finishes it."""
    emu, transport = emulator
    lane = lanes(tmp_path)[0]
    emu.settings.costs.set_cmdlet = 0.4
    before = lane.state(emu)
    want = lane.desired(201, on=not before_is_on(before))
    pid, reports = start_client(emu, transport, lane, want)
    _first_write(
        emu,
        lane,
        "set server proxy" if not before_is_on(before) else "set SUP proxy options",
        before,
    )
    kill_client(pid, reports)
    emu.settings.faults.refuse_shell_delete = True
    try:
        with Session(lane.info(emu, transport)) as session, Journal(lane.journal) as journal:
            outcomes = recover(session, journal, policy=RetryPolicy.for_tests(), quiet_timeout=1.0)
            assert [o.status for o in outcomes] == ["not quiet"]
            assert "could not be stopped" in outcomes[0].detail
            assert len(journal.open_transactions()) == 1
    finally:
        emu.settings.faults.refuse_shell_delete = False
    tally = new_tally()
    recover_and_check(emu, transport, lane, before, lane.after(before, want), "stuck", tally)
    expire_idle_shells(emu)
    assert (tally["mixed"], tally["wrong report"], tally["left open"]) == (0, 0, 0), tally


BULK = tuple(f"cm-ps2-{n}.contoso.com" for n in ("dp01", "dp03", "dp04", "dp05", "dp06", "mp01"))


def _start_bulk(info: ConnectionInfo, journal: Path, want: DesiredState) -> tuple[int, int]:
    """Fork a client applying `want` all-or-nothing in batches of two, one site at a time."""
    return fork_client(
        info,
        lambda session: apply_bulk(
            [session],
            want,
            journal=Journal(journal),
            all_or_nothing=True,
            batch_size=2,
            per_site=1,
            policy=RetryPolicy.for_tests(),
            progress=False,
        ),
    )


def _bulk_state(emu: Emulator) -> dict[str, ServerSnapshot]:
    return {s: oracle(emu, s, "PS2") for s in BULK}


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_all_or_nothing_bulk_killed_midway_ends_all_old_or_all_new(
    emulator: tuple[Emulator, str], tmp_path: Path
) -> None:
    """Six servers in batches of two (three write pipelines), killed at seeded points while
    they land, `recover` at once: every server old, or every server new, as reported."""
    emu, transport = emulator
    lane = lanes(tmp_path)[0]
    rng = random.Random(f"cmproxy-bulk-{transport}")
    emu.settings.costs.set_cmdlet = 0.3
    endings: list[str] = []
    try:
        for run in range(4):
            proxy = ProxySettings(server=f"bulk-{run}.contoso.com", port=8080 + run)
            want = DesiredState(proxies=[ProxyRequest(s, proxy) for s in BULK])
            before = _bulk_state(emu)
            after = {s: attrs.evolve(before[s], proxy=proxy) for s in BULK}
            pid, read_end = _start_bulk(lane.info(emu, transport), lane.journal, want)
            # Between the first write landing and the last one.
            end = time.monotonic() + 30
            while all(now == before[s] for s, now in _bulk_state(emu).items()):
                assert time.monotonic() < end, "the bulk run wrote nothing"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.3 * len(BULK)))
            kill_client(pid, read_end)
            with Session(lane.info(emu, transport)) as session, Journal(lane.journal) as journal:
                outcomes = recover(session, journal, policy=RetryPolicy.for_tests())
                assert journal.open_units() == []
            lane.wait_quiet(emu)
            now = _bulk_state(emu)
            if now == before:
                endings.append("old")
            elif now == after:
                endings.append("new")
            else:
                mixed = sorted(s for s in BULK if now[s] == after[s])
                pytest.fail(f"run {run}: new on {mixed} only, old elsewhere")
            reported = {s.server.lower(): o.status for o in outcomes for s in o.servers}
            for server, status in reported.items():
                expected = after if status == "committed" else before
                assert now[server] == expected[server], (run, server, status)
    finally:
        expire_idle_shells(emu)
    assert endings, endings
