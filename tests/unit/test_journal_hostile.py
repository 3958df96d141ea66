"""A damaged, foreign or unwritable journal: one clear `JournalError`, never a silent loss.

Each case is the SQLite behaviour a real journal meets: a newer schema (`PRAGMA user_version`,
https://www.sqlite.org/pragma.html#pragma_user_version), a copy without its `-wal` file (the
WAL holds commits not yet checkpointed into the main file, https://www.sqlite.org/wal.html),
a full disk (SQLITE_FULL, here from a small tmpfs) and a read-only file system (SQLITE_READONLY /
SQLITE_CANTOPEN, a read-only remount: chmod does not stop root, who runs these tests).
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cmproxy import CMProxyError
from cmproxy import journal as journal_module
from cmproxy.journal import SCHEMA_VERSION, Journal, JournalEntry, JournalError

ENTRY = JournalEntry("cm-a.contoso.com", "PS1", {"proxy": "old"}, {"proxy": "new"})
CHANGE = ("cm-a.contoso.com", "proxy", {"server": "proxy-new.contoso.com"})

#: The tables a journal had before it carried a schema version (user_version 0).
_UNVERSIONED = """
CREATE TABLE transactions (id TEXT PRIMARY KEY, created REAL NOT NULL, endpoint TEXT NOT NULL,
    status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE TABLE servers (tx_id TEXT NOT NULL REFERENCES transactions(id), server TEXT NOT NULL,
    site_code TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL,
    PRIMARY KEY (tx_id, server));
CREATE INDEX servers_by_name ON servers (server);
CREATE TABLE changes (tx_id TEXT NOT NULL REFERENCES transactions(id), seq INTEGER NOT NULL,
    target TEXT NOT NULL, kind TEXT NOT NULL, change TEXT NOT NULL, state TEXT NOT NULL,
    updated REAL NOT NULL, PRIMARY KEY (tx_id, seq));
INSERT INTO transactions VALUES ('t-old', 1.0, 'https://cm:5986/wsman', 'open', '');
INSERT INTO servers VALUES ('t-old', 'cm-a.contoso.com', 'PS1', '{}', '{}');
"""


def _user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


# -- schema version ---------------------------------------------------------------------------


def test_a_new_journal_carries_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    assert _user_version(path) == SCHEMA_VERSION >= 1


def test_a_newer_schema_is_refused_naming_file_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    db.close()
    with pytest.raises(JournalError) as caught:
        Journal(path)
    message = str(caught.value)
    assert isinstance(caught.value, CMProxyError)
    assert str(path) in message
    assert f"version {SCHEMA_VERSION + 7}" in message
    assert f"version {SCHEMA_VERSION}" in message.replace(f"version {SCHEMA_VERSION + 7}", "")
    assert _user_version(path) == SCHEMA_VERSION + 7  # left as it was


def test_an_unversioned_journal_is_migrated_and_keeps_its_transactions(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_UNVERSIONED)
    db.close()
    with Journal(path) as journal:
        assert [t.id for t in journal.open_transactions()] == ["t-old"]
    assert _user_version(path) == SCHEMA_VERSION


def test_a_later_migration_is_one_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """How a schema change is added: append a step; a journal at the previous version gets it
    on open, in one transaction, and keeps its rows."""
    path = tmp_path / "j.sqlite3"
    with Journal(path) as journal:
        tx_id = journal.begin("https://cm:5986/wsman", [ENTRY], [CHANGE])

    def add_notes(db: sqlite3.Connection) -> None:
        db.execute("CREATE TABLE notes (tx_id TEXT NOT NULL, note TEXT NOT NULL)")

    steps = [*journal_module._MIGRATIONS, add_notes]
    monkeypatch.setattr(journal_module, "_MIGRATIONS", steps)
    monkeypatch.setattr(journal_module, "SCHEMA_VERSION", len(steps))
    with Journal(path) as journal:
        assert [t.id for t in journal.open_transactions()] == [tx_id]
    assert _user_version(path) == len(steps)
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT COUNT(*) FROM notes").fetchone() == (0,)
    finally:
        db.close()


# -- a copy without its WAL -------------------------------------------------------------------


def test_a_copy_without_the_wal_still_shows_the_open_transaction(tmp_path: Path) -> None:
    """A process killed mid-transaction leaves the journal with its `-wal`; `cp journal.sqlite3`
    alone must not lose the open transaction (begin checkpoints it into the main file)."""
    path = tmp_path / "j.sqlite3"
    live = Journal(path)  # stays open, as a killed process leaves it
    try:
        tx_id = live.begin("https://cm:5986/wsman", [ENTRY], [CHANGE])
        copy = tmp_path / "copy" / "j.sqlite3"
        copy.parent.mkdir()
        shutil.copyfile(path, copy)  # without j.sqlite3-wal
        with Journal(copy) as copied:
            assert [t.id for t in copied.open_transactions()] == [tx_id]
    finally:
        live.close()


def test_a_closed_journal_is_in_its_file_while_another_process_keeps_it_open(
    tmp_path: Path,
) -> None:
    """SQLite folds the WAL into the file when the *last* connection closes; a journal another
    process still has open keeps its WAL, so `close()` checkpoints what it committed."""
    path = tmp_path / "j.sqlite3"
    other = Journal(path)  # another process's connection
    try:
        mine = Journal(path)
        tx_id = mine.begin("https://cm:5986/wsman", [ENTRY], [CHANGE])
        mine.finish(tx_id, "committed")
        mine.close()
        copy = tmp_path / "copy" / "j.sqlite3"
        copy.parent.mkdir()
        shutil.copyfile(path, copy)  # without j.sqlite3-wal
        with Journal(copy) as copied:
            assert copied.open_transactions() == []
            assert copied.status(tx_id) == "committed"
    finally:
        other.close()


# -- full disk, read-only ---------------------------------------------------------------------


def _record(path: Path, entries: list[JournalEntry]) -> None:
    """Open the journal and begin one transaction per entry."""
    with Journal(path) as journal:
        for n, entry in enumerate(entries):
            journal.begin(f"https://cm{n}:5986/wsman", [entry], [CHANGE])


@pytest.fixture
def tmpfs(mount_tmpfs: Callable[[str, str], Path]) -> Path:
    """A 192 KiB tmpfs (needs CAP_SYS_ADMIN; skipped without it)."""
    return mount_tmpfs("mnt", "192k")


def test_a_full_disk_is_one_journal_error(tmpfs: Path) -> None:
    path = tmpfs / "j.sqlite3"
    big = JournalEntry("cm-a.contoso.com", "PS1", {"x": "a" * 20_000}, {"x": "b" * 20_000})
    with pytest.raises(JournalError) as caught:
        _record(path, [big] * 100)
    message = str(caught.value)
    assert str(path) in message
    assert "full" in message
    assert "\n" not in message


def test_a_read_only_journal_is_one_journal_error(tmpfs: Path) -> None:
    path = tmpfs / "j.sqlite3"
    Journal(path).close()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(JournalError) as caught:
        _record(path, [ENTRY])
    message = str(caught.value)
    assert str(path) in message
    assert "read-only" in message
    assert "\n" not in message


def test_a_version_1_journal_gains_the_recovery_tables(tmp_path: Path) -> None:
    """Schema 2 (crash recovery: pipelines, all-or-nothing units) is a migration: a journal
    written at version 1 opens, is upgraded in place and keeps its transactions."""
    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path)
    try:
        journal_module._MIGRATIONS[0](db)
        db.execute("PRAGMA user_version = 1")
        db.commit()
    finally:
        db.close()
    with Journal(path) as journal:
        tx_id = journal.begin("https://cm:5986/wsman", [ENTRY], [CHANGE])
        assert [t.id for t in journal.open_transactions()] == [tx_id]
    assert _user_version(path) == 2
    db = sqlite3.connect(path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        db.close()
    assert {"pipelines", "units", "unit_members"} <= tables
