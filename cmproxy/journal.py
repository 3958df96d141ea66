"""A durable local journal of transactions, so a killed process can be recovered.

SQLite with `synchronous=FULL` (every commit is fsynced) records, before each write, the
transaction's intent, its snapshot of every server it touches and the progress of each change.
Secrets are never written: values go in through their `to_dict()`, which excludes passwords.

The journal also *claims* servers: a server held by an open transaction cannot be claimed by
another one sharing the journal, which closes the read-check-write race between two
transactions on one machine (see docs/transactions.md for the limits). A *hold* claims servers
before they are read, for a caller that will run their transactions later (a bulk run): it
records no snapshot and no change, nothing is ever written under it, and its own transactions
may claim its servers.

Before each pipeline of a transaction is sent, the journal records the shell (runspace pool)
and command carrying it, so `recover` can stop what a killed process left running; an
all-or-nothing run is a *unit* whose transactions are recovered as one. Both are tables added
with CREATE IF NOT EXISTS: an older journal gains them on open.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
import tenacity

from cmproxy._exceptions import ConflictError, JournalError
from cmproxy.grouping import Grouper, batch_error

__all__ = [
    "SCHEMA_VERSION",
    "Hold",
    "Journal",
    "JournalEntry",
    "JournalError",
    "JournalTransaction",
    "JournalUnit",
    "default_journal_path",
]

# -- schema versions and migrations -----------------------------------------------------------
#
# The schema version is SQLite's `PRAGMA user_version` (0 in a file that never set it). Opening a
# journal runs, in one write transaction, every migration above the file's version and stores
# the new version; a file with a version above ours was written by a newer cmproxy and is
# refused (`JournalError`), never read or written. To change the schema, append one function to
# `_MIGRATIONS`: it gets the connection inside that transaction, must only add (tables, columns,
# indexes, rows), and `SCHEMA_VERSION` follows.

_V1 = """
CREATE TABLE IF NOT EXISTS transactions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL,          -- open, committed, rolled_back, failed; held, released
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS servers (
    tx_id TEXT NOT NULL REFERENCES transactions(id),
    server TEXT NOT NULL,          -- lower-case key
    site_code TEXT NOT NULL,
    before TEXT NOT NULL,          -- JSON snapshot (no secrets)
    after TEXT NOT NULL,           -- JSON desired state (no secrets)
    PRIMARY KEY (tx_id, server)
);
-- the claim check looks servers up by name
CREATE INDEX IF NOT EXISTS servers_by_name ON servers (server);
CREATE TABLE IF NOT EXISTS changes (
    tx_id TEXT NOT NULL REFERENCES transactions(id),
    seq INTEGER NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    change TEXT NOT NULL,          -- JSON of Change.to_dict() (secrets masked)
    state TEXT NOT NULL,           -- planned, applying, applied, rolling_back, rolled_back
    updated REAL NOT NULL,
    PRIMARY KEY (tx_id, seq)
);
"""


def _execute_all(db: sqlite3.Connection, sql: str) -> None:
    for statement in sql.split(";\n"):
        if statement.strip():
            db.execute(statement)


def _v1_base(db: sqlite3.Connection) -> None:
    """The first versioned schema; `IF NOT EXISTS` also adopts a journal from before versions."""
    _execute_all(db, _V1)


# Crash recovery (issue 15): which shell and command carried each pipeline, and all-or-nothing
# units. Added tables only.
_V2 = """
-- which shell (runspace pool) and command carried a transaction's pipelines, recorded
-- before each one was sent: what may still run on the server after a crash
CREATE TABLE IF NOT EXISTS pipelines (
    tx_id TEXT NOT NULL REFERENCES transactions(id),
    resource_uri TEXT NOT NULL,
    shell_id TEXT NOT NULL,
    command_id TEXT NOT NULL,
    account TEXT NOT NULL,         -- the account that owns the shell (lower case)
    recorded REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS pipelines_by_tx ON pipelines (tx_id);
-- an all-or-nothing run: its transactions are recovered as one
CREATE TABLE IF NOT EXISTS units (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    endpoint TEXT NOT NULL,
    status TEXT NOT NULL           -- open, closed
);
CREATE TABLE IF NOT EXISTS unit_members (
    unit_id TEXT NOT NULL REFERENCES units(id),
    tx_id TEXT NOT NULL PRIMARY KEY REFERENCES transactions(id)
);
"""


def _v2_pipelines_and_units(db: sqlite3.Connection) -> None:
    """What may still run on the server after a crash, and runs recovered as one."""
    _execute_all(db, _V2)


#: Migration `n` (1-based) brings a journal from version n-1 to n.
_MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_base, _v2_pipelines_and_units]
#: The journal schema this cmproxy reads and writes.
SCHEMA_VERSION = len(_MIGRATIONS)


def _check_version(db: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; `JournalError` if a newer cmproxy wrote it."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise JournalError(
            f"{path}: journal schema version {version} is newer than this cmproxy's "
            f"(version {SCHEMA_VERSION}); upgrade cmproxy to use it. Nothing was read "
            "or written."
        )
    return version


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the journal to `SCHEMA_VERSION` in one transaction; refuse a newer one."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = _check_version(db, path)  # again: another process may have migrated it
        for step in _MIGRATIONS[version:]:
            step(db)
        if version < SCHEMA_VERSION:
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


#: How long opening a journal waits for another process that holds it (as `timeout=` does for
#: every other statement).
_BUSY_TIMEOUT_S = 30.0


def _busy(error: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, extended codes included (their low byte is the primary)."""
    code = getattr(error, "sqlite_errorcode", None)
    return (
        isinstance(error, sqlite3.OperationalError)
        and isinstance(code, int)
        and (code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))
    )


@tenacity.retry(
    retry=tenacity.retry_if_exception(_busy),
    wait=tenacity.wait_random(0.005, 0.05),
    stop=tenacity.stop_after_delay(_BUSY_TIMEOUT_S),
    reraise=True,
)
def _use_wal(db: sqlite3.Connection) -> None:
    """Put the file in WAL mode, waiting for other openers.

    The mode change needs an exclusive lock and SQLite does not call the busy handler for it
    (https://www.sqlite.org/wal.html, "Activating And Configuring WAL Mode"), so two processes
    opening a new journal together would otherwise see "database is locked" at once. A file
    already in WAL mode (the mode persists in it) is left alone.
    """
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        db.execute("PRAGMA journal_mode=WAL").fetchone()


# -- SQLite errors as one line ----------------------------------------------------------------


def _read_only(path: Path) -> bool:
    """Whether the journal (or the directory its `-wal`/`-shm` go in) cannot be written."""
    for target, flags in ((path, os.O_RDWR), (path.parent, os.O_RDONLY)):
        if not target.exists():
            continue
        try:
            os.close(os.open(target, flags))
        except OSError as error:
            if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                return True
        if os.statvfs(target).f_flag & os.ST_RDONLY:
            return True
    return False


def _journal_error(path: Path, error: sqlite3.Error) -> JournalError:
    """`error` as one line naming the file, what went wrong and what to do."""
    name = getattr(error, "sqlite_errorname", "")
    if name.startswith("SQLITE_FULL") or "disk is full" in str(error):
        what = "the disk is full; free space there or choose another journal"
    elif name.startswith("SQLITE_READONLY") or _read_only(path):
        what = "the journal is read-only; make it writable or choose another journal"
    else:
        what = f"SQLite failed ({error}); check the file or choose another journal"
    return JournalError(
        f"{path}: {what} (--journal / CMPROXY_JOURNAL). This change was not recorded."
    )


@contextmanager
def _sqlite_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as error:
        raise _journal_error(path, error) from error


# -- the journal --------------------------------------------------------------------------------


def default_journal_path() -> Path:
    """`$CMPROXY_JOURNAL`, else `~/.cmproxy/journal.sqlite3`."""
    env = os.environ.get("CMPROXY_JOURNAL")
    return Path(env) if env else Path.home() / ".cmproxy" / "journal.sqlite3"


@attrs.frozen
class JournalEntry:
    """One server of a transaction: its snapshot and its desired state."""

    server: str
    site_code: str
    before: dict[str, Any]
    after: dict[str, Any]


@attrs.frozen
class JournalTransaction:
    """An open (unfinished) transaction as the journal knows it."""

    id: str
    endpoint: str
    created: float
    servers: tuple[JournalEntry, ...]
    changes: tuple[tuple[int, str, str, str], ...]  # (seq, target, kind, state)


@attrs.frozen
class Hold:
    """Servers claimed before they were read (`Journal.hold`); `servers` are the ones it got."""

    id: str
    endpoint: str
    servers: frozenset[str]


@attrs.frozen
class JournalUnit:
    """An all-or-nothing run not closed: its transactions (open or finished), by status."""

    id: str
    endpoint: str
    members: tuple[tuple[str, str, tuple[JournalEntry, ...]], ...]  # (tx id, status, servers)


#: Statuses that claim their servers: an open transaction and a hold.
_CLAIMING = ("open", "held")

_Transactions = Sequence[tuple[Sequence[JournalEntry], Sequence[tuple[str, str, dict[str, Any]]]]]


@attrs.frozen
class _Claim:
    """One transaction of a `begin_many` call, its JSON made before the call joins a commit."""

    servers: tuple[str, ...]  # as the caller named them (a conflict names them so)
    rows: tuple[tuple[str, str, str, str], ...]  # (server key, site, before, after)
    changes: tuple[tuple[int, str, str, str], ...]  # (seq, target, kind, change)


@attrs.frozen
class _Claims:
    """One `begin_many` call: recorded with its own endpoint, hold and unit in a shared commit."""

    endpoint: str
    hold: str  # the caller's hold id, or ""
    unit: str | None
    now: float
    transactions: tuple[_Claim, ...]

    @classmethod
    def of(
        cls, endpoint: str, transactions: _Transactions, hold: Hold | None, unit: str | None
    ) -> _Claims:
        claims = tuple(
            _Claim(
                tuple(e.server for e in entries),
                tuple(
                    (
                        e.server.lower(),
                        e.site_code,
                        json.dumps(e.before, sort_keys=True),
                        json.dumps(e.after, sort_keys=True),
                    )
                    for e in entries
                ),
                tuple(
                    (seq, target, kind, json.dumps(change, sort_keys=True))
                    for seq, (target, kind, change) in enumerate(changes)
                ),
            )
            for entries, changes in transactions
        )
        return cls(endpoint, hold.id if hold else "", unit, time.time(), claims)


#: What one `begin_many` call gets from a shared commit: its ids and conflicts, or its own
#: SQLite error (its part was rolled back; the others' stand).
_Claimed = list[str | ConflictError] | JournalError


class Journal:
    """The journal file. Thread-safe; every write is its own fsynced SQLite transaction, except
    that concurrent `begin_many` calls share one (group commit, `Journal.claims`)."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_journal_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        #: Concurrent `begin_many` calls, grouped: while one commit is written, the calls that
        #: arrive queue and the next commit records them all (its `groups`/`requests` count).
        self.claims: Grouper[_Claims, _Claimed] = Grouper(self._record_claims, error=batch_error)
        with _sqlite_errors(self.path):
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_S
            )
            try:
                _check_version(self._db, self.path)  # before anything is written
                _use_wal(self._db)
                self._db.execute("PRAGMA synchronous=FULL")
                _migrate(self._db, self.path)
            except BaseException:
                self._db.close()
                raise

    def close(self) -> None:
        """Close, with what this connection committed copied into the file first.

        The last connection to close also removes the WAL (SQLite's default), so a journal
        nobody has open is one self-contained file; while another process keeps it open the
        WAL stays, and this PASSIVE checkpoint (it never waits) still moves our commits.
        """
        with self._lock:
            with contextlib.suppress(sqlite3.Error):  # closing must not fail
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self, *, checkpoint: bool = False) -> Iterator[sqlite3.Connection]:
        """One fsynced write transaction; SQLite errors become one `JournalError`.

        `checkpoint` then copies the WAL into the main file (`wal_checkpoint(FULL)`), so a copy
        of the file alone (without its `-wal`, as `cp journal.sqlite3` of a killed run's journal
        makes) still shows what was committed: `begin`/`hold` use it, so an open transaction is
        never only in the WAL. Later progress marks may be, which only makes a copy show more
        open than it is, never less (recover re-reads the site before it decides).
        """
        with self._lock, _sqlite_errors(self.path):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            if checkpoint:
                self._db.execute("PRAGMA wal_checkpoint(FULL)").fetchone()

    def begin(
        self,
        endpoint: str,
        entries: Sequence[JournalEntry],
        changes: Sequence[tuple[str, str, dict[str, Any]]],
    ) -> str:
        """Record intent and snapshot, claiming the servers; `ConflictError` if one is held."""
        claimed = self.begin_many(endpoint, [(entries, changes)])[0]
        if isinstance(claimed, ConflictError):
            raise claimed
        return claimed

    def hold(self, endpoint: str, servers: Sequence[str]) -> Hold:
        """Claim `servers` before reading them, in one commit; a server another transaction
        or hold has is left out of the `Hold` (its own transaction will meet the conflict).

        The holder's transactions may claim held servers (`begin_many(hold=...)`); release the
        hold when they are done. `recover()` releases holds a killed process left behind.
        """
        names = list(dict.fromkeys(s.lower() for s in servers))
        hold_id = uuid.uuid4().hex
        with self._write(checkpoint=True) as db:
            free = [n for n in names if self._held(db, endpoint, [n]) is None]
            db.execute(
                "INSERT INTO transactions (id, created, endpoint, status, detail) "
                "VALUES (?, ?, ?, 'held', 'servers held for their transactions')",
                (hold_id, time.time(), endpoint),
            )
            db.executemany(
                "INSERT INTO servers VALUES (?, ?, '', '{}', '{}')",
                [(hold_id, n) for n in free],
            )
        return Hold(hold_id, endpoint, frozenset(free))

    def release(self, hold: Hold | str) -> None:
        """End a hold (its servers are free again)."""
        hold_id = hold.id if isinstance(hold, Hold) else hold
        with self._write() as db:
            db.execute(
                "UPDATE transactions SET status = 'released' WHERE id = ? AND status = 'held'",
                (hold_id,),
            )

    def holds(self, endpoint: str | None = None) -> list[str]:
        """Ids of the holds not released (all endpoints unless one is named)."""
        query = "SELECT id FROM transactions WHERE status = 'held'"
        args: tuple[Any, ...] = ()
        if endpoint is not None:
            query += " AND endpoint = ?"
            args = (endpoint,)
        with self._lock, _sqlite_errors(self.path):
            return [str(row[0]) for row in self._db.execute(query + " ORDER BY created", args)]

    def begin_many(
        self,
        endpoint: str,
        transactions: _Transactions,
        *,
        hold: Hold | None = None,
        unit: str | None = None,
    ) -> list[str | ConflictError]:
        """`begin` for several independent transactions in one fsynced commit.

        Each gets its id, or the `ConflictError` of a server another open transaction (or a
        hold other than `hold`) has (that one is not recorded; the others are). `unit`: an
        open all-or-nothing unit (`begin_unit`) they belong to, recorded in the same commit.

        Concurrent calls share commits (`claims`): each is recorded with its own arguments, in
        arrival order, as if they ran one after the other (a later call naming a server an
        earlier one of the commit claimed gets the conflict); each returns once the commit
        that holds its claims is fsynced. If that commit fails, every call in it raises.
        """
        claimed = self.claims.submit(_Claims.of(endpoint, transactions, hold, unit))
        if isinstance(claimed, JournalError):
            raise claimed
        return claimed

    def _record_claims(self, calls: list[_Claims]) -> list[_Claimed]:
        """One commit for `calls`; a SQLite error in one call's part undoes that part only
        (a savepoint), unless SQLite undid the whole transaction (disk full, I/O)."""
        out: list[_Claimed] = []
        with self._write(checkpoint=True) as db:
            for call in calls:
                db.execute("SAVEPOINT claims")
                try:
                    out.append(self._record_call(db, call))
                except sqlite3.Error as error:
                    if not db.in_transaction:
                        raise
                    db.execute("ROLLBACK TO claims")
                    failed = _journal_error(self.path, error)
                    failed.__cause__ = error
                    out.append(failed)
                db.execute("RELEASE claims")
        return out

    def _record_call(self, db: sqlite3.Connection, call: _Claims) -> list[str | ConflictError]:
        claimed: list[str | ConflictError] = []
        for tx in call.transactions:
            held = self._held(db, call.endpoint, tx.servers, call.hold)
            if held is not None:
                claimed.append(held)
                continue
            tx_id = uuid.uuid4().hex
            db.execute(
                "INSERT INTO transactions (id, created, endpoint, status) VALUES (?, ?, ?, 'open')",
                (tx_id, call.now, call.endpoint),
            )
            db.executemany(
                "INSERT INTO servers VALUES (?, ?, ?, ?, ?)", [(tx_id, *row) for row in tx.rows]
            )
            db.executemany(
                "INSERT INTO changes VALUES (?, ?, ?, ?, ?, 'planned', ?)",
                [(tx_id, *change, call.now) for change in tx.changes],
            )
            if call.unit is not None:
                db.execute("INSERT INTO unit_members VALUES (?, ?)", (call.unit, tx_id))
            claimed.append(tx_id)
        return claimed

    @staticmethod
    def _held(
        db: sqlite3.Connection, endpoint: str, servers: Sequence[str], mine: str = ""
    ) -> ConflictError | None:
        """The conflict of the first of `servers` another transaction or hold (not `mine`) has."""
        for server in servers:
            row = db.execute(
                "SELECT t.id, t.status FROM servers s JOIN transactions t ON t.id = s.tx_id "
                "WHERE s.server = ? AND t.status IN (?, ?) AND t.endpoint = ? AND t.id != ?",
                (server.lower(), *_CLAIMING, endpoint, mine),
            ).fetchone()
            if row is not None:
                what = "transaction" if row[1] == "open" else "a bulk run (hold)"
                return ConflictError(server, f"{what} {row[0][:8]} is changing it right now")
        return None

    def mark_change(self, tx_id: str, seq: int, state: str) -> None:
        self.mark_changes([(tx_id, seq)], state)

    def mark_changes(self, changes: Sequence[tuple[str, int]], state: str) -> None:
        """Set the state of several (transaction id, seq) changes in one commit."""
        if not changes:
            return
        now = time.time()
        with self._write() as db:
            db.executemany(
                "UPDATE changes SET state = ?, updated = ? WHERE tx_id = ? AND seq = ?",
                [(state, now, tx_id, seq) for tx_id, seq in changes],
            )

    def finish(self, tx_id: str, status: str, detail: str = "") -> None:
        """Close a transaction: committed, rolled_back or failed (needs a person)."""
        self.finish_many([(tx_id, status, detail)])

    def finish_many(self, finished: Sequence[tuple[str, str, str]]) -> None:
        """Close several (id, status, detail) transactions in one commit."""
        for _tx, status, _detail in finished:
            if status not in {"committed", "rolled_back", "failed"}:
                raise ValueError(f"unknown journal status {status!r}")
        if not finished:
            return
        with self._write() as db:
            db.executemany(
                "UPDATE transactions SET status = ?, detail = ? WHERE id = ?",
                [(status, detail, tx_id) for tx_id, status, detail in finished],
            )
            # A finished transaction's pipelines got their answers: nothing of it still runs.
            db.executemany(
                "DELETE FROM pipelines WHERE tx_id = ?", [(tx_id,) for tx_id, _s, _d in finished]
            )

    def status(self, tx_id: str) -> str:
        with self._lock, _sqlite_errors(self.path):
            row = self._db.execute(
                "SELECT status FROM transactions WHERE id = ?", (tx_id,)
            ).fetchone()
        if row is None:
            raise KeyError(tx_id)
        return str(row[0])

    def open_transactions(self, endpoint: str | None = None) -> list[JournalTransaction]:
        """Unfinished transactions, oldest first (all endpoints unless one is named)."""
        with self._lock, _sqlite_errors(self.path):
            query = "SELECT id, endpoint, created FROM transactions WHERE status = 'open'"
            args: tuple[Any, ...] = ()
            if endpoint is not None:
                query += " AND endpoint = ?"
                args = (endpoint,)
            rows = self._db.execute(query + " ORDER BY created", args).fetchall()
            result = []
            for tx_id, ep, created in rows:
                servers = tuple(
                    JournalEntry(s, site, json.loads(b), json.loads(a))
                    for s, site, b, a in self._db.execute(
                        "SELECT server, site_code, before, after FROM servers WHERE tx_id = ? "
                        "ORDER BY server",
                        (tx_id,),
                    )
                )
                changes = tuple(
                    (int(seq), str(t), str(k), str(st))
                    for seq, t, k, st in self._db.execute(
                        "SELECT seq, target, kind, state FROM changes WHERE tx_id = ? ORDER BY seq",
                        (tx_id,),
                    )
                )
                result.append(JournalTransaction(tx_id, ep, created, servers, changes))
        return result

    # -- pipelines: what may still run on the server -----------------------------------------

    def record_pipeline(
        self,
        tx_ids: Sequence[str],
        resource_uri: str,
        shell_id: str,
        command_id: str,
        *,
        account: str = "",
    ) -> None:
        """Before a pipeline is sent: the shell and command that carry `tx_ids`' work."""
        if not tx_ids:
            return
        now = time.time()
        row = (resource_uri, shell_id.upper(), command_id.upper(), account.lower(), now)
        with self._write() as db:
            db.executemany(
                "INSERT INTO pipelines VALUES (?, ?, ?, ?, ?, ?)", [(t, *row) for t in tx_ids]
            )

    def pipeline_shells(self, tx_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """The shells that carried `tx_ids`' pipelines: id → (resource URI, account)."""
        return {shell: (uri, account) for uri, shell, _cmd, account in self._pipeline_rows(tx_ids)}

    def pipelines(self, tx_ids: Sequence[str]) -> list[tuple[str, str, str]]:
        """(resource URI, shell id, command id) recorded for `tx_ids`, oldest first."""
        return [(uri, shell, cmd) for uri, shell, cmd, _acct in self._pipeline_rows(tx_ids)]

    def _pipeline_rows(self, tx_ids: Sequence[str]) -> list[tuple[str, str, str, str]]:
        rows: dict[tuple[str, str, str, str], None] = {}
        with self._lock:
            for tx_id in dict.fromkeys(tx_ids):
                for uri, shell, command, account in self._db.execute(
                    "SELECT resource_uri, shell_id, command_id, account FROM pipelines "
                    "WHERE tx_id = ? ORDER BY recorded",
                    (tx_id,),
                ):
                    rows[(str(uri), str(shell), str(command), str(account))] = None
        return list(rows)

    # -- all-or-nothing units ----------------------------------------------------------------

    def begin_unit(self, endpoint: str) -> str:
        """Open an all-or-nothing unit: the transactions begun under it are recovered as one."""
        unit_id = uuid.uuid4().hex
        with self._write() as db:
            db.execute(
                "INSERT INTO units VALUES (?, ?, ?, 'open')", (unit_id, time.time(), endpoint)
            )
        return unit_id

    def close_unit(self, unit_id: str) -> None:
        """The unit's run ended as a whole (all kept, or all undone): nothing left to recover."""
        with self._write() as db:
            db.execute("UPDATE units SET status = 'closed' WHERE id = ?", (unit_id,))

    def open_units(self, endpoint: str | None = None) -> list[JournalUnit]:
        """Units not closed (all endpoints unless one is named), oldest first."""
        query = "SELECT id, endpoint FROM units WHERE status = 'open'"
        args: tuple[Any, ...] = ()
        if endpoint is not None:
            query += " AND endpoint = ?"
            args = (endpoint,)
        units = []
        with self._lock:
            for unit_id, ep in self._db.execute(query + " ORDER BY created", args).fetchall():
                members = []
                for tx_id, status in self._db.execute(
                    "SELECT t.id, t.status FROM unit_members m JOIN transactions t "
                    "ON t.id = m.tx_id WHERE m.unit_id = ? ORDER BY t.created",
                    (unit_id,),
                ).fetchall():
                    servers = tuple(
                        JournalEntry(srv, site, json.loads(b), json.loads(a))
                        for srv, site, b, a in self._db.execute(
                            "SELECT server, site_code, before, after FROM servers "
                            "WHERE tx_id = ? ORDER BY server",
                            (tx_id,),
                        )
                    )
                    members.append((str(tx_id), str(status), servers))
                units.append(JournalUnit(str(unit_id), str(ep), tuple(members)))
        return units

    def dump(self) -> str:
        """The whole journal as text (tests check that no secret is in it)."""
        with self._lock, _sqlite_errors(self.path):
            return "\n".join(str(row) for row in self._db.iterdump())
