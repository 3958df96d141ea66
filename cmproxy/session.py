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
import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

from cmproxy._exceptions import (
    CMProxyError,
    PlanError,
    SessionError,
)
from cmproxy.bootstrap import BootstrapInfo
from cmproxy.coalescing import ReadCoalescer, WriteCoalescer, write_batches
from cmproxy.connection import ConnectionInfo
from cmproxy.grouping import batch_error
from cmproxy.markers import map_session_error
from cmproxy.model import ProxySettings, SiteState, validate_site_code
from cmproxy.reader import SiteRead, read_site_state
from cmproxy.settings import role_settings
from cmproxy.steps import PipelineWatcher, RemoteShell
from cmproxy.transports import Result, Step, Transport, create_transport
from cmproxy.tuning import DEFAULT_TUNING, Tuning
from cmproxy.writer import WriteResult, apply_change, batch_results, batch_step, batchable

if TYPE_CHECKING:
    from cmproxy.plan import Change, Plan

__all__ = [
    "BOOTSTRAP_TEMPLATE",
    "READ_TEMPLATE",
    "ReadCoalescer",
    "Session",
    "Tuning",
    "WriteCoalescer",
    "connect",
    "map_session_error",
]

log = logging.getLogger(__name__)

BOOTSTRAP_TEMPLATE = "Initialize-CMSession"
READ_TEMPLATE = "Get-SiteState"
#: Parameter names the Python side binds, per template (checked against each param() block).
SESSION_TEMPLATE_PARAMETERS: dict[str, frozenset[str]] = {
    BOOTSTRAP_TEMPLATE: frozenset({"SiteCode", "ProviderMachineName", "ModulePath"}),
    READ_TEMPLATE: frozenset({"SiteCode", "SiteSystemServerName", "BySite", "Shard", "Shards"}),
}

#: The defaults of `Tuning` under the names docs/performance.md and docs/sessions.md use.
READ_SHARDS = DEFAULT_TUNING.read_shards
READ_BATCH_LIMIT = DEFAULT_TUNING.read_batch_limit
READS_IN_FLIGHT = DEFAULT_TUNING.reads_in_flight
WRITE_BATCH_LIMIT = DEFAULT_TUNING.write_batch_limit
MANY_WRITES_LIMIT = DEFAULT_TUNING.many_writes_limit
SITE_LISTING_RATIO = DEFAULT_TUNING.site_listing_ratio
SITE_LISTING_MIN = DEFAULT_TUNING.site_listing_min
WRITES_IN_FLIGHT = DEFAULT_TUNING.writes_in_flight


class Session:
    """A live connection to one SMS Provider, prepared for the ConfigMgr cmdlets.

    Nothing connects in the constructor; `open()` does (and `with Session(info) as s:`).
    `transport` is for tests: pass a `FakeTransport` to run without a network. `tuning`: how
    reads and writes are batched and sharded (`cmproxy.tuning`; the defaults are measured).
    """

    def __init__(
        self,
        info: ConnectionInfo,
        *,
        transport: Transport | None = None,
        tuning: Tuning = DEFAULT_TUNING,
    ) -> None:
        self.info = info
        self.tuning = tuning
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
        self._reads = ReadCoalescer(
            self._read_servers, limit=tuning.read_batch_limit, in_flight=tuning.reads_in_flight
        )
        #: Servers per site as of the last whole read (to choose how to read many servers).
        self._site_sizes: dict[str, int] = {}
        self._writes = WriteCoalescer(
            self._write_one,
            self._write_batch,
            limit=tuning.write_batch_limit,
            in_flight=tuning.writes_in_flight,
        )
        #: Told each pipeline's shell and command before it is sent (`watch_pipelines`).
        self._watchers: list[PipelineWatcher] = []
        #: Per site (upper case), the accounts its write pipelines create first, one per open
        #: `creating_accounts` context (two bulk runs may share a session).
        self._creating: dict[str, list[Change]] = {}
        self._creating_lock = threading.Lock()

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
                self._transport.warm(
                    concurrency, secrets=secrets, wait=False, at_once=self.tuning.imports_at_once
                )
                self._open()
                return
        transport = self._transport
        if transport is not None:
            transport.warm(concurrency, secrets=secrets, at_once=self.tuning.imports_at_once)

    def lanes_ready(self) -> int | None:
        """Steps this session can run at once now while some of its lanes still warm (over
        PSRP: pools open and bootstrapped, when `imports_at_once` opens them in turns); None
        when none is warming."""
        transport = self._transport
        return None if transport is None else transport.lanes_ready()

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
        read = read_site_state(result.records(), role_settings())
        if names is None:
            self._note_sizes(read.state, codes)
        return read

    def _runs_concurrently(self) -> bool:
        """Can steps of this session run at once (several runspace pools)? Opens it."""
        if not self._opened:
            self.open()
        assert self._transport is not None
        return self._transport.max_pools > 1

    def _read_sites_in_parallel(self) -> SiteRead:
        """The whole hierarchy in several pipelines at once, each reading a share of the sites
        (`-Shard i -Shards n`; one per site when the sites are known from a read before, else
        READ_SHARDS): the provider lists one site while this side takes in another."""
        shards = len(self._site_sizes) or self.tuning.read_shards
        with ThreadPoolExecutor(shards, thread_name_prefix="cmproxy-read") as pool:
            parts = list(
                pool.map(lambda i: self.run(READ_TEMPLATE, Shard=i, Shards=shards), range(shards))
            )
        read = read_site_state([r for part in parts for r in part.records()], role_settings())
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
        if count < self.tuning.site_listing_min or any(size is None for size in sizes):
            return False
        return count * self.tuning.site_listing_ratio >= sum(size or 0 for size in sizes)

    def _read_servers(self, names: tuple[str, ...]) -> SiteRead:
        result = self.run(READ_TEMPLATE, SiteSystemServerName=names)
        return read_site_state(result.records(), role_settings())

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
        step = batch_step(
            site,
            changes,
            read_back_by_site=by_site,
            groups=groups,
            new_account=self._new_account_for(site, changes),
        )
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
        batches = write_batches(changes, groups, self.tuning.many_writes_limit)

        def run(site: str, idx: list[int]) -> None:
            batch = [changes[i] for i in idx]
            try:
                if len(batch) == 1 and not batchable(batch[0]):
                    got: list[WriteResult | BaseException] = [self.write(batch[0])]
                else:
                    tags = [groups[i] for i in idx] if groups is not None else None
                    got = self._write_batch(site, batch, tags)
            except Exception as exc:
                got = [batch_error(exc, len(batch)) for _ in batch]
            for i, outcome in zip(idx, got, strict=True):
                outcomes[i] = outcome

        if len(batches) == 1:
            run(*batches[0])
        elif batches:
            with ThreadPoolExecutor(len(batches), thread_name_prefix="cmproxy-write") as pool:
                list(pool.map(lambda b: run(*b), batches))
        return [o for o in outcomes if o is not None]

    @contextlib.contextmanager
    def creating_accounts(self, creations: Sequence[Change]) -> Iterator[None]:
        """Every write pipeline at a site of `creations` registers its account first
        (`CreatesAccountsInWrites`; `batch_step(new_account=...)`) while this is open."""
        by_site = {str(c.site_code).upper(): c for c in creations}
        if len(by_site) != len(creations):
            raise PlanError("creating_accounts takes at most one account per site")
        with self._creating_lock:
            for site, change in by_site.items():
                self._creating.setdefault(site, []).append(change)
        try:
            yield
        finally:
            with self._creating_lock:
                for site, change in by_site.items():
                    pending = self._creating.get(site, [])
                    pending.remove(change)
                    if not pending:
                        self._creating.pop(site, None)

    def _new_account_for(self, site: str, changes: Sequence[Change]) -> Change | None:
        """The account a batch at `site` creates first: one being created there
        (`creating_accounts`) that its changes use."""
        with self._creating_lock:
            pending = list(self._creating.get(site.upper(), ()))
        used = {
            str(c.after.account).lower()
            for c in changes
            if isinstance(c.after, ProxySettings) and c.after.account
        }
        return next((c for c in pending if str(c.target).lower() in used), None)

    def apply_plan(self, plan: Plan) -> list[WriteResult]:
        """Write every change in order, stopping at the first error (no rollback here)."""
        return [self.write(change) for change in plan]


def connect(info: ConnectionInfo) -> Session:
    """An open session to `info` (use it as a context manager to close it)."""
    return Session(info).open()
