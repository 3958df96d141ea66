"""A live session to one SMS Provider: transport, bootstrap once, reads and writes.

`Session(info)` is configuration plus a closed transport; `open()` (or `with`, or
`cmproxy.connect(info)`) connects and runs the bootstrap (`ps_templates/Initialize-CMSession.ps1`):
import the ConfigurationManager module, make sure the site drive exists, `Set-Location` onto
it. Over PSRP that happens once per runspace pool (again only if the pool had to be
recreated); over WinRS every step is a new process, so the transport runs it before each
step. Bootstrap failures become a `SessionError` subclass (`cmproxy.bootstrap`) with a message
that names the cause and what to do; `Session.bootstrap` says which path the bootstrap took.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cmproxy._exceptions import (
    CMProxyError,
    ConnectionError,
    ConsoleNotInstalledError,
    ItemNotFoundError,
    PowerShellError,
    SessionError,
    SiteDriveError,
    TransportError,
)
from cmproxy.bootstrap import BootstrapInfo, bootstrap_error
from cmproxy.connection import ConnectionInfo
from cmproxy.model import SiteState, validate_site_code
from cmproxy.reader import SiteRead, read_site_state
from cmproxy.transports import Result, Step, Transport, create_transport
from cmproxy.transports.base import PipelineWatcher, RemoteShell
from cmproxy.writer import WriteResult, apply_change, batch_results, batch_step, batchable

if TYPE_CHECKING:
    from cmproxy.plan import Change, Plan

__all__ = ["BOOTSTRAP_TEMPLATE", "READ_TEMPLATE", "Session", "connect", "map_session_error"]

log = logging.getLogger(__name__)

BOOTSTRAP_TEMPLATE = "Initialize-CMSession"
READ_TEMPLATE = "Get-SiteState"
#: Parameter names the Python side binds, per template (checked against each param() block).
SESSION_TEMPLATE_PARAMETERS: dict[str, frozenset[str]] = {
    BOOTSTRAP_TEMPLATE: frozenset({"SiteCode", "ProviderMachineName", "ModulePath"}),
    READ_TEMPLATE: frozenset({"SiteCode", "SiteSystemServerName", "BySite", "Shard", "Shards"}),
}

_MARKER = "cmproxy:"

#: Pipelines of a whole-hierarchy read when the number of sites is not known yet: three, for
#: the first read runs as the warmed pools finish their imports (one every ≈ 60 ms), and a
#: fourth shard would mostly wait for its pool.
READ_SHARDS = 3
#: Server reads joined into one pipeline at most (`Session.read_state(servers)` from threads).
READ_BATCH_LIMIT = 64
#: Batched server reads in flight at once per session.
READS_IN_FLIGHT = 2
#: Writes joined into one pipeline at most (`Session.apply` from threads, per site).
WRITE_BATCH_LIMIT = 32
#: Writes of one `apply_many` call in one pipeline at most, per site. The caller (a batch of
#: transactions) already sized its round: a bulk batch's writes, SUP options included, stay in
#: one pipeline, so a round never needs more runspace pools than batches in flight.
MANY_WRITES_LIMIT = 128
#: Reading or reading back servers of known sites lists those sites' roles once (one Get per
#: site) instead of one Get per server when they are at least 1/SITE_LISTING_RATIO of the
#: sites' servers (as of the session's last whole read) and at least SITE_LISTING_MIN: below
#: that, listing every row costs the provider (and the emulator) more than the Gets it saves.
SITE_LISTING_RATIO = 4
SITE_LISTING_MIN = 8
#: Batched writes in flight at once per site (a site serialises its writes anyway; two let
#: one batch read back while the other writes).
WRITES_IN_FLIGHT = 2


class _ReadBatch:
    def __init__(self, names: Iterable[str]) -> None:
        self.names: dict[str, None] = dict.fromkeys(names)
        self.done = threading.Event()
        self.result: SiteRead | None = None
        self.error: BaseException | None = None


class ReadCoalescer:
    """Joins concurrent reads of a few servers into one pipeline, without reading stale data.

    A caller joins the batch that is still *collecting* (it has not started), so every batch
    starts after each of its callers asked: each caller gets a read at least as fresh as its own
    would have been. At most `in_flight` batches run at once; while they run, new callers
    collect into the next one. Each caller gets the whole batch's read (a superset of what it
    asked for) or the batch's error.
    """

    def __init__(
        self,
        read: Callable[[tuple[str, ...]], SiteRead],
        *,
        limit: int = READ_BATCH_LIMIT,
        in_flight: int = READS_IN_FLIGHT,
    ) -> None:
        self._read = read
        self._limit = max(1, limit)
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, in_flight))
        self._collecting: _ReadBatch | None = None
        #: Batches run and servers read, for tests and benchmarks.
        self.batches = 0
        self.requests = 0

    def read(self, names: Sequence[str]) -> SiteRead:
        with self._lock:
            self.requests += 1
            batch = self._collecting
            if batch is not None and len(batch.names) + len(names) <= self._limit:
                batch.names.update(dict.fromkeys(names))
                leader = False
            else:
                batch = _ReadBatch(names)
                self._collecting = batch
                leader = True
        if leader:
            with self._slots:  # waiting here is when followers join
                with self._lock:
                    if self._collecting is batch:
                        self._collecting = None
                    self.batches += 1
                    wanted = tuple(batch.names)
                try:
                    batch.result = self._read(wanted)
                except BaseException as exc:
                    batch.error = exc
                finally:
                    batch.done.set()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        assert batch.result is not None
        return batch.result


class _WriteBatch:
    def __init__(self, change: Change) -> None:
        self.changes: list[Change] = [change]
        self.keys: set[tuple[str, str]] = {_write_key(change)}
        self.done = threading.Event()
        self.results: list[WriteResult | BaseException] = []
        self.error: BaseException | None = None


def _write_key(change: Change) -> tuple[str, str]:
    return change.target.lower(), change.kind.name


def _batch_error(exc: BaseException, size: int) -> BaseException:
    """What one caller of a failed batch gets: its own exception object.

    A transport failure (the batch may or may not have run, wholly or in part) is a transient
    `TransportError` for every caller: each settles by re-reading, as for a lost answer.
    """
    if size == 1:
        return exc
    if isinstance(exc, TransportError | ConnectionError):
        return TransportError(f"a batch of {size} writes at one site got no answer: {exc}")
    try:
        return copy.copy(exc)
    except Exception:  # an exception that cannot be copied is passed as it is
        return exc


class WriteCoalescer:
    """Joins concurrent writes at one site into one pipeline (`Set-ProxyBatch.ps1`).

    A caller joins only a batch that is still *collecting* (it has not started), never one
    that holds a write to the same server and kind; each write runs once, in its own
    try/catch, and is read back in the same pipeline after the batch's writes. Each caller gets
    its own `WriteResult` or its own exception. A batch of one runs `run_one` (a `Session`
    sends it through `Set-ProxyBatch.ps1` too, for its compare-and-set).
    At most `in_flight` batches per site run at once; while they run, new callers collect.
    """

    def __init__(
        self,
        run_one: Callable[[Change], WriteResult],
        run_many: Callable[[str, list[Change]], list[WriteResult | BaseException]],
        *,
        limit: int = WRITE_BATCH_LIMIT,
        in_flight: int = WRITES_IN_FLIGHT,
    ) -> None:
        self._run_one = run_one
        self._run_many = run_many
        self._limit = max(1, limit)
        self._in_flight = max(1, in_flight)
        self._lock = threading.Lock()
        self._collecting: dict[str, _WriteBatch] = {}
        self._slots: dict[str, threading.Semaphore] = {}
        #: Batches run and writes asked, for tests and benchmarks.
        self.batches = 0
        self.requests = 0

    def apply(self, change: Change) -> WriteResult:
        site = str(change.site_code).upper()
        key = _write_key(change)
        with self._lock:
            self.requests += 1
            batch = self._collecting.get(site)
            if batch is not None and len(batch.changes) < self._limit and key not in batch.keys:
                batch.changes.append(change)
                batch.keys.add(key)
                index = len(batch.changes) - 1
                leader = False
            else:
                batch = _WriteBatch(change)
                self._collecting[site] = batch
                index = 0
                leader = True
            slots = self._slots.setdefault(site, threading.Semaphore(self._in_flight))
        if leader:
            self._lead(site, batch, slots)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise _batch_error(batch.error, len(batch.changes))
        outcome = batch.results[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _lead(self, site: str, batch: _WriteBatch, slots: threading.Semaphore) -> None:
        with slots:  # waiting here is when followers join
            with self._lock:
                if self._collecting.get(site) is batch:
                    del self._collecting[site]
                self.batches += 1
                changes = list(batch.changes)  # sealed: nobody joins any more
            try:
                if len(changes) == 1:
                    batch.results = [self._run_one(changes[0])]
                else:
                    batch.results = self._run_many(site, changes)
            except BaseException as exc:
                batch.error = exc
            finally:
                batch.done.set()


def _marker(exc: PowerShellError) -> tuple[str, str] | None:
    text = exc.message
    start = text.find(_MARKER)
    if start < 0:
        return None
    code, _, detail = text[start + len(_MARKER) :].partition(":")
    return code.strip(), detail.strip()


def map_session_error(exc: CMProxyError, info: ConnectionInfo) -> CMProxyError:
    """Turn a template's `cmproxy:<Code>:` error (or a missing CM cmdlet) into the right class."""
    if not isinstance(exc, PowerShellError):
        return exc
    marker = _marker(exc)
    where = info.server
    if marker is None:
        if exc.error_id == "CommandNotFoundException" and "-CM" in exc.message:
            return ConsoleNotInstalledError(
                f"{where}: a ConfigurationManager cmdlet is missing ({exc.message}). Install the "
                "Configuration Manager console on the SMS Provider (it ships the module), or "
                "set module_path / CMPROXY_MODULE_PATH to ConfigurationManager.psd1."
            )
        return exc
    code, detail = marker
    if code == "ConsoleNotInstalled":
        return ConsoleNotInstalledError(
            f"{where}: the ConfigurationManager PowerShell module was not found ({detail}). "
            "Install the Configuration Manager console on that server (it ships the module), "
            "or set module_path / CMPROXY_MODULE_PATH to the full path of "
            "ConfigurationManager.psd1 (…\\AdminConsole\\bin\\ConfigurationManager.psd1)."
        )
    if code == "DriveClash":
        return SiteDriveError(
            f"{where}: the site drive cannot be used: {detail}. The site code clashes with an "
            "existing PowerShell drive of another provider (for example a site code ENV). "
            "Remove that drive for the cmproxy account, or connect with a different account."
        )
    if code == "SiteDriveMissing":
        return SiteDriveError(
            f"{where}: {detail}. Check the site code and that provider_machine_name "
            "(CMPROXY_PROVIDER_MACHINE_NAME) names the SMS Provider, and that the account is "
            "a Configuration Manager administrative user."
        )
    if code == "SiteCodeUnknown":
        return SiteDriveError(
            f"{where}: the site code was not given and could not be guessed ({detail}); set "
            "site_code (CMPROXY_SITE_CODE)."
        )
    mapped = bootstrap_error(code, detail, where)
    if mapped is not None:
        return mapped
    if code in {"AccountNotFound", "ServerNotFound"}:
        return ItemNotFoundError(
            detail,
            fully_qualified_error_id=exc.fully_qualified_error_id,
            category="ObjectNotFound",
            target=exc.target,
            command=exc.command,
        )
    return exc


class Session:
    """A live connection to one SMS Provider, prepared for the ConfigMgr cmdlets.

    Nothing connects in the constructor; `open()` does (and `with Session(info) as s:`).
    `transport` is for tests: pass a `FakeTransport` to run without a network.
    """

    def __init__(self, info: ConnectionInfo, *, transport: Transport | None = None) -> None:
        self.info = info
        self._transport = transport
        self._opened = False
        self.site_code: str | None = info.site_code
        self.module_version: str = ""
        self.module_path: str = ""
        #: Every field of the bootstrap's answer, as it came (`cmproxy doctor` shows them all).
        self.bootstrap_record: dict[str, Any] = {}
        #: What the last bootstrap found (module source, drive, SMS Provider machine).
        self.bootstrap: BootstrapInfo | None = None
        self._open_lock = threading.RLock()
        self._reads = ReadCoalescer(self._read_servers)
        #: Servers per site as of the last whole read (to choose how to read many servers).
        self._site_sizes: dict[str, int] = {}
        self._writes = WriteCoalescer(self._write_one, self._write_batch)
        #: Told each pipeline's shell and command before it is sent (`watch_pipelines`).
        self._watchers: list[PipelineWatcher] = []

    def __repr__(self) -> str:
        state = "open" if self._opened else "closed"
        return f"Session({self.info.endpoint!r}, site_code={self.site_code!r}, {state})"

    # -- life cycle -------------------------------------------------------------------------

    def _setup_step(self) -> Step:
        # After the first bootstrap, the provider it found is passed on, so a later runspace
        # or WinRS process does not ask WMI (SMS_ProviderLocation) again.
        found = self.bootstrap.provider_machine if self.bootstrap is not None else ""
        return Step.of(
            BOOTSTRAP_TEMPLATE,
            SiteCode=self.site_code,
            ProviderMachineName=self.info.provider_machine_name or found or None,
            ModulePath=self.info.module_path,
        )

    def open(self) -> Session:
        """Connect and bootstrap; raises ConnectionError/AuthenticationError/TLSError or a
        SessionError subclass that says what to fix on the server. Thread-safe."""
        if self._opened:
            return self
        with self._open_lock:
            if self._opened:
                return self
            return self._open()

    def _open(self) -> Session:
        if self._transport is None:
            self._transport = create_transport(self.info, self._setup_step())
        else:
            self._transport.setup = self._setup_step()
        try:
            result = self._transport.connect()
        except CMProxyError as exc:
            self._close_transport()
            raise map_session_error(exc, self.info) from None
        self._absorb_bootstrap(result)
        self._opened = True
        return self

    def _absorb_bootstrap(self, result: Result | None) -> None:
        records = result.records() if result is not None else []
        if not records:
            raise SessionError(
                f"{self.info.server}: the session bootstrap returned nothing; the endpoint does "
                "not look like a Windows PowerShell host with the ConfigurationManager module."
            )
        boot = records[-1]
        self.bootstrap_record = dict(boot)
        site_code = str(boot.get("SiteCode") or "")
        self.site_code = validate_site_code(site_code, "site_code")
        self.module_version = str(boot.get("ModuleVersion") or "")
        self.module_path = str(boot.get("ModulePath") or "")
        self.bootstrap = BootstrapInfo.from_record(boot)
        log.info(
            "session to %s ready: site %s, ConfigurationManager %s%s",
            self.info.endpoint,
            self.site_code,
            self.module_version or "(version unknown)",
            " (site drive created)" if boot.get("DriveCreated") else "",
        )
        assert self._transport is not None
        # Later fresh runspaces/processes bootstrap straight to the known site.
        self._transport.setup = self._setup_step()

    def _close_transport(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()

    def close(self) -> None:
        """Close the remote runspace/shell. Safe to call twice."""
        with self._open_lock:
            self._opened = False
            self._close_transport()

    def __enter__(self) -> Session:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._opened

    # -- running ----------------------------------------------------------------------------

    def run_step(self, step: Step) -> Result:
        """Run one step (a template with bound values) in the prepared runspace.

        Safe to call from several threads: over PSRP concurrent steps run on separate runspace
        pools of this session (see `PSRPTransport`), over WinRS one after the other.
        """
        if not self._opened:
            self.open()
        transport = self._transport
        assert transport is not None
        transport.watchers = self._watchers  # a recreated transport keeps the watchers
        try:
            return transport.run(step)
        except CMProxyError as exc:
            raise map_session_error(exc, self.info) from None

    def warm(self, concurrency: int, *, secrets: bool = False) -> None:
        """Get ready for `concurrency` concurrent steps: over PSRP, open that many runspace
        pools (up to the transport's limit) at once, each bootstrapped, so their module
        imports run in parallel rather than on the critical path. A session not open yet is
        opened on one of them (`apply_bulk` does this: pass it an unopened session and all
        its pools open at once). `secrets`: steps will send passwords, so each pool exchanges
        its SecureString session key while it imports the module."""
        with self._open_lock:
            if not self._opened:
                # Not open yet: open every lane at once (each bootstraps in parallel), then
                # open the session on one of them, so only one import is on the clock.
                if self._transport is None:
                    self._transport = create_transport(self.info, self._setup_step())
                # The session opens on the first lane ready; the others go on warming (a step
                # waits for one of them rather than open another pool).
                self._transport.warm(concurrency, secrets=secrets, wait=False)
                self._open()
                return
        transport = self._transport
        if transport is not None:
            transport.warm(concurrency, secrets=secrets)

    # -- pipelines and shells (what a killed process may leave running) ---------------------

    @contextlib.contextmanager
    def watch_pipelines(self, watcher: PipelineWatcher) -> Iterator[None]:
        """Call `watcher` with each pipeline's shell and command just before it is sent
        (from any thread), while the block runs; if it raises, that pipeline is not sent."""
        self._watchers.append(watcher)
        try:
            yield
        finally:
            self._watchers.remove(watcher)

    def own_shells(self) -> frozenset[str]:
        """The shells this session holds open now (never another process's orphans)."""
        transport = self._transport
        return transport.own_shells() if transport is not None else frozenset()

    def list_shells(self) -> list[RemoteShell] | None:
        """This account's shells on the endpoint (WSMan Enumerate); None if the transport
        cannot list them."""
        if not self._opened:
            self.open()
        assert self._transport is not None
        try:
            return self._transport.list_shells()
        except CMProxyError as exc:
            raise map_session_error(exc, self.info) from None

    def delete_shell(self, resource_uri: str, shell_id: str) -> bool:
        """Delete one of this account's shells, ending what runs in it; False if gone."""
        if not self._opened:
            self.open()
        assert self._transport is not None
        try:
            return self._transport.delete_shell(resource_uri, shell_id)
        except CMProxyError as exc:
            raise map_session_error(exc, self.info) from None

    def run(self, template: str, **parameters: Any) -> Result:
        """Run template `template` with `parameters` bound to its param() block."""
        return self.run_step(Step.of(template, **parameters))

    # -- reads ------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The WinRM endpoint URL: a stable identity of this SMS Provider (for journals)."""
        return self.info.endpoint

    def read(
        self,
        servers: Iterable[str] | None = None,
        *,
        site_codes: Iterable[str] | None = None,
    ) -> SiteRead:
        """The hierarchy in one pipeline, with any read issues.

        `servers` limits the servers read (sites and accounts are always read whole);
        `site_codes` limits the sites whose servers, SUP component and accounts are read.
        With both, the named servers of those sites are read, by name or (when they are a good
        part of those sites, `SITE_LISTING_RATIO`) by listing the sites' roles once. With
        `servers` alone, reads from several threads share one pipeline.
        """
        codes: Sequence[str] | None = None
        if site_codes is not None:
            codes = tuple(validate_site_code(c, "site_codes") for c in site_codes)
        names: Sequence[str] | None = None
        if servers is not None:
            names = tuple(str(n).removeprefix("\\\\") for n in servers)
            if names and codes is None:
                # Concurrent reads of a few servers (the transactions of a bulk change) share
                # one pipeline; each still starts after its caller asked.
                return self._reads.read(names)
        if names is None and codes is None and self._runs_concurrently():
            return self._read_sites_in_parallel()
        by_site = bool(names) and codes is not None and self._list_sites(len(names or ()), codes)
        result = self.run(
            READ_TEMPLATE,
            SiteCode=codes,
            SiteSystemServerName=names,
            BySite=True if by_site else None,
        )
        read = read_site_state(result.records())
        if names is None:
            self._note_sizes(read.state, codes)
        return read

    def _runs_concurrently(self) -> bool:
        """Can steps of this session run at once (several runspace pools)? Opens it."""
        if not self._opened:
            self.open()
        return int(getattr(self._transport, "max_pools", 1)) > 1

    def _read_sites_in_parallel(self) -> SiteRead:
        """The whole hierarchy in several pipelines at once, each reading a share of the sites
        (`-Shard i -Shards n`; one per site when the sites are known from a read before, else
        READ_SHARDS): the provider lists one site while this side takes in another."""
        shards = len(self._site_sizes) or READ_SHARDS
        with ThreadPoolExecutor(shards, thread_name_prefix="cmproxy-read") as pool:
            parts = list(
                pool.map(lambda i: self.run(READ_TEMPLATE, Shard=i, Shards=shards), range(shards))
            )
        read = read_site_state([r for part in parts for r in part.records()])
        self._note_sizes(read.state, None)
        return read

    def _note_sizes(self, state: SiteState, codes: Sequence[str] | None) -> None:
        sizes: dict[str, int] = {}
        for server in state.servers:
            sizes[server.site_code.upper()] = sizes.get(server.site_code.upper(), 0) + 1
        with self._open_lock:
            if codes is None:
                self._site_sizes = sizes
            else:
                self._site_sizes.update({c.upper(): sizes.get(c.upper(), 0) for c in codes})

    def _list_sites(self, count: int, codes: Sequence[str]) -> bool:
        """Is listing `codes`' roles cheaper than `count` Gets by name? (see SITE_LISTING_RATIO)"""
        sizes = [self._site_sizes.get(c.upper()) for c in codes]
        if count < SITE_LISTING_MIN or any(size is None for size in sizes):
            return False
        return count * SITE_LISTING_RATIO >= sum(size or 0 for size in sizes)

    def _read_servers(self, names: tuple[str, ...]) -> SiteRead:
        result = self.run(READ_TEMPLATE, SiteSystemServerName=names)
        return read_site_state(result.records())

    def read_state(
        self,
        servers: Sequence[str] | None = None,
        *,
        site_codes: Iterable[str] | None = None,
    ) -> SiteState:
        """Sites, servers with proxies and roles, SUP flags and sync source, accounts."""
        return self.read(servers, site_codes=site_codes).state

    # -- writes -----------------------------------------------------------------------------

    def write(self, change: Change) -> WriteResult:
        """Execute one planned change and read back what the site now holds."""

        return apply_change(self, change)

    def apply(self, change: Change) -> WriteResult:
        """Run the change once (the transaction's `SiteClient.apply`); never retries.

        The write template reads the value back in the same pipeline; the result's `matches`
        spares the transaction a separate re-read. Concurrent server proxy and SUP option
        writes at one site (the transactions of a bulk change) share one pipeline; see
        `WriteCoalescer` and docs/sessions.md.
        """

        if not batchable(change):
            return self.write(change)
        return self._writes.apply(change)

    def _write_one(self, change: Change) -> WriteResult:
        """One server proxy or SUP option write, through the batch template all the same: it
        is the one that compares the server with the planned-from values just before its
        `Set` (compare-and-set); the single-write templates do not."""
        (outcome,) = self._write_batch(str(change.site_code).upper(), [change])
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _write_batch(
        self, site: str, changes: list[Change], groups: Sequence[int] | None = None
    ) -> list[WriteResult | BaseException]:

        by_site = self._list_sites(len(changes), [site])
        step = batch_step(site, changes, read_back_by_site=by_site, groups=groups)
        result = self.run_step(step)
        return [
            map_session_error(r, self.info) if isinstance(r, CMProxyError) else r
            for r in batch_results(changes, result)
        ]

    def apply_many(
        self, changes: Sequence[Change], groups: Sequence[int] | None = None
    ) -> list[WriteResult | BaseException]:
        """Run each change once; per change, its `WriteResult` or the exception it raised.

        Server proxy and SUP option writes are grouped per site into `Set-ProxyBatch.ps1`
        pipelines of up to `MANY_WRITES_LIMIT` (a group is never split; a lone write goes
        through it too, for its compare-and-set); other changes
        (accounts) run their own template; all of them in parallel. `groups[i]` names change
        i's transaction: its writes run in the given order, and after one fails the later
        ones are not made (`SkippedWriteError`). A batch that got no answer is a transient
        `TransportError` for each of its changes (settle by re-reading). Never retries.
        """

        outcomes: list[WriteResult | BaseException | None] = [None] * len(changes)
        per_site: dict[str, list[int]] = {}
        batches: list[tuple[str, list[int]]] = []
        for i, change in enumerate(changes):
            site = str(change.site_code).upper()
            if batchable(change):
                per_site.setdefault(site, []).append(i)
            else:
                batches.append((site, [i]))  # its own template, in parallel with the rest
        for site, idx in per_site.items():
            current: list[int] = []
            for i in idx:
                same_group = (
                    groups is not None and bool(current) and groups[current[-1]] == groups[i]
                )
                if len(current) >= MANY_WRITES_LIMIT and not same_group:
                    batches.append((site, current))
                    current = []
                current.append(i)
            if current:
                batches.append((site, current))

        def run(site: str, idx: list[int]) -> None:
            batch = [changes[i] for i in idx]
            try:
                if len(batch) == 1 and not batchable(batch[0]):
                    got: list[WriteResult | BaseException] = [self.write(batch[0])]
                else:
                    tags = [groups[i] for i in idx] if groups is not None else None
                    got = self._write_batch(site, batch, tags)
            except Exception as exc:
                got = [_batch_error(exc, len(batch)) for _ in batch]
            for i, outcome in zip(idx, got, strict=True):
                outcomes[i] = outcome

        if len(batches) == 1:
            run(*batches[0])
        elif batches:
            with ThreadPoolExecutor(len(batches), thread_name_prefix="cmproxy-write") as pool:
                list(pool.map(lambda b: run(*b), batches))
        return [o for o in outcomes if o is not None]

    def apply_plan(self, plan: Plan) -> list[WriteResult]:
        """Write every change in order, stopping at the first error (no rollback here)."""
        return [self.write(change) for change in plan]


def connect(info: ConnectionInfo) -> Session:
    """An open session to `info` (use it as a context manager to close it)."""
    return Session(info).open()
