"""Several processes opening one journal at once: each waits its turn, none fails.

Two `cmproxy` commands started together (two admins, a playbook's forks, `recover` and
`recover --json` side by side) open the same journal file. SQLite answers a lock it cannot
take with SQLITE_BUSY; `sqlite3.connect(timeout=...)` installs the busy handler that waits,
but changing the journal mode is not covered by it: "PRAGMA journal_mode=WAL" on a file
another connection has open returns SQLITE_BUSY at once (https://www.sqlite.org/wal.html,
"Activating And Configuring WAL Mode": the change needs an exclusive lock;
https://www.sqlite.org/c3ref/busy_handler.html: the handler is not called in every case).
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from cmproxy.journal import Journal, JournalEntry

PROCESSES = 4
ROUNDS = 25


def _open_read_close(path: str, barrier: multiprocessing.synchronize.Barrier) -> str:
    """What `cmproxy recover` does with the journal: open it, read what is open, close."""
    barrier.wait()
    try:
        journal = Journal(path)
        try:
            journal.open_transactions()
        finally:
            journal.close()
    except Exception as error:  # the failure is the result; the parent asserts on it
        return f"{type(error).__name__}: {error}"
    return ""


def test_processes_opening_a_new_journal_at_once_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    failures: list[str] = []
    with context.Pool(PROCESSES) as pool:
        manager = context.Manager()
        with manager:
            for round_no in range(ROUNDS):
                path = str(tmp_path / f"journal-{round_no}.sqlite3")
                barrier = manager.Barrier(PROCESSES)
                results = pool.starmap(_open_read_close, [(path, barrier)] * PROCESSES)
                failures += [r for r in results if r]
    assert failures == []


def test_a_journal_written_while_others_open_it_keeps_every_transaction(tmp_path: Path) -> None:
    """Opens racing with writes: each writer's transaction is recorded, none is lost."""
    context = multiprocessing.get_context("fork")
    with context.Pool(PROCESSES) as pool, context.Manager() as manager:
        for round_no in range(ROUNDS // 5):
            path = str(tmp_path / f"journal-{round_no}.sqlite3")
            barrier = manager.Barrier(PROCESSES)
            args = [(path, barrier, i) for i in range(PROCESSES)]
            results = pool.starmap(_begin_one, args)
            assert [r for r in results if not r.startswith("tx ")] == []
            with Journal(path) as journal:
                opened = {t.id for t in journal.open_transactions()}
            assert opened == {r.removeprefix("tx ") for r in results}


def _begin_one(path: str, barrier: multiprocessing.synchronize.Barrier, index: int) -> str:
    barrier.wait()
    entry = JournalEntry(f"cm-{index}.contoso.com", "PS1", {"proxy": "old"}, {"proxy": "new"})
    change = (entry.server, "proxy", {"server": "proxy-new.contoso.com"})
    try:
        with Journal(path) as journal:
            return "tx " + journal.begin("https://cm:5986/wsman", [entry], [change])
    except Exception as error:
        return f"{type(error).__name__}: {error}"
