"""Persistent state of the emulated ConfigMgr hierarchy (stdlib sqlite3).

One SQLite file holds what a real site keeps in its site control data and on its servers: sites,
`SMS_SCI_SysResUse` rows (one per site, server, role; reference §8.1), accounts
(`SMS_SCI_Reserved`; passwords only as salted hashes), SUP components, site-server log files,
and the emulator's own call log. The emulator may be restarted on the same file and must come
back with the same hierarchy, so every cmdlet write is one transaction.

A single connection is shared by all threads behind an `RLock`: the emulator's throughput is
bounded by its simulated costs, not by SQLite, and one connection keeps `:memory:` usable.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

MASK = "********"
#: How the call log writes a call's parameters: json.dumps(params, default=str), without
#: building an encoder per call.
_CALL_JSON = json.JSONEncoder(default=str)

#: Roles that sit on a site-system row; `Type` codes of SMS_SCI_SysResUse (reference §2.1).
TYPE_SECONDARY, TYPE_PRIMARY, TYPE_CAS, TYPE_NOT_SITE_SERVER = 1, 2, 4, 8

SITE_SYSTEM = "SMS Site System"
SITE_SERVER = "SMS Site Server"
SUP_ROLE = "SMS Software Update Point"
WCM_COMPONENT = "SMS_WSUS_CONFIGURATION_MANAGER"
SYNC_COMPONENT = "SMS_WSUS_SYNC_MANAGER"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sites (
    code TEXT PRIMARY KEY COLLATE NOCASE,
    name TEXT NOT NULL,
    type TEXT NOT NULL,               -- 'CAS' | 'primary' | 'secondary'
    parent TEXT COLLATE NOCASE,       -- ReportingSiteCode ('' at the top)
    server TEXT NOT NULL,             -- site server FQDN
    provider TEXT NOT NULL,           -- SMS Provider FQDN
    version TEXT NOT NULL,
    build INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sysres (
    site TEXT NOT NULL COLLATE NOCASE,
    server TEXT NOT NULL COLLATE NOCASE,
    role TEXT NOT NULL COLLATE NOCASE,
    ssl_state INTEGER NOT NULL DEFAULT 0,
    props TEXT NOT NULL,              -- JSON list of {PropertyName, Value, Value1, Value2}
    seq INTEGER NOT NULL,             -- insertion order, for stable output
    PRIMARY KEY (site, server, role)
);
CREATE INDEX IF NOT EXISTS sysres_server ON sysres(server);
CREATE TABLE IF NOT EXISTS accounts (
    site TEXT NOT NULL COLLATE NOCASE,
    username TEXT NOT NULL COLLATE NOCASE,
    salt TEXT NOT NULL,
    pw_hash TEXT NOT NULL,            -- pbkdf2-sha256 of the password; clear text never stored
    PRIMARY KEY (site, username)
);
CREATE TABLE IF NOT EXISTS components (
    site TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL COLLATE NOCASE,
    server TEXT NOT NULL,
    props TEXT NOT NULL,
    PRIMARY KEY (site, name)
);
CREATE TABLE IF NOT EXISTS logs (
    server TEXT NOT NULL COLLATE NOCASE,
    name TEXT NOT NULL COLLATE NOCASE,
    text TEXT NOT NULL,
    PRIMARY KEY (server, name)
);
CREATE TABLE IF NOT EXISTS call_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    command TEXT NOT NULL,
    params TEXT NOT NULL,             -- JSON object, secrets masked
    wrote INTEGER NOT NULL,
    outcome TEXT NOT NULL             -- 'ok' or the FullyQualifiedErrorId
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@attrs.frozen
class Prop:
    """One SMS_EmbeddedProperty: numeric `value`, strings `value1`/`value2` (reference §2.1)."""

    name: str
    value: int = 0
    value1: str = ""
    value2: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "PropertyName": self.name,
            "Value": self.value,
            "Value1": self.value1,
            "Value2": self.value2,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Prop:
        return cls(d["PropertyName"], int(d["Value"]), str(d["Value1"]), str(d["Value2"]))


@attrs.frozen
class Site:
    code: str
    name: str
    type: str
    parent: str
    server: str
    provider: str
    version: str = "5.00.9122.1000"
    build: int = 9122

    @property
    def type_code(self) -> int:
        """SMS_Site.Type: 1 secondary, 2 primary, 4 CAS."""
        return {"secondary": 1, "primary": 2, "CAS": 4}[self.type]


@attrs.frozen
class SysRes:
    """One SMS_SCI_SysResUse row: a role on a server within a site."""

    site: str
    server: str
    role: str
    ssl_state: int
    props: tuple[Prop, ...]

    def prop(self, name: str) -> Prop | None:
        for p in self.props:
            if p.name == name:
                return p
        return None


@attrs.frozen
class CallRecord:
    """One cmdlet invocation as the emulator saw it (parameters already masked)."""

    id: int
    ts: float
    user: str
    command: str
    params: dict[str, Any]
    wrote: bool
    outcome: str


@attrs.frozen
class Account:
    site: str
    username: str


def hash_password(password: str, salt: bytes | None = None) -> tuple[str, str]:
    """Salted PBKDF2 so the state file never holds a usable secret."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 10_000)
    return salt.hex(), digest.hex()


class SiteState:
    """The hierarchy in SQLite. Thread-safe; writes go through `transaction()`."""

    def __init__(self, path: str | os.PathLike[str] = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        #: Calls recorded but not yet in the call_log table, oldest first (see `record_call`).
        self._pending_calls: list[tuple[float, str, str, str, int, str]] = []
        self._pending_lock = threading.Lock()
        #: How deep the thread holding `_lock` is in `transaction()` (0: none open).
        self._tx_depth = 0
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM sysres")

    # -- plumbing ---------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self.flush_calls()
            self._conn.close()

    def __enter__(self) -> SiteState:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _scalar(self, sql: str, args: Sequence[Any] = ()) -> Any:
        with self._lock:
            row = self._conn.execute(sql, args).fetchone()
        return row[0] if row else None

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._conn.execute(sql, args).fetchall())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic write: everything inside commits together or not at all."""
        with self._lock:
            self.flush_calls()
            self._conn.execute("BEGIN IMMEDIATE")
            self._tx_depth += 1
            try:
                yield
            except BaseException:
                self._tx_depth -= 1
                self._conn.execute("ROLLBACK")
                raise
            self._tx_depth -= 1
            self._conn.execute("COMMIT")

    def _exec(self, sql: str, args: Sequence[Any] = ()) -> None:
        with self._lock:
            self._conn.execute(sql, args)

    def is_empty(self) -> bool:
        return not self._scalar("SELECT COUNT(*) FROM sites")

    def get_meta(self, key: str) -> str | None:
        v = self._scalar("SELECT value FROM meta WHERE key=?", (key,))
        return None if v is None else str(v)

    def set_meta(self, key: str, value: str) -> None:
        self._exec("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- sites ------------------------------------------------------------------------------
    def add_site(self, site: Site) -> None:
        self._exec(
            "INSERT INTO sites VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                site.code,
                site.name,
                site.type,
                site.parent,
                site.server,
                site.provider,
                site.version,
                site.build,
            ),
        )

    def sites(self) -> list[Site]:
        rows = self._rows("SELECT * FROM sites ORDER BY rowid")
        return [
            Site(
                r["code"],
                r["name"],
                r["type"],
                r["parent"] or "",
                r["server"],
                r["provider"],
                r["version"],
                r["build"],
            )
            for r in rows
        ]

    def site(self, code: str) -> Site | None:
        for s in self.sites():
            if s.code.upper() == code.upper():
                return s
        return None

    # -- site control items -----------------------------------------------------------------
    def put_sysres(
        self,
        site: str,
        server: str,
        role: str,
        props: Sequence[Prop],
        ssl_state: int = 0,
    ) -> None:
        """Insert or replace one role row (keeps its position when replacing)."""
        with self._lock:
            seq = self._scalar(
                "SELECT seq FROM sysres WHERE site=? AND server=? AND role=?",
                (site, server, role),
            )
            if seq is None:
                self._seq += 1
                seq = self._seq
            self._exec(
                "INSERT OR REPLACE INTO sysres VALUES (?, ?, ?, ?, ?, ?)",
                (site, server, role, ssl_state, _dump_props(props), seq),
            )

    def sysres(
        self, site: str | None = None, server: str | None = None, role: str | None = None
    ) -> list[SysRes]:
        """Rows filtered by exact (case-insensitive) site/server/role, in insertion order."""
        sql = "SELECT * FROM sysres WHERE 1=1"
        args: list[Any] = []
        for col, val in (("site", site), ("server", server), ("role", role)):
            if val is not None:
                sql += f" AND {col}=?"
                args.append(val)
        rows = self._rows(sql + " ORDER BY seq", args)
        return [
            SysRes(r["site"], r["server"], r["role"], r["ssl_state"], _load_props(r["props"]))
            for r in rows
        ]

    def get_sysres(self, site: str, server: str, role: str) -> SysRes | None:
        found = self.sysres(site, server, role)
        return found[0] if found else None

    def server_props(self, site: str, server: str, role: str = SITE_SYSTEM) -> dict[str, Prop]:
        """Embedded props of one role row by PropertyName ({} when the row does not exist)."""
        row = self.get_sysres(site, server, role)
        return {} if row is None else {p.name: p for p in row.props}

    def set_props(self, site: str, server: str, role: str, updates: Sequence[Prop]) -> None:
        """Replace or append props by name on an existing row, keeping the others."""
        row = self.get_sysres(site, server, role)
        if row is None:
            raise KeyError((site, server, role))
        by_name = {p.name: p for p in row.props}
        order = [p.name for p in row.props]
        for u in updates:
            if u.name not in by_name:
                order.append(u.name)
            by_name[u.name] = u
        self.put_sysres(site, server, role, [by_name[n] for n in order], row.ssl_state)

    def role_counts(self, sites: Iterable[str]) -> dict[tuple[str, str], int]:
        """Roles per server of the given sites, keyed by `nocase` (site, server)."""
        counts: dict[tuple[str, str], int] = {}
        for code in {nocase(s) for s in sites}:
            rows = self._rows(
                "SELECT server, COUNT(*) AS n FROM sysres WHERE site=? GROUP BY server", (code,)
            )
            counts.update({(code, nocase(r["server"])): int(r["n"]) for r in rows})
        return counts

    def role_count(self, site: str, server: str) -> int:
        return int(
            self._scalar("SELECT COUNT(*) FROM sysres WHERE site=? AND server=?", (site, server))
        )

    # -- accounts ---------------------------------------------------------------------------
    def add_account(self, site: str, username: str, password: str) -> None:
        salt, digest = hash_password(password)
        self._exec(
            "INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?)", (site, username, salt, digest)
        )

    def accounts(self, site: str | None = None) -> list[Account]:
        if site is None:
            rows = self._rows("SELECT site, username FROM accounts ORDER BY rowid")
        else:
            rows = self._rows(
                "SELECT site, username FROM accounts WHERE site=? ORDER BY rowid", (site,)
            )
        return [Account(r["site"], r["username"]) for r in rows]

    def check_password(self, site: str, username: str, password: str) -> bool:
        rows = self._rows(
            "SELECT salt, pw_hash FROM accounts WHERE site=? AND username=?", (site, username)
        )
        if not rows:
            return False
        _, digest = hash_password(password, bytes.fromhex(rows[0]["salt"]))
        return bool(digest == rows[0]["pw_hash"])

    # -- components -------------------------------------------------------------------------
    def put_component(self, site: str, name: str, server: str, props: Sequence[Prop]) -> None:
        self._exec(
            "INSERT OR REPLACE INTO components VALUES (?, ?, ?, ?)",
            (site, name, server, _dump_props(props)),
        )

    def component(self, site: str, name: str) -> tuple[str, tuple[Prop, ...]] | None:
        """(server, props) of a site component, or None."""
        rows = self._rows(
            "SELECT server, props FROM components WHERE site=? AND name=?", (site, name)
        )
        if not rows:
            return None
        return rows[0]["server"], _load_props(rows[0]["props"])

    def component_props(self, site: str, name: str = WCM_COMPONENT) -> dict[str, Prop]:
        comp = self.component(site, name)
        return {} if comp is None else {p.name: p for p in comp[1]}

    def set_component_props(self, site: str, name: str, updates: Sequence[Prop]) -> None:
        comp = self.component(site, name)
        if comp is None:
            raise KeyError((site, name))
        by_name = {p.name: p for p in comp[1]}
        order = [p.name for p in comp[1]]
        for u in updates:
            if u.name not in by_name:
                order.append(u.name)
            by_name[u.name] = u
        self.put_component(site, name, comp[0], [by_name[n] for n in order])

    # -- logs on site servers ---------------------------------------------------------------
    def put_log(self, server: str, name: str, text: str) -> None:
        self._exec("INSERT OR REPLACE INTO logs VALUES (?, ?, ?)", (server, name, text))

    def append_log(self, server: str, name: str, line: str) -> None:
        with self._lock:
            old = self.log(server, name) or ""
            if old and not old.endswith("\n"):
                old += "\n"
            self.put_log(server, name, old + line.rstrip("\n") + "\n")

    def log(self, server: str, name: str) -> str | None:
        v = self._scalar("SELECT text FROM logs WHERE server=? AND name=?", (server, name))
        return None if v is None else str(v)

    def logs(self) -> list[tuple[str, str]]:
        return [(r["server"], r["name"]) for r in self._rows("SELECT server, name FROM logs")]

    # -- call log ---------------------------------------------------------------------------
    #: Buffered calls past this many are written at once by the next `record_call`.
    FLUSH_CALLS_AT = 256

    def record_call(
        self, user: str, command: str, params: Mapping[str, Any], wrote: bool, outcome: str
    ) -> None:
        """Append one call; `params` must already be masked (see engine.binding.mask_params).

        The call is buffered in order and written to the table with the next batch (one
        INSERT per call under the state lock cost the interpreter most of a function call):
        every read of the log, `clear_call_log`, `close`, each `transaction` and
        `flush_calls` (the engine's, at the end of each pipeline) write the buffer first, so
        the log a reader sees is as complete and as ordered as before."""
        entry = (time.time(), user, command, _CALL_JSON.encode(params), int(wrote), outcome)
        with self._pending_lock:
            self._pending_calls.append(entry)
            full = len(self._pending_calls) >= self.FLUSH_CALLS_AT
        if full:
            self.flush_calls()

    def flush_calls(self) -> None:
        """Write the buffered calls to the call_log table, oldest first. Not inside an open
        transaction (a rollback would take them with it): that transaction's end writes them."""
        with self._lock:
            if self._tx_depth:
                return
            with self._pending_lock:
                entries, self._pending_calls = self._pending_calls, []
            if entries:  # one transaction: in autocommit each row would commit on its own
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    self._conn.executemany(
                        "INSERT INTO call_log(ts, user, command, params, wrote, outcome) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        entries,
                    )
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    with self._pending_lock:  # not lost: the next flush tries them again
                        self._pending_calls[:0] = entries
                    raise
                self._conn.execute("COMMIT")

    def call_log(self, command: str | None = None) -> list[CallRecord]:
        """Every recorded call, oldest first; optionally only one command (case-insensitive)."""
        sql = "SELECT * FROM call_log"
        args: list[Any] = []
        if command is not None:
            sql += " WHERE command=? COLLATE NOCASE"
            args.append(command)
        with self._lock:
            self.flush_calls()
            rows = self._rows(sql + " ORDER BY id", args)
            rows_pending = self._pending_records(command) if self._tx_depth else []
        return [
            CallRecord(
                r["id"],
                r["ts"],
                r["user"],
                r["command"],
                json.loads(r["params"]),
                bool(r["wrote"]),
                r["outcome"],
            )
            for r in rows
        ] + rows_pending

    def _pending_records(self, command: str | None) -> list[CallRecord]:
        """The buffered calls as records, read inside an open transaction (which holds them
        back): numbered as the table will number them when the transaction ends."""
        last = self._scalar("SELECT seq FROM sqlite_sequence WHERE name='call_log'") or 0
        with self._pending_lock:
            entries = list(self._pending_calls)
        out = []
        for i, (ts, user, cmd, params, wrote, outcome) in enumerate(entries, start=last + 1):
            if command is None or cmd.lower() == command.lower():
                out.append(CallRecord(i, ts, user, cmd, json.loads(params), bool(wrote), outcome))
        return out

    def clear_call_log(self) -> None:
        with self._lock:
            self.flush_calls()
            if self._tx_depth:  # held back by the open transaction: made before the DELETE
                with self._pending_lock:
                    self._pending_calls.clear()
            self._exec("DELETE FROM call_log")

    # -- snapshot ---------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """A JSON-able copy of the hierarchy (no call log, no password hashes) for diffs."""
        return {
            "sites": [attrs.asdict(s) for s in self.sites()],
            "sysres": [
                {
                    "site": r.site,
                    "server": r.server,
                    "role": r.role,
                    "ssl_state": r.ssl_state,
                    "props": [p.to_json() for p in r.props],
                }
                for r in self.sysres()
            ],
            "accounts": [attrs.asdict(a) for a in self.accounts()],
            "components": [
                {
                    "site": r["site"],
                    "name": r["name"],
                    "server": r["server"],
                    "props": json.loads(r["props"]),
                }
                for r in self._rows("SELECT * FROM components ORDER BY rowid")
            ],
            "logs": {f"{s}|{n}": self.log(s, n) for s, n in self.logs()},
        }


def _dump_props(props: Sequence[Prop]) -> str:
    return json.dumps([p.to_json() for p in props])


@functools.lru_cache(maxsize=8192)
def _load_props(text: str) -> tuple[Prop, ...]:
    """The props a row's JSON holds; the same text is parsed once (Props are frozen, so the
    tuple is shared safely)."""
    return tuple(Prop.from_json(d) for d in json.loads(text))


def nocase(text: str) -> str:
    """`text` folded as SQLite's NOCASE folds it (ASCII letters only)."""
    return text.encode("utf-8").lower().decode("utf-8")


def nal_path(server: str, site: str) -> str:
    """NALPath of a site system (reference §2.1)."""
    return f'["Display=\\\\{server}\\"]MSWNET:["SMS_SITE={site}"]\\\\{server}\\'


def item_name(server: str, site: str, role: str) -> str:
    """ItemName of an SMS_SCI_SysResUse row (reference §2.1)."""
    return f"{nal_path(server, site)},{role}"
