"""Bulk changes: one desired state, many servers, a few SMS Providers.

One client (session) per SMS Provider — never one per server. The whole desired state is
planned first, so a rule violation anywhere stops everything before a single write. Needed
accounts are created once (each site's in parallel), then every server gets its own
transaction (a cloud DP travels with its managing primary site server, R5). The servers of a
site are taken in batches whose transactions run side by side (`run_transactions`: shared
reads, journal commits and write pipelines, separate outcomes), a few batches per site at
once. With `all_or_nothing=True`, one failure puts every changed server back to its snapshot.
Ctrl-C cancels cleanly: batches not started are left untouched, in-flight transactions finish
or roll back, none is left open. (Only a write accepted but still not visible on a lagging
hierarchy leaves its transaction open, on purpose, for `recover`: docs/transactions.md.)
"""

from __future__ import annotations

import collections
import contextlib
import html
import importlib.util
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import attrs

from cmproxy._exceptions import CMProxyError, PlanError, ValidationError
from cmproxy.desired import DesiredSpec
from cmproxy.journal import Hold, Journal
from cmproxy.model import KnownAccount, SiteState
from cmproxy.plan import (
    Change,
    ChangeKind,
    DesiredState,
    Plan,
    PlanOptions,
    ProxyRequest,
    SettingRequest,
    SupFlagsRequest,
    plan,
)
from cmproxy.ports import CreatesAccountsInWrites, ReportsLanes, Warms, read_back_matches
from cmproxy.render import PLAN_COLUMNS, dataframe, plan_rows
from cmproxy.results import Results, ServerResult
from cmproxy.retry import RetryPolicy
from cmproxy.roles import CloudDistributionPoint
from cmproxy.transaction import (
    RESTORE_OPTIONS,
    Hook,
    Outcome,
    ServerOutcome,
    ServerSnapshot,
    SiteClient,
    TransactionResult,
    apply_changes,
    restore_desired,
    run_transactions,
)
from cmproxy.tuning import DEFAULT_TUNING

__all__ = ["BulkPlan", "apply_bulk", "plan_bulk"]

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("cmproxy.bulk")


@attrs.frozen
class _Provider:
    client: SiteClient
    state: SiteState


#: One server's transaction in a bulk run: (its index in the results, provider, key, desired).
_Job = tuple[int, _Provider, str, DesiredState]


class _AccountsFirst:
    """The accounts a bulk change creates, made while its batches get ready (plans, journal
    claims): no batch writes before they all exist (`wait` is each batch's `before_writes`).

    A client that reads nothing back in the creating pipeline is re-read to confirm them.
    """

    def __init__(self, work: Sequence[tuple[SiteClient, list[Change]]]) -> None:
        self._work = [(client, creations) for client, creations in work if creations]
        self._done = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        if not self._work:
            self._done.set()
            return
        threading.Thread(target=self._create, name="cmproxy-accounts", daemon=True).start()

    def _create(self) -> None:
        try:
            for client, creations in self._work:
                created = apply_changes(client, creations)  # each site's account in parallel
                for written in created:
                    if isinstance(written, BaseException):
                        raise written
                if all(read_back_matches(w) is True for w in created):
                    continue  # read back in the same pipeline
                state = client.read_state(None)
                missing = [c for c in creations if not state.has_account(c.target, c.site_code)]
                if missing:
                    raise PlanError(
                        f"the account {missing[0].target} is not registered at site "
                        f"{missing[0].site_code} after it was created; no server was changed"
                    )
        except BaseException as error:
            self.error = error
        finally:
            self._done.set()

    def wait(self) -> None:
        """Return once every account exists; raise what stopped their creation."""
        self._done.wait()
        if self.error is not None:
            raise self.error


@attrs.frozen
class BulkPlan:
    """The whole change, planned per provider: look at it before anything is written."""

    plans: tuple[tuple[str, Plan], ...]  # (provider endpoint, plan)
    desired: tuple[tuple[str, DesiredState], ...]

    @property
    def changes(self) -> int:
        return sum(len(p) for _, p in self.plans)

    @property
    def is_empty(self) -> bool:
        return self.changes == 0

    def render(self) -> str:
        parts = [f"# {endpoint}\n{p.render()}" for endpoint, p in self.plans]
        return "\n\n".join(parts)

    def _repr_html_(self) -> str:
        return "".join(
            f"<h4>{html.escape(endpoint)}</h4>{p._repr_html_()}" for endpoint, p in self.plans
        )

    def to_dataframe(self) -> pd.DataFrame:
        """One row per change, with the SMS Provider it goes through (`pandas` extra)."""
        rows = [{"provider": e, **row} for e, p in self.plans for row in plan_rows(p)]
        return dataframe(rows, ("provider", *PLAN_COLUMNS))

    def to_dict(self) -> dict[str, Any]:
        return {"providers": [{"endpoint": e, "plan": p.to_dict()} for e, p in self.plans]}


def _split(
    desired: DesiredState | DesiredSpec, providers: Sequence[_Provider]
) -> list[tuple[_Provider, DesiredState]]:
    """Give each provider the requests for the servers it manages (the first that has one,
    so overlapping providers never change a server twice)."""
    result: list[tuple[_Provider, DesiredState]] = []
    claimed: set[str] = set()
    for provider in providers:
        wanted = desired.resolve(provider.state) if isinstance(desired, DesiredSpec) else desired
        names = set(wanted.servers)
        mine = {n for n in names - claimed if provider.state.server(n) is not None}
        claimed |= mine
        result.append(
            (
                provider,
                DesiredState(
                    proxies=[r for r in wanted.proxies if r.server.lower() in mine],
                    sup_flags=[r for r in wanted.sup_flags if r.server.lower() in mine],
                    accounts=wanted.accounts,
                    settings=[r for r in wanted.settings if r.server.lower() in mine],
                ),
            )
        )
    if isinstance(desired, DesiredState):
        asked = set(desired.servers)
        unknown = sorted(asked - claimed)
        if unknown:
            raise ValidationError(
                "servers", unknown[0], "is not managed by any of the given SMS Providers"
            )
    return result


def _groups(state: SiteState, desired: DesiredState) -> dict[str, DesiredState]:
    """One desired state per target server; a cloud DP goes with its primary site server."""

    def target(name: str) -> str:
        server = state.server(name)
        if server is None:
            return name.lower()
        dp = server.role(CloudDistributionPoint)
        if isinstance(dp, CloudDistributionPoint):
            site = state.site(server.site_code)
            managing = dp.managing_site_server or (site.server if site else None)
            if managing:
                return managing.lower()
        return server.key

    proxies: dict[str, list[ProxyRequest]] = {}
    flags: dict[str, list[SupFlagsRequest]] = {}
    others: dict[str, list[SettingRequest]] = {}
    for r in desired.proxies:
        proxies.setdefault(target(r.server), []).append(r)
    for f in desired.sup_flags:
        flags.setdefault(target(f.server), []).append(f)
    for o in desired.settings:
        others.setdefault(target(o.server), []).append(o)
    return {
        key: DesiredState(
            proxies=proxies.get(key, []),
            sup_flags=flags.get(key, []),
            accounts=desired.accounts,
            settings=others.get(key, []),
        )
        for key in sorted(set(proxies) | set(flags) | set(others))
    }


def _warm(client: Warms, endpoint: str, concurrency: int, secrets: bool) -> None:
    try:
        client.warm(concurrency, secrets=secrets)
    except Exception as exc:  # a lane that cannot open is reported by the step that needs it
        log.info("could not prepare %s for concurrent steps: %s", endpoint, exc)


def _read_providers(clients: Sequence[SiteClient], policy: RetryPolicy) -> list[_Provider]:
    def read(client: SiteClient) -> _Provider:
        state = policy.call(lambda: client.read_state(None), operation="read site", idempotent=True)
        return _Provider(client, state)

    return [read(c) for c in clients]


def plan_bulk(
    clients: Sequence[SiteClient],
    desired: DesiredState | DesiredSpec,
    *,
    options: PlanOptions | None = None,
    policy: RetryPolicy | None = None,
) -> BulkPlan:
    """Plan the whole change (one read per provider); raises on any rule violation."""
    policy = policy or RetryPolicy()
    providers = _read_providers(clients, policy)
    opts = options or desired.options  # a file's options: the spec's or the resolved one's
    split = _split(desired, providers)
    return BulkPlan(
        tuple((p.client.endpoint, plan(p.state, d, opts)) for p, d in split),
        tuple((p.client.endpoint, d) for p, d in split),
    )


def _want_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    if "ANSIBLE_MODULE_ARGS" in os.environ or os.environ.get("CMPROXY_NO_PROGRESS"):
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules


def apply_bulk(  # noqa: PLR0913 - public: clients, desired state, keyword options
    clients: Sequence[SiteClient],
    desired: DesiredState | DesiredSpec,
    *,
    journal: Journal,
    options: PlanOptions | None = None,
    policy: RetryPolicy | None = None,
    all_or_nothing: bool = False,
    max_workers: int = 16,
    per_provider: int = 12,
    per_site: int = 3,
    batch_size: int = 32,
    recheck_after: float = math.inf,
    progress: bool | None = None,
    hooks: Sequence[Hook] = (),
    dry_run: bool = False,
    cancel: threading.Event | None = None,
) -> Results:
    """Apply `desired` across `clients` (one per SMS Provider), one transaction per server.

    Rule violations raise before anything is written. Apply failures do not raise: the
    `Results` say per server what happened. `cancel` (or Ctrl-C) stops starting new servers.

    The servers of each site are taken `batch_size` at a time: each server still gets its own
    transaction (journal entry, conflict check, verify, rollback), but a batch's transactions
    share their round trips (`run_transactions`: one fresh read, one write pipeline per
    round). Up to `per_site` batches per site, `per_provider` per client (a `Session` is
    thread-safe: its steps run on a few runspace pools) and `max_workers` overall run at once;
    see docs/performance.md for how the defaults were chosen.

    The servers asked for by name are held in the journal before the hierarchy is read, so
    that read is also each transaction's conflict check: a batch started within
    `recheck_after` seconds of it writes without re-reading; a later one re-reads its servers
    first. Either way each write compares its server with the values it was planned from in
    its own pipeline, just before its `Set` (compare-and-set, docs/transactions.md): an edit
    made meanwhile outside cmproxy is a conflict, never overwritten, with the default
    `recheck_after=math.inf` too; a re-read only finds it before the batch writes anything.
    A `DesiredSpec`, whose servers are only known after the read, re-reads per batch.

    `all_or_nothing=True` is journalled as one unit per provider before anything is written:
    if the run is killed, `recover` puts all of its servers back (docs/transactions.md).
    """
    knobs = _Knobs(
        options=options,
        policy=policy or RetryPolicy(),
        all_or_nothing=all_or_nothing,
        max_workers=max(1, max_workers),
        per_provider=max(1, per_provider),
        per_site=max(1, per_site),
        batch_size=max(1, batch_size),
        recheck_after=recheck_after,
        progress=progress,
        hooks=hooks,
        dry_run=dry_run,
    )
    holds: dict[str, Hold] = {}
    if not dry_run and isinstance(desired, DesiredState):
        holds = {c.endpoint: journal.hold(c.endpoint, desired.servers) for c in clients}
    # All-or-nothing is journalled as one unit per provider before anything is written: a
    # run killed before it ends is recovered as one (`recover` puts all of it back).
    units: dict[str, str] = {}
    if not dry_run and all_or_nothing:
        units = {c.endpoint: journal.begin_unit(c.endpoint) for c in clients}
    try:
        run = _BulkRun(clients, desired, journal, knobs, holds, units, cancel or threading.Event())
        results = run.run()
    finally:
        for hold in holds.values():
            journal.release(hold)
    for unit in units.values():  # the run ended as a whole (kept, or undone above)
        journal.close_unit(unit)
    return results


@attrs.frozen
class _Knobs:
    """How an `apply_bulk` call runs: its keyword options, held once (see there)."""

    options: PlanOptions | None
    policy: RetryPolicy
    all_or_nothing: bool
    max_workers: int
    per_provider: int
    per_site: int
    batch_size: int
    recheck_after: float
    progress: bool | None
    hooks: Sequence[Hook]
    dry_run: bool


@attrs.define
class _BulkRun:
    """`apply_bulk` once the holds are taken (it releases them whatever happens here)."""

    clients: Sequence[SiteClient]
    desired: DesiredState | DesiredSpec
    journal: Journal
    knobs: _Knobs
    holds: dict[str, Hold]
    units: dict[str, str]
    cancel: threading.Event
    #: When the hierarchy was read (after the holds: fresh for the held servers).
    read_at: float = 0.0

    @property
    def plan_options(self) -> PlanOptions | None:
        if self.knobs.options is not None:
            return self.knobs.options
        return self.desired.options  # a file's options: the spec's or the resolved one's

    def run(self) -> Results:
        providers = self.read()
        split = _split(self.desired, providers)
        # Validate everything first: nothing is written unless the whole change is allowed.
        plans = [(p, d, plan(p.state, d, self.plan_options)) for p, d in split]
        if self.knobs.dry_run:
            return _dry_run(plans)
        jobs, creating = _jobs(plans)
        in_writes, first = _where_accounts_are_made(creating)
        accounts = _AccountsFirst(first)
        with contextlib.ExitStack() as stack:
            for client, creations in in_writes:
                stack.enter_context(client.creating_accounts(creations))
            accounts.start()
            done = self.schedule(jobs, accounts)
        if accounts.error is not None:
            raise accounts.error  # no batch wrote (each waited for the accounts)
        results = Results.merge(part for _, part in sorted(done, key=lambda d: d[0]))
        if self.cancel.is_set():
            results = attrs.evolve(results, cancelled=True)
        if self.knobs.all_or_nothing and not results.ok:
            results = self.undo_changed(results, providers)
        return results

    def read(self) -> list[_Provider]:
        """One read per provider. Sessions that can open their runspace pools ahead do it
        meanwhile, so the module imports of the concurrent lanes are not paid one by one
        later; with passwords to send (accounts to create), each pool also exchanges its
        SecureString key during its import."""
        secrets = any(a.password is not None for a in self.desired.accounts)
        warm = [(c, c.endpoint) for c in self.clients if isinstance(c, Warms)]
        # A dry run only reads: as many lanes as its read has shards, opened at once (opened
        # one by one as the shards ask, each would pay its module import on the clock).
        lanes = self.knobs.per_provider
        if self.knobs.dry_run:
            lanes = min(lanes, DEFAULT_TUNING.read_shards)
            secrets = False
        with ThreadPoolExecutor(max(1, len(warm)), thread_name_prefix="cmproxy-warm") as pool:
            for client, endpoint in warm:
                pool.submit(_warm, client, endpoint, lanes, secrets)
            self.read_at = time.monotonic()
            return _read_providers(self.clients, self.knobs.policy)

    def schedule(
        self, jobs: list[tuple[_Provider, str, DesiredState]], accounts: _AccountsFirst
    ) -> list[tuple[int, Results]]:
        """Run the chunks of every site (`_Lanes` says which next) on a thread pool; Ctrl-C
        (or `cancel`) starts no more of them, in-flight ones finish or roll back."""
        knobs = self.knobs
        chunks = _chunks(jobs, knobs.batch_size, knobs.per_site)
        # The sites with the most servers start first: their writes take longest.
        queues = sorted(chunks.values(), key=lambda q: -sum(len(chunk) for chunk in q))
        lanes = _Lanes([collections.deque(q) for q in queues], knobs)
        bar = _progress_bar(len(jobs), _want_progress(knobs.progress))
        done: list[tuple[int, Results]] = []
        with ThreadPoolExecutor(lanes.threads, thread_name_prefix="cmproxy-bulk") as pool:

            def start() -> None:
                while not self.cancel.is_set() and (ready := lanes.next_ready()) is not None:
                    lanes.running[pool.submit(self.run_chunk, ready[1], accounts.wait)] = ready

            def drain(timeout: float | None) -> None:
                start()
                while lanes.running:
                    finished, _ = wait(lanes.running, timeout, FIRST_COMPLETED)
                    for future in finished:
                        _lane, chunk = lanes.running.pop(future)
                        done.extend(future.result())
                        bar.update(len(chunk))
                    start()

            try:
                # A timeout: Ctrl-C reaches this thread on every platform, and a lane that
                # became ready (`_provider_limit`) takes the next chunk within it.
                drain(_POLL_S)
            except KeyboardInterrupt:
                self.cancel.set()
                log.warning("cancelled: waiting for in-flight transactions to finish or roll back")
                drain(None)
            finally:
                for chunk in lanes.left():
                    done += [
                        (i, _skipped(p.state, k, g, "cancelled before start"))
                        for i, p, k, g in chunk
                    ]
                    bar.update(len(chunk))
                bar.close()
        return done

    def run_chunk(
        self, chunk: Sequence[_Job], before_writes: Callable[[], None]
    ) -> list[tuple[int, Results]]:
        """One transaction per job, run side by side (`run_transactions`): shared round trips,
        separate outcomes, the provider's hold (still fresh?) and all-or-nothing unit;
        `before_writes`: waited for before the first write (see `run_transactions`)."""
        provider = chunk[0][1]
        endpoint = provider.client.endpoint
        try:
            outcomes: Sequence[TransactionResult | CMProxyError] = run_transactions(
                provider.client,
                [group for _i, _p, _k, group in chunk],
                journal=self.journal,
                base=provider.state,
                options=self.plan_options,
                policy=self.knobs.policy,
                hooks=self.knobs.hooks,
                hold=self.holds.get(endpoint),
                fresh_base=time.monotonic() - self.read_at <= self.knobs.recheck_after,
                before_writes=before_writes,
                unit=self.units.get(endpoint),
            )
        except CMProxyError as error:
            outcomes = [error] * len(chunk)
        except Exception as error:  # never lose a batch's servers from the results
            log.exception("a batch of %d server(s) stopped", len(chunk))
            reason = (
                f"stopped by an unexpected error ({type(error).__name__}: {error}); "
                "check the servers and run cmproxy recover"
            )
            return [(i, _skipped(p.state, k, g, reason, failed=True)) for i, p, k, g in chunk]
        parts: list[tuple[int, Results]] = []
        for (index, _p, key, group), outcome in zip(chunk, outcomes, strict=True):
            if isinstance(outcome, CMProxyError):
                part = _skipped(provider.state, key, group, f"not changed: {outcome}", failed=True)
            else:
                part = Results(
                    tuple(
                        ServerResult(_site_of(provider.state, o.server), o)
                        for o in outcome.outcomes
                    )
                )
            parts.append((index, part))
        return parts

    def undo_changed(self, results: Results, providers: Sequence[_Provider]) -> Results:
        """All-or-nothing: put every changed server back to its snapshot (one read per
        provider; each server its own restore transaction, so one failed undo does not block
        the others)."""
        items = list(results.items)
        todo: dict[int, list[int]] = {}
        for i, item in enumerate(items):
            o = item.outcome
            if o.outcome is not Outcome.CHANGED or o.before is None:
                continue
            owner = next(k for k, p in enumerate(providers) if p.state.server(o.server) is not None)
            todo.setdefault(owner, []).append(i)
        for owner, indexes in todo.items():
            client = providers[owner].client
            undone: Sequence[TransactionResult | CMProxyError]
            try:
                undone = run_transactions(
                    client,
                    [
                        restore_desired({items[i].outcome.server: items[i].outcome.before})  # type: ignore[dict-item]
                        for i in indexes
                    ],
                    journal=self.journal,
                    base=_read_providers([client], self.knobs.policy)[0].state,
                    options=RESTORE_OPTIONS,
                    policy=self.knobs.policy,
                    hooks=self.knobs.hooks,
                    hold=self.holds.get(client.endpoint),
                )
            except CMProxyError as error:
                undone = [error] * len(indexes)
            for i, undo in zip(indexes, undone, strict=True):
                items[i] = _undone(items[i], undo)
        return Results(tuple(items), results.cancelled)


def _undone(item: ServerResult, undo: TransactionResult | CMProxyError) -> ServerResult:
    """A changed server's result once all-or-nothing tried to put it back."""
    o = item.outcome
    ok = isinstance(undo, TransactionResult) and undo.ok
    reason = (
        "all-or-nothing: another server failed, so this one was put back"
        if ok or isinstance(undo, TransactionResult)
        else f"all-or-nothing undo failed: {undo}"
    )
    return attrs.evolve(
        item,
        outcome=attrs.evolve(
            o,
            outcome=Outcome.ROLLED_BACK if ok else Outcome.FAILED,
            after=o.before if ok else o.after,
            reason=reason,
        ),
    )


#: How often the scheduler looks again without a chunk having finished (seconds).
_POLL_S = 0.05


@attrs.define
class _Lanes:
    """Which chunk starts next: each site's chunks in order, at most `per_site` of one site
    (a site serialises its writes: two chunks in flight let one read or read back while the
    other writes), `per_provider` of one provider (a `Session` runs its steps on a few
    runspace pools) and `max_workers` in all at once. Of the sites that may start one, the
    one with the fewest in flight (then the biggest): every site writes from the start even
    when the provider's pools come in turns (`Tuning.imports_at_once`)."""

    queues: list[collections.deque[list[_Job]]]
    knobs: _Knobs
    #: The chunks in flight, with the index of the queue (site) each came from.
    running: dict[Future[list[tuple[int, Results]]], tuple[int, list[_Job]]] = attrs.field(
        factory=dict
    )

    @property
    def threads(self) -> int:
        return max(1, min(self.knobs.max_workers, len(self.queues) * self.knobs.per_site))

    def next_ready(self) -> tuple[int, list[_Job]] | None:
        """The next chunk that may start now (with its queue's index), taken out of its queue;
        None when none may."""
        if len(self.running) >= self.knobs.max_workers:
            return None
        in_flight = list(self.running.values())
        best: tuple[int, int] | None = None  # (chunks in flight at its site, queue index)
        for lane, queue in enumerate(self.queues):
            if not queue:
                continue
            endpoint = _endpoint(queue[0])
            at_site = sum(1 for i, _c in in_flight if i == lane)
            at_provider = sum(1 for _i, c in in_flight if _endpoint(c) == endpoint)
            if at_site < self.knobs.per_site and at_provider < _provider_limit(
                queue[0][0][1].client, self.knobs.per_provider
            ):
                best = min(best or (at_site, lane), (at_site, lane))
        if best is None:
            return None
        return best[1], self.queues[best[1]].popleft()

    def left(self) -> list[list[_Job]]:
        """The chunks never started (cancelled), taken out of their queues."""
        left = [chunk for queue in self.queues for chunk in queue]
        for queue in self.queues:
            queue.clear()
        return left


def _provider_limit(client: SiteClient, per_provider: int) -> int:
    """Chunks one provider may have in flight: `per_provider`, and while its lanes still warm
    (pools imported in turns, `Tuning.imports_at_once`) no more than it has ready, so no chunk
    waits for a pool while another site has none (the next chunk starts as a pool is ready)."""
    ready = client.lanes_ready() if isinstance(client, ReportsLanes) else None
    return per_provider if ready is None else min(per_provider, max(1, ready))


def _endpoint(chunk: Sequence[_Job]) -> str:
    """The provider of a chunk (all its jobs share it, and their site)."""
    return chunk[0][1].client.endpoint


def _dry_run(plans: Sequence[tuple[_Provider, DesiredState, Plan]]) -> Results:
    # Changes counted per server once (Plan.for_server per server is a scan each: O(N²)).
    planned = [
        (p, collections.Counter(c.target.lower() for c in pl.changes)) for p, _d, pl in plans
    ]
    return Results(
        tuple(
            ServerResult(
                s.site_code,
                ServerOutcome(
                    s.name,
                    Outcome.UNCHANGED,
                    ServerSnapshot.of(p.state, s.name),
                    ServerSnapshot.of(p.state, s.name),
                    f"dry run: {counts[s.name.lower()]} change(s) planned",
                ),
            )
            for p, counts in planned
            for s in p.state.servers
            if counts[s.name.lower()]
        )
    )


def _jobs(
    plans: Sequence[tuple[_Provider, DesiredState, Plan]],
) -> tuple[list[tuple[_Provider, str, DesiredState]], list[_Creating]]:
    """One job per target server, and the accounts to create per client (each batch is
    planned as if they existed: `_where_accounts_are_made` says who creates them)."""
    jobs: list[tuple[_Provider, str, DesiredState]] = []
    creating: list[tuple[SiteClient, list[Change]]] = []
    for read, d, pl in plans:
        creations = [c for c in pl if c.kind is ChangeKind.CREATE_ACCOUNT]
        creating.append((read.client, creations))
        state = attrs.evolve(
            read.state,
            accounts=read.state.accounts
            | {KnownAccount(str(c.target), c.site_code) for c in creations},
        )
        provider = attrs.evolve(read, state=state)
        jobs += [(provider, key, group) for key, group in _groups(state, d).items()]
    return jobs, creating


#: Accounts to create at one client: the client and its `CREATE_ACCOUNT` changes.
_Creating = tuple[SiteClient, list[Change]]


def _where_accounts_are_made(
    creating: Sequence[_Creating],
) -> tuple[list[tuple[CreatesAccountsInWrites, list[Change]]], list[_Creating]]:
    """Which accounts the write pipelines create (a client that can, one account per site:
    no round trip of its own, and the site's write lock does not idle while the batches
    start after it) and which a step of their own creates first (`_AccountsFirst`)."""
    in_writes: list[tuple[CreatesAccountsInWrites, list[Change]]] = []
    first: list[_Creating] = []
    for client, creations in creating:
        sites = collections.Counter(str(c.site_code).upper() for c in creations)
        if creations and isinstance(client, CreatesAccountsInWrites) and max(sites.values()) == 1:
            in_writes.append((client, creations))
        else:
            first.append((client, creations))
    return in_writes, first


def _chunks(
    jobs: Sequence[tuple[_Provider, str, DesiredState]], size: int, lanes: int = 1
) -> dict[tuple[str, str], list[list[_Job]]]:
    """The jobs per (provider, site of the target server), in chunks of up to `size`.

    A site's chunks come in a multiple of `lanes` (its batches in flight at once: `per_site`)
    and are as equal as they can be, so its lanes take turns on the site's write lock to the
    end and finish together: one lane left alone at a site (a short last chunk, or a long one
    started late) leaves the lock idle while it compares and reads back, and lanes that turn
    over together idle it no longer than lanes that turn over in turn.
    """
    per_site: dict[tuple[str, str], list[_Job]] = {}
    for index, (provider, key, group) in enumerate(jobs):
        site = _site_of(provider.state, key)
        per_site.setdefault((provider.client.endpoint, site), []).append(
            (index, provider, key, group)
        )
    return {where: _even_chunks(items, size, lanes) for where, items in per_site.items()}


#: Jobs a site's batch gets at least when it is split to fill its lanes: a batch has fixed
#: costs (its journal claim and commits, each an fsync; its pipeline's start and account
#: look-up) worth paying only to hide several writes' compare and read-back.
_MIN_SPLIT = 4


#: Lanes (batches in flight) a site uses when each takes a single batch: two keep its write
#: lock busy, for a batch that is a good share of its site reads its writes back by listing
#: the site once at its end (`Tuning.site_listing_ratio`), so a write's only work outside the
#: lock is its compare, shorter than the other lane's Set. With several batches per lane (a
#: site of more than two batches), each write also reads itself back and the batches turn
#: over: up to `per_site` lanes then (measured: N = 1,000, busiest lock busy 88 % with two,
#: 96 % with three; at N = 200 every site keeps two).
_ONE_ROUND_LANES = 2


def _even_chunks(items: list[_Job], size: int, lanes: int) -> list[list[_Job]]:
    """`items` in contiguous chunks of at most `size`, `lanes` × as few as that allows, of
    sizes that differ by one at most (fewer, down to one, when a chunk would have fewer than
    `_MIN_SPLIT` items; at most `_ONE_ROUND_LANES` lanes' worth when two chunks hold them)."""
    if len(items) <= _ONE_ROUND_LANES * size:
        lanes = min(lanes, _ONE_ROUND_LANES)
    lanes = max(1, min(lanes, len(items) // _MIN_SPLIT))
    count = min(len(items), lanes * math.ceil(len(items) / (lanes * max(1, size))))
    if count <= 1:
        return [items]
    base, extra = divmod(len(items), count)
    chunks: list[list[_Job]] = []
    start = 0
    for k in range(count):
        end = start + base + (1 if k < extra else 0)
        chunks.append(items[start:end])
        start = end
    return chunks


def _site_of(state: SiteState, server: str) -> str:
    found = state.server(server)
    return found.site_code if found else "?"


def _skipped(
    state: SiteState, key: str, group: DesiredState, reason: str, *, failed: bool = False
) -> Results:
    """Outcomes for a group that wrote nothing: cancelled (unchanged) or refused (failed)."""
    del key
    outcome = Outcome.FAILED if failed else Outcome.UNCHANGED
    return Results(
        tuple(
            ServerResult(
                _site_of(state, name),
                ServerOutcome(
                    name,
                    outcome,
                    ServerSnapshot.of(state, name),
                    ServerSnapshot.of(state, name),
                    reason,
                ),
            )
            for name in group.servers
        )
    )


class _NoBar:
    def update(self, n: int) -> None:
        del n

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    """A Jupyter widget bar in a notebook that has ipywidgets (the `notebook` extra), a text
    bar everywhere else — never tqdm's "IProgress not found" warning."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm as text_bar  # noqa: PLC0415 - only when progress is shown

    bar: type[Any] = text_bar
    if _in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as widget_bar  # noqa: PLC0415

        bar = widget_bar
    return bar(total=total, desc="servers", unit="server")


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (what tqdm.auto checks, without its warning)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    ip = get_ipython() if callable(get_ipython) else None
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})
