"""Concurrent `Journal.begin_many` calls share fsynced commits (group commit).

The bulk change's lanes begin their batches together; each `begin_many` was its own fsynced
commit, run one after the other behind the journal's lock. Now the calls that arrive while a
commit is written queue, and the next commit records them all, each call with its own
endpoint, hold and unit, in arrival order, so a conflict between two calls of one commit is
the one they would meet one after the other.

Commits are counted by SQLite itself (the connection's trace callback sees every statement the
journal runs). The order of events is the test's, not the scheduler's: the first commit is
held inside SQLite (at a statement of the trace) until the journal's own count of callers says
every other caller has asked; no test waits for a pause or asserts a time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from emulator.meeting import until

from cmproxy import journal as journal_module
from cmproxy._exceptions import ConflictError
from cmproxy.journal import Hold, Journal, JournalEntry, JournalError

ENDPOINT = "https://cm:5986/wsman"
Tx = tuple[list[JournalEntry], list[tuple[str, str, dict[str, Any]]]]
Outcome = list[str | ConflictError] | BaseException


def tx(server: str, size: int = 0) -> Tx:
    """One transaction changing `server` (`size` characters of snapshot, to fill a disk)."""
    entry = JournalEntry(server, "PS1", {"proxy": "old" + "a" * size}, {"proxy": "new"})
    return [entry], [(server, "proxy", {"server": "proxy-new.contoso.com"})]


class Trace:
    """The statements the journal's connection runs (SQLite's trace callback), and a gate
    that holds the first statement starting with `hold_at` until `release` is set."""

    def __init__(self, journal: Journal, hold_at: str = "") -> None:
        self.statements: list[str] = []
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.release = threading.Event()
        journal._db.set_trace_callback(self._seen)

    def _seen(self, statement: str) -> None:
        self.statements.append(statement)
        if self.hold_at and statement.startswith(self.hold_at) and not self.holding.is_set():
            self.holding.set()
            self.release.wait(30)

    @property
    def commits(self) -> int:
        return self.statements.count("COMMIT")


Call = Callable[[Journal], list[str | ConflictError]]


def run_grouped(journal: Journal, trace: Trace, calls: Sequence[Call]) -> list[Outcome]:
    """`calls[0]` starts and its commit is held (at the trace's gate); the other calls then
    ask one by one, in order, while it is held; then the gate opens. Each step waits for the
    journal's own count of callers, so calls[1:] queue for the next commit in that order."""

    def run(call: Call) -> Outcome:
        try:
            return call(journal)
        except BaseException as exc:  # collected for the assertions
            return exc

    asked = journal.claims.requests
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(run, calls[0])]
        until(trace.holding.is_set, "the first commit is held")
        for n, call in enumerate(calls[1:], start=2):
            futures.append(pool.submit(run, call))
            until(_asked(journal, asked + n), f"caller {n} asked")
        trace.release.set()
        return [f.result() for f in futures]


def _asked(journal: Journal, count: int) -> Callable[[], bool]:
    return lambda: journal.claims.requests == count


def begin(*transactions: Tx, hold: Hold | None = None, endpoint: str = ENDPOINT) -> Call:
    return lambda journal: journal.begin_many(endpoint, list(transactions), hold=hold)


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal(tmp_path / "j.sqlite3") as opened:
        yield opened


def _recorded(journal: Journal) -> dict[str, list[str]]:
    """Open transaction id → its servers."""
    return {t.id: [s.server for s in t.servers] for t in journal.open_transactions()}


def _servers(journal: Journal) -> list[str]:
    """The servers of the open transactions, sorted."""
    return sorted(s.server for t in journal.open_transactions() for s in t.servers)


def test_calls_arriving_during_a_commit_share_the_next_one(journal: Journal) -> None:
    callers = 12
    trace = Trace(journal, hold_at="COMMIT")
    calls = [begin(*(tx(f"cm{i}-{k}.contoso.com") for k in range(3))) for i in range(callers)]
    results = run_grouped(journal, trace, calls)

    ids = [r for r in results if isinstance(r, list)]
    assert len(ids) == callers
    assert all(isinstance(i, str) for r in ids for i in r)
    recorded = _recorded(journal)
    for i, claimed in enumerate(ids):
        assert [recorded[tx_id] for tx_id in claimed if isinstance(tx_id, str)] == [
            [f"cm{i}-{k}.contoso.com"] for k in range(3)
        ]
    assert len(recorded) == 3 * callers
    # The first call's commit, then one commit for the eleven that queued behind it.
    assert trace.commits == 2
    assert journal.claims.groups == 2


def test_a_server_two_calls_of_one_commit_name_goes_to_the_first(
    journal: Journal, tmp_path: Path
) -> None:
    trace = Trace(journal, hold_at="COMMIT")
    first = begin(tx("cm-a.contoso.com"), tx("cm-b.contoso.com"))
    second = begin(tx("cm-c.contoso.com"), tx("CM-A.contoso.com"))
    results = run_grouped(journal, trace, [begin(tx("cm-x.contoso.com")), first, second])
    assert trace.commits == 2  # `first` and `second` shared the second commit

    _x, claimed_first, claimed_second = results
    assert isinstance(claimed_first, list) and isinstance(claimed_second, list)
    assert all(isinstance(i, str) for i in claimed_first)
    assert isinstance(claimed_first[0], str)
    c_id, conflict = claimed_second
    assert isinstance(c_id, str)
    assert isinstance(conflict, ConflictError)
    assert conflict.server == "CM-A.contoso.com"
    assert claimed_first[0][:8] in conflict.detail  # the first call's transaction has it

    # One after the other, on a journal of their own, the calls get the same answers.
    with Journal(tmp_path / "sequence.sqlite3") as alone:
        in_sequence = [begin(tx("cm-x.contoso.com"))(alone), first(alone), second(alone)]
    shapes = [[type(r).__name__ for r in rs] for rs in in_sequence]
    assert shapes == [[type(r).__name__ for r in rs] for rs in results if isinstance(rs, list)]
    assert _servers(journal) == [
        "cm-a.contoso.com",
        "cm-b.contoso.com",
        "cm-c.contoso.com",
        "cm-x.contoso.com",
    ]


def test_calls_of_one_commit_keep_their_own_endpoint_hold_and_unit(journal: Journal) -> None:
    other = "https://cm2:5986/wsman"
    hold = journal.hold(ENDPOINT, ["cm-h.contoso.com"])
    unit = journal.begin_unit(ENDPOINT)
    trace = Trace(journal, hold_at="COMMIT")
    calls: list[Call] = [
        begin(tx("cm-x.contoso.com")),
        begin(tx("cm-h.contoso.com")),  # held by the bulk run: a conflict
        begin(tx("cm-h.contoso.com"), hold=hold),  # the hold's own transaction: claims it
        begin(tx("cm-h.contoso.com"), endpoint=other),  # another site: no conflict
        lambda j: j.begin_many(ENDPOINT, [tx("cm-u.contoso.com")], unit=unit),
    ]
    results = run_grouped(journal, trace, calls)
    assert trace.commits == 2

    _x, unheld, holder, elsewhere, in_unit = results
    assert isinstance(unheld, list) and isinstance(unheld[0], ConflictError)
    assert "hold" in unheld[0].detail
    assert isinstance(holder, list) and isinstance(holder[0], str)
    assert isinstance(elsewhere, list) and isinstance(elsewhere[0], str)
    assert isinstance(in_unit, list) and isinstance(in_unit[0], str)
    (opened_unit,) = journal.open_units()
    assert [member[0] for member in opened_unit.members] == [in_unit[0]]
    assert {t.endpoint for t in journal.open_transactions()} == {ENDPOINT, other}


def test_a_commit_that_fails_fails_every_call_of_it_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SQLite error: another connection holds the write lock (SQLITE_BUSY once the
    journal's busy wait, shortened here, runs out)."""
    monkeypatch.setattr(journal_module, "_BUSY_TIMEOUT_S", 0.2)
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        trace = Trace(journal, hold_at="BEGIN IMMEDIATE")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            results = run_grouped(
                journal, trace, [begin(tx(f"cm{i}.contoso.com")) for i in range(5)]
            )
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert journal.claims.groups == 2  # the first call alone, then the four others
        assert all(isinstance(r, JournalError) for r in results)
        assert len({id(r) for r in results}) == len(results)  # each caller its own exception
        assert all(str(path) in str(r) and "not recorded" in str(r) for r in results)
        assert trace.commits == 0
        assert journal.open_transactions() == []
        # The journal works again once the lock is free.
        assert isinstance(journal.begin(ENDPOINT, *tx("cm0.contoso.com")), str)


def test_a_commit_too_big_for_the_disk_fails_every_call_of_it(
    mount_tmpfs: Callable[[str, str], Path],
) -> None:
    """Each call alone fits (shown on a disk of the same size); the five together do not:
    their shared commit fails at its COMMIT (a WAL journal writes its pages then) and each of
    the five gets the full-disk `JournalError`; none of them is recorded. (Two 384 KiB tmpfs:
    needs CAP_SYS_ADMIN, skipped without it.)"""
    with Journal(mount_tmpfs("alone", "384k") / "j.sqlite3") as alone:
        assert isinstance(alone.begin(ENDPOINT, *tx("cm0.contoso.com", size=60_000)), str)
    path = mount_tmpfs("mnt", "384k") / "j.sqlite3"
    with Journal(path) as journal:
        trace = Trace(journal, hold_at="COMMIT")
        calls = [begin(tx("cm-first.contoso.com"))]
        calls += [begin(tx(f"cm{i}.contoso.com", size=60_000)) for i in range(5)]
        first, *grouped = run_grouped(journal, trace, calls)
        assert isinstance(first, list)
        assert all(isinstance(r, JournalError) and "full" in str(r) for r in grouped)
        assert trace.commits == 2  # the second, the five's, reached its COMMIT and failed there
        assert _servers(journal) == ["cm-first.contoso.com"]


def test_one_calls_sqlite_error_is_its_own(journal: Journal) -> None:
    """A transaction naming one server twice breaks the journal's key: alone, that call gets a
    `JournalError` and nothing of it is recorded; in a shared commit, the same, and the other
    calls of the commit are recorded."""
    twice = ([*tx("cm-d.contoso.com")[0], *tx("cm-d.contoso.com")[0]], tx("cm-d.contoso.com")[1])
    with pytest.raises(JournalError):
        journal.begin_many(ENDPOINT, [tx("cm-e.contoso.com"), twice])
    assert journal.open_transactions() == []

    trace = Trace(journal, hold_at="COMMIT")
    calls = [begin(tx("cm-x.contoso.com")), begin(tx("cm-y.contoso.com"))]
    calls += [begin(tx("cm-e.contoso.com"), twice), begin(tx("cm-z.contoso.com"))]
    results = run_grouped(journal, trace, calls)
    assert trace.commits == 2
    assert isinstance(results[2], JournalError)
    assert [isinstance(r, list) for r in results] == [True, True, False, True]
    assert _servers(journal) == [
        "cm-x.contoso.com",
        "cm-y.contoso.com",
        "cm-z.contoso.com",
    ]


def test_a_lone_call_is_one_commit(journal: Journal) -> None:
    trace = Trace(journal)
    claimed = journal.begin_many(ENDPOINT, [tx("cm-a.contoso.com"), tx("cm-a.contoso.com")])
    assert isinstance(claimed[0], str)
    assert isinstance(claimed[1], ConflictError)  # within one call, as before
    assert trace.commits == 1
    assert (journal.claims.groups, journal.claims.requests) == (1, 1)
    assert _servers(journal) == ["cm-a.contoso.com"]
