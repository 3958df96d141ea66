"""Retry-aware transactions: replace proxy configurations so each server ends old or new.

    snapshot → plan → claim in the journal → fresh read (conflict? nothing written)
      → for each change: journal, apply, re-read, verify
      → on failure: restore every touched server to its snapshot (planned like any change, so
        R11 ordering holds), verify the restore → outcome per server, journal closed.

A write whose answer is lost (the ambiguous case) is settled by re-reading, never by blind
repetition: if the new value is there the write happened; if the old one is, it is retried;
anything else is someone else's change and is left alone.

A write accepted whose re-read still shows the old value is "not visible yet" (a hierarchy may
show a child site's change only after replication): it is re-read with backoff for at most
`RetryPolicy.visibility_timeout` (`cmproxy.visibility`); past that it is reported
`Outcome.NOT_VISIBLE`, not rolled back, and its transaction stays open for `recover`.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from cmproxy._exceptions import (
    CMProxyError,
    ConflictError,
    NotVisibleError,
    RollbackError,
    TransactionError,
)
from cmproxy.journal import Hold, Journal, JournalEntry, JournalTransaction, JournalUnit
from cmproxy.model import ProxySettings, SiteState, SupFlags
from cmproxy.plan import (
    Change,
    ChangeKind,
    DesiredSource,
    DesiredState,
    Plan,
    PlanOptions,
    ProxyRequest,
    SupFlagsRequest,
    plan,
    resolve_desired,
)
from cmproxy.quiet import make_quiet, recording
from cmproxy.retry import RetryEvent, RetryPolicy, is_transient
from cmproxy.roles import SoftwareUpdatePoint
from cmproxy.visibility import reread_until_visible
from cmproxy.writer import SkippedWriteError, batchable

__all__ = [
    "RECOVERED",
    "RESTORE_OPTIONS",
    "Outcome",
    "RecoveryOutcome",
    "ServerOutcome",
    "ServerSnapshot",
    "SiteClient",
    "Transaction",
    "TransactionEvent",
    "TransactionResult",
    "recover",
    "restore_desired",
    "run_transaction",
    "run_transactions",
]

log = logging.getLogger("cmproxy.transaction")


class SiteClient(Protocol):
    """What a transaction needs from a live session (cmproxy.Session provides it)."""

    @property
    def endpoint(self) -> str:
        """A stable identity of the SMS Provider endpoint, for the journal."""
        ...

    def read_state(
        self, servers: Sequence[str] | None = None, *, site_codes: Iterable[str] | None = None
    ) -> SiteState:
        """A fresh read (only `servers`, with their sites and accounts, when given).

        `site_codes`, with `servers`, says which sites those servers live in, so a client may
        read those sites whole and keep the servers asked for (at least those).
        """
        ...

    def apply(self, change: Change) -> object:
        """Run the change's invocation once. May raise; never retries by itself.

        May return a read-back with a boolean `matches` (the value read in the same pipeline
        right after the write); the transaction then skips its own re-read. A client may
        also offer `apply_many(changes)` returning, per change, that read-back or the
        exception raised (a `Session` writes one site's changes in one pipeline).
        """
        ...


class Outcome(enum.Enum):
    """How a server ended."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
    #: The write was accepted but reads still showed the old value when the bound ran out
    #: (a lagging hierarchy): not rolled back; the transaction stays open for `recover`.
    NOT_VISIBLE = "not visible yet"


@attrs.frozen
class ServerSnapshot:
    """A server's proxy-related state: its proxy and, if it hosts one, its SUP options."""

    proxy: ProxySettings
    sup: SupFlags | None = None

    @classmethod
    def of(cls, state: SiteState, server: str) -> ServerSnapshot | None:
        found = state.server(server)
        if found is None:
            return None
        sup = found.role(SoftwareUpdatePoint)
        flags = (
            SupFlags(sup.use_proxy, sup.use_proxy_for_adr)
            if isinstance(sup, SoftwareUpdatePoint)
            else None
        )
        return cls(found.proxy, flags)

    def same_as(self, other: ServerSnapshot | None) -> bool:
        return other is not None and self.proxy.same_as(other.proxy) and self.sup == other.sup

    def describe(self) -> str:
        sup = f"; SUP {self.sup.describe()}" if self.sup is not None else ""
        return self.proxy.describe() + sup

    def to_dict(self) -> dict[str, Any]:
        """JSON for journals and results; never a password."""
        return {
            "proxy": self.proxy.normalized().to_dict(),
            "sup": self.sup.to_dict() if self.sup is not None else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerSnapshot:
        sup = data.get("sup")
        return cls(ProxySettings(**data["proxy"]), SupFlags(**sup) if sup else None)


@attrs.frozen
class ServerOutcome:
    """The end of one server in a transaction, with the reason and before/after."""

    server: str
    outcome: Outcome
    before: ServerSnapshot | None
    after: ServerSnapshot | None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "outcome": self.outcome.value,
            "before": self.before.to_dict() if self.before else None,
            "after": self.after.to_dict() if self.after else None,
            "reason": self.reason,
        }


@attrs.frozen
class TransactionResult:
    """What a transaction did: the plan, one outcome per server, and its journal id."""

    plan: Plan
    outcomes: tuple[ServerOutcome, ...]
    transaction_id: str | None = None
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return all(o.outcome in (Outcome.CHANGED, Outcome.UNCHANGED) for o in self.outcomes)

    @property
    def changed(self) -> bool:
        return any(o.outcome is Outcome.CHANGED for o in self.outcomes)

    def outcome(self, server: str) -> ServerOutcome:
        return next(o for o in self.outcomes if o.server.lower() == server.lower())

    def to_dict(self) -> dict[str, Any]:
        return {
            "transaction_id": self.transaction_id,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "plan": self.plan.to_dict(),
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


@attrs.frozen
class TransactionEvent:
    """Something a transaction did, for hooks and logs (never carries a secret)."""

    kind: str  # planned, conflict, apply, applied, ambiguous, not visible, retry, rollback, ...
    transaction_id: str | None
    target: str
    detail: str = ""


Hook = Callable[[TransactionEvent], None]


class _ChangeFailedError(CMProxyError):
    def __init__(self, change: Change, error: BaseException | str) -> None:
        self.change = change
        self.error = error
        super().__init__(f"{change.kind.value} on {change.target} failed: {error}")


class _SkippedError(_ChangeFailedError):
    """Not made: an earlier write of the same transaction failed (that one is the failure)."""


class _ConflictedError(_ChangeFailedError):
    """Not made: just before its Set, the server showed someone else's values (the batch
    template's compare-and-set). `error` is the `ConflictError` naming them."""


class _NotVisibleError(_ChangeFailedError):
    """Accepted, but reads still showed the old value when the visibility bound ran out."""

    def __init__(self, change: Change, waited: float) -> None:
        super().__init__(
            change,
            f"the write was accepted but is not visible: reads still show the value from "
            f"before it after {waited:.1f}s (a hierarchy replicating the change?); not rolled "
            "back",
        )


def apply_changes(
    client: SiteClient, changes: Sequence[Change], groups: Sequence[int] | None = None
) -> list[object]:
    """Each change applied once: its read-back, or the exception it raised (in order).

    A client with `apply_many` (a `Session`: one pipeline per site) gets them all at once.
    `groups[i]` names change i's transaction: once one of its writes fails, its later writes
    are not made (`SkippedWriteError`).
    """
    many = getattr(client, "apply_many", None)
    if callable(many):
        return list(many(list(changes), groups) if groups is not None else many(list(changes)))
    outcomes: list[object] = []
    failed: set[int] = set()
    for i, change in enumerate(changes):
        group = groups[i] if groups is not None else None
        if group is not None and group in failed:
            outcomes.append(SkippedWriteError(change))
            continue
        try:
            outcomes.append(client.apply(change))
        except Exception as error:  # reported per change, as apply_many does
            outcomes.append(error)
            if group is not None:
                failed.add(group)
    return outcomes


def _where(
    state: SiteState, servers: Iterable[str], sites: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The servers to read (once each) and the sites to read them from: theirs in `state`,
    plus `sites`."""
    names = list(dict.fromkeys(servers))
    found = {s.site_code.upper() for n in names if (s := state.server(n)) is not None}
    return names, sorted(found | {c.upper() for c in sites})


def _read_scope(changes: Sequence[Change], state: SiteState) -> tuple[list[str] | None, list[str]]:
    """What to re-read to check `changes`: their servers (everything for an account)."""
    names, sites = _where(state, (c.target for c in changes), (c.site_code for c in changes))
    if any(c.kind is ChangeKind.CREATE_ACCOUNT for c in changes):
        return None, sites
    return names, sites


@attrs.define
class _Run:
    client: SiteClient
    policy: RetryPolicy
    hooks: Sequence[Hook]
    tx_id: str | None = None

    def emit(self, kind: str, target: str, detail: str = "") -> None:
        event = TransactionEvent(kind, self.tx_id, target, detail)
        log.info("%s %s %s", kind, target, detail)
        for hook in self.hooks:
            hook(event)

    def on_retry(self, event: RetryEvent) -> None:
        self.emit("retry", event.operation, f"attempt {event.attempt}: {event.error}")

    def read(self, servers: Sequence[str] | None, sites: Sequence[str] = ()) -> SiteState:
        def once() -> SiteState:
            if sites and servers:
                return self.client.read_state(servers, site_codes=sites)
            return self.client.read_state(servers)

        return self.policy.call(
            once,
            operation="read " + (", ".join(servers[:5]) if servers else "site"),
            idempotent=True,
            on_retry=self.on_retry,
        )

    def apply_all(
        self,
        items: Sequence[tuple[_Run, Change]],
        state: SiteState,
        groups: Sequence[int] | None = None,
        read_back: list[bool] | None = None,
    ) -> list[_ChangeFailedError | None]:
        """Apply each change once, settle lost answers by re-reading, verify each by its
        read-back (or one shared re-read). Returns, per change, its failure or None.

        Each item carries the run (transaction) it belongs to, for its events. A lost answer
        (a transient error: the write may have happened) is settled by one re-read of all such
        changes: the new value is there → applied; the old one → retried (bounded by the
        policy's attempts); anything else → failed, never overwritten. `read_back`, when
        given, is set per change: verified on the first attempt by a read-back made after all
        of its transaction's writes in its pipeline (a client with `apply_many` reads each
        transaction of a batch back after its last write; one applying change by change reads
        each back before the next is made)?
        """
        failures: list[_ChangeFailedError | None] = [None] * len(items)
        if read_back is not None:
            read_back[:] = [False] * len(items)
            if not callable(getattr(self.client, "apply_many", None)):
                read_back = None
        pending = list(range(len(items)))
        attempts = 0
        while pending:
            attempts += 1
            for i in pending:
                run, change = items[i]
                run.emit("apply", change.target, change.invocation.render())
            outcomes = apply_changes(
                self.client,
                [items[i][1] for i in pending],
                [groups[i] for i in pending] if groups is not None else None,
            )
            unsure: list[tuple[int, BaseException | None]] = []
            skipped: list[int] = []
            lagging: list[int] = []
            for i, outcome in zip(pending, outcomes, strict=True):
                run, change = items[i]
                failures[i] = None  # this attempt decides
                if isinstance(outcome, SkippedWriteError):
                    skipped.append(i)
                    failures[i] = _SkippedError(change, "an earlier write of it failed")
                    continue
                if isinstance(outcome, ConflictError):
                    run.emit("conflict", outcome.server, outcome.detail)
                    failures[i] = _ConflictedError(change, outcome)
                    continue
                if isinstance(outcome, BaseException):
                    if not is_transient(outcome):
                        failures[i] = _ChangeFailedError(change, outcome)
                        continue
                    run.emit("ambiguous", change.target, f"{type(outcome).__name__}: {outcome}")
                    unsure.append((i, outcome))
                    continue
                matches = getattr(outcome, "matches", None)
                if matches is None:
                    unsure.append((i, None))  # no read-back: the shared re-read verifies it
                elif matches:
                    run.emit("applied", change.target)
                    if read_back is not None and attempts == 1:
                        read_back[i] = True
                elif getattr(outcome, "shows_before", False) and self.policy.visibility_timeout:
                    lagging.append(i)  # accepted, still the old value: not visible yet?
                else:
                    failures[i] = _ChangeFailedError(
                        change, "the re-read does not show the new value"
                    )
            pending = []
            if unsure:
                pending = self._settle(items, unsure, failures, attempts, state, lagging=lagging)
            if lagging:
                self._await_visible(items, lagging, failures, state)
            if groups is not None and skipped:
                # A write skipped behind one that turned out made (or is retried) goes again,
                # in order; one skipped behind a real failure stays skipped.
                failed = {
                    groups[j]
                    for j, f in enumerate(failures)
                    if f is not None and not isinstance(f, _SkippedError)
                }
                pending = sorted({*pending, *(i for i in skipped if groups[i] not in failed)})
            if pending:
                self.policy.sleep(self.policy.initial_backoff)
        return failures

    def _settle(
        self,
        items: Sequence[tuple[_Run, Change]],
        unsure: Sequence[tuple[int, BaseException | None]],
        failures: list[_ChangeFailedError | None],
        attempts: int,
        state: SiteState,
        *,
        lagging: list[int],
    ) -> list[int]:
        """One re-read for the changes whose answer was lost or not read back: made → applied;
        still the old value → to retry (returned) if the answer was lost, else not visible yet
        (added to `lagging`); anything else → failed."""
        pending: list[int] = []
        now = self.read(*_read_scope([items[i][1] for i, _ in unsure], state))
        for i, error in unsure:
            run, change = items[i]
            if _shows(change, now, after=True):
                run.emit("applied", change.target)
            elif (
                error is None
                and self.policy.visibility_timeout
                and _shows(change, now, after=False)
            ):
                lagging.append(i)
            elif error is None:
                failures[i] = _ChangeFailedError(change, "the re-read does not show the new value")
            elif _shows(change, now, after=False) and attempts < self.policy.attempts:
                run.emit("retry", change.target, f"attempt {attempts}: not applied")
                pending.append(i)
            else:
                failures[i] = _ChangeFailedError(change, error)
        return pending

    def _await_visible(
        self,
        items: Sequence[tuple[_Run, Change]],
        lagging: Sequence[int],
        failures: list[_ChangeFailedError | None],
        state: SiteState,
    ) -> None:
        """Changes accepted whose re-read still shows the old value: re-read them with backoff
        while any still does (`RetryPolicy.visibility_timeout`). Then each shows its new value
        → applied; still the old → not visible (`_NotVisibleError`); anything else → someone
        else's change, failed (never waited for: it ends the wait once nothing is old)."""
        changes = [items[i][1] for i in lagging]
        for i in lagging:
            items[i][0].emit("not visible", items[i][1].target, "accepted; re-reading")
        scope = _read_scope(changes, state)
        seen = reread_until_visible(
            lambda: self.read(*scope),
            lambda now: any(_shows(c, now, after=False) for c in changes),
            self.policy,
            delay_first=True,
        )
        for i, change in zip(lagging, changes, strict=True):
            run = items[i][0]
            if _shows(change, seen.value, after=True):
                run.emit("applied", change.target, f"visible after {seen.waited:.1f}s")
            elif _shows(change, seen.value, after=False):
                failures[i] = _NotVisibleError(change, seen.waited)
            else:
                now = ServerSnapshot.of(seen.value, change.target)
                failures[i] = _ChangeFailedError(
                    change,
                    "the re-read shows neither the value before the write nor the one written "
                    f"(now {now.describe() if now else 'gone'}): someone else's change",
                )

    def await_servers(
        self,
        servers: Sequence[str],
        snapshots: Mapping[str, ServerSnapshot],
        expected: Mapping[str, ServerSnapshot],
        state: SiteState,
    ) -> SiteState:
        """Re-read `servers` (bounded) while any shows only our values but not all of its new
        ones yet: written, not visible yet. Returns the last read (`state` if none); with no
        visibility bound, `state`."""

        def still_old(now: SiteState) -> bool:
            return any(
                _not_seen_yet(ServerSnapshot.of(now, n), snapshots[n], expected[n]) for n in servers
            )

        if not servers or not self.policy.visibility_timeout or not still_old(state):
            return state
        return reread_until_visible(
            lambda: self.read(list(servers)), still_old, self.policy, delay_first=True
        ).value

    def restore(
        self,
        snapshots: dict[str, ServerSnapshot],
        expected: dict[str, ServerSnapshot],
        why: str,
        unconfirmed: Iterable[str] = (),
        *,
        force: Iterable[str] = (),
    ) -> dict[str, tuple[bool, str]]:
        """Put each server back to its snapshot, if it holds nothing but our changes.

        A server showing a value that is neither its snapshot's nor the one we wrote was
        changed by someone else: it is left alone (never overwrite another's update).
        `unconfirmed`: servers with a write accepted but maybe not visible yet. They are awaited
        first (bounded); one that still shows old values (or is in `force`: the caller awaited
        it already) is restored as if it showed its new state: a restore planned from what it
        shows would write nothing, and its own write could still show up later. Writing the
        snapshot after it makes the snapshot the last write, whatever shows meanwhile (writes
        to a site become visible in order).
        Returns per server (restored and verified?, reason).
        """
        results: dict[str, tuple[bool, str]] = {}
        state = self.read(list(snapshots))
        lagging = [n for n in unconfirmed if n in snapshots]
        state = self.await_servers(lagging, snapshots, expected, state)
        late = [
            n
            for n in {*lagging, *(f for f in force if f in snapshots)}
            if _not_seen_yet(ServerSnapshot.of(state, n), snapshots[n], expected[n])
        ]
        ours: dict[str, ServerSnapshot] = {}
        for server, snap in snapshots.items():
            now = ServerSnapshot.of(state, server)
            if now is None or not _ours(now, snap, expected[server]):
                results[server] = (
                    False,
                    f"changed by someone else meanwhile (now {now.describe() if now else 'gone'}); "
                    "left as it is",
                )
                continue
            ours[server] = snap
        try:
            base = _showing(state, {n: expected[n] for n in late})
            restore_plan = plan(base, restore_desired(ours), RESTORE_OPTIONS)
        except CMProxyError as error:
            return dict.fromkeys(snapshots, (False, f"cannot plan the restore: {error}"))
        for change in restore_plan:
            self.emit("rollback", change.target, why)
            try:
                failure = self.apply_all([(self, change)], state)[0]
            except CMProxyError as error:
                failure = _ChangeFailedError(change, error)
            if failure is not None:
                results[change.target.lower()] = (False, f"restore failed: {failure}")
        after = self.read(list(snapshots))
        for server, snap in snapshots.items():
            if server in results:
                continue
            if snap.same_as(ServerSnapshot.of(after, server)):
                note = (
                    " (its write was accepted but never showed; the snapshot was written after it)"
                    if server in late
                    else ""
                )
                results[server] = (True, why + note)
                self.emit("restored", server)
            else:
                results[server] = (False, "re-read after the restore does not show the snapshot")
        return results


#: Planning a restore: put snapshots back as they were, even one that broke R11, in R11 order.
RESTORE_OPTIONS = PlanOptions(sup_flags_on_proxy_removal="turn_off", restore=True)


def restore_desired(snapshots: Mapping[str, ServerSnapshot]) -> DesiredState:
    """The desired state that puts each server back to its snapshot (plan it with
    `RESTORE_OPTIONS`)."""
    proxies = [ProxyRequest(server, snap.proxy) for server, snap in snapshots.items()]
    flags = [
        SupFlagsRequest(server, snap.sup.use_proxy, snap.sup.use_proxy_for_adr)
        for server, snap in snapshots.items()
        if snap.sup is not None
    ]
    return DesiredState(proxies=proxies, sup_flags=flags)


def _shows(change: Change, state: SiteState, *, after: bool) -> bool:
    """Does `state` show the change's after (or before) value for what it writes?"""
    if change.kind is ChangeKind.CREATE_ACCOUNT:
        return state.has_account(change.target, change.site_code) is after
    snap = ServerSnapshot.of(state, change.target)
    if snap is None:
        return False
    value = change.after if after else change.before
    if change.kind is ChangeKind.SET_SERVER_PROXY:
        assert isinstance(value, ProxySettings)
        return snap.proxy.same_as(value)
    return snap.sup == value


def _ours(now: ServerSnapshot, before: ServerSnapshot, after: ServerSnapshot) -> bool:
    """Is every field of `now` either its before or its after value?"""
    proxy_ok = now.proxy.same_as(before.proxy) or now.proxy.same_as(after.proxy)
    return proxy_ok and now.sup in (before.sup, after.sup)


def _showing(state: SiteState, shown: Mapping[str, ServerSnapshot]) -> SiteState:
    """`state` with each server of `shown` showing that snapshot (its proxy and SUP options)."""
    for name, snap in shown.items():
        server = state.server(name)
        if server is None:
            continue
        roles = tuple(
            attrs.evolve(
                r, use_proxy=snap.sup.use_proxy, use_proxy_for_adr=snap.sup.use_proxy_for_adr
            )
            if isinstance(r, SoftwareUpdatePoint) and snap.sup is not None
            else r
            for r in server.roles
        )
        state = state.with_server(attrs.evolve(server, proxy=snap.proxy, roles=roles))
    return state


def _not_seen_yet(
    now: ServerSnapshot | None, before: ServerSnapshot, after: ServerSnapshot
) -> bool:
    """Shows nothing but our values, yet not all of its new ones: written, not visible yet?"""
    return now is not None and _ours(now, before, after) and not after.same_as(now)


def _expected_after(
    snapshots: dict[str, ServerSnapshot], changes: Iterable[Change]
) -> dict[str, ServerSnapshot]:
    after = dict(snapshots)
    for change in changes:
        key = change.target.lower()
        if key not in after:
            continue
        if change.kind is ChangeKind.SET_SERVER_PROXY:
            assert isinstance(change.after, ProxySettings)
            after[key] = attrs.evolve(after[key], proxy=change.after)
        elif change.kind is ChangeKind.SET_SUP_FLAGS:
            assert isinstance(change.after, SupFlags)
            after[key] = attrs.evolve(after[key], sup=change.after)
    return after


@attrs.define(eq=False)
class _Tx:
    """One transaction of a `run_transactions` call: its plan, snapshots and progress."""

    run: _Run
    current: SiteState
    plan: Plan
    touched: list[str]
    requested: list[str]
    redirected: dict[str, str]
    snapshots: dict[str, ServerSnapshot]
    expected: dict[str, ServerSnapshot]
    failure: _ChangeFailedError | None = None
    #: Servers with a write accepted but not visible when the visibility bound ran out.
    unconfirmed: dict[str, _NotVisibleError] = attrs.field(factory=dict)
    #: A write of it was made (or may have been): a conflict after it rolls back, not "nothing
    #: written".
    wrote: bool = False
    #: None until a round writes its servers; then: was that its only such round, with every
    #: write read back after all of its own writes in the pipeline, at the first attempt?
    verified_at_once: bool | None = None

    @classmethod
    def prepare(
        cls,
        run: _Run,
        current: SiteState,
        desired: DesiredState | DesiredSource,
        options: PlanOptions | None,
    ) -> _Tx:
        desired = resolve_desired(current, desired)
        the_plan = plan(current, desired, options)
        run.emit("planned", "site", f"{len(the_plan)} change(s)")
        touched = list(
            dict.fromkeys(
                c.target.lower() for c in the_plan if c.kind is not ChangeKind.CREATE_ACCOUNT
            )
        )
        requested = list(dict.fromkeys([*desired.servers, *touched]))
        redirected = {
            name: change.target
            for change in the_plan
            for name in requested
            if name not in touched and any(name in r.lower() for r in change.reasons)
        }
        snapshots: dict[str, ServerSnapshot] = {}
        for name in touched:
            snap = ServerSnapshot.of(current, name)
            assert snap is not None  # the planner only targets servers it found
            snapshots[name] = snap
        expected = _expected_after(snapshots, the_plan)
        return cls(run, current, the_plan, touched, requested, redirected, snapshots, expected)

    @property
    def tx_id(self) -> str:
        assert self.run.tx_id is not None
        return self.run.tx_id

    def claim(self) -> tuple[list[JournalEntry], list[tuple[str, str, dict[str, Any]]]]:
        entries = [
            JournalEntry(
                name,
                self.current.server(name).site_code,  # type: ignore[union-attr]
                self.snapshots[name].to_dict(),
                self.expected[name].to_dict(),
            )
            for name in self.touched
        ]
        return entries, [(c.target, c.kind.name, c.to_dict()) for c in self.plan]

    def conflict(self, fresh: SiteState) -> ConflictError | None:
        """Did anyone change our servers (or create our account) since `current`?"""
        for name in self.touched:
            now = ServerSnapshot.of(fresh, name)
            if not self.snapshots[name].same_as(now):
                return ConflictError(
                    name,
                    f"read as {self.snapshots[name].describe()}, now "
                    f"{now.describe() if now else 'gone'}",
                )
        for change in self.plan:
            if change.kind is ChangeKind.CREATE_ACCOUNT and fresh.has_account(
                change.target, change.site_code
            ):
                return ConflictError(change.target, "the account was created meanwhile")
        return None

    def read_under(self, held: frozenset[str] | None) -> bool:
        """Was `current` read while all its servers were held (so no re-read is needed)?"""
        if held is None or any(c.kind is ChangeKind.CREATE_ACCOUNT for c in self.plan):
            return False
        return all(name in held for name in self.touched)

    def wrote_round(self, read_back: Iterable[bool]) -> None:
        """A round wrote its servers; `read_back`: each write verified at once by a read-back
        made after all of this transaction's writes in the pipeline?"""
        self.verified_at_once = self.verified_at_once is None and all(read_back)

    def to_verify(self) -> list[str]:
        """Servers written more than once: they must show their whole new state at the end
        (an earlier write could have been undone in between). A server written once was
        verified by that write's own read-back; so were all of them when one pipeline made
        and read back every write (`verified_at_once`)."""
        if self.verified_at_once:
            return []
        writes = Counter(
            c.target.lower() for c in self.plan if c.kind is not ChangeKind.CREATE_ACCOUNT
        )
        return [name for name in self.touched if writes[name] > 1]

    def untouched(self, name: str, reason: str = "already as desired") -> ServerOutcome:
        if name in self.redirected:
            reason = f"R5: its proxy is the one of {self.redirected[name]} ({reason})"
        snap = ServerSnapshot.of(self.current, name)
        return ServerOutcome(name, Outcome.UNCHANGED, snap, snap, reason)

    def unwritten(self, dry_run: bool) -> TransactionResult:
        if dry_run:
            outs = tuple(
                self.untouched(n, f"dry run: {len(self.plan.for_server(n))} change(s) planned")
                for n in self.requested
            )
        else:
            outs = tuple(self.untouched(n) for n in self.requested)
        return TransactionResult(self.plan, outs, None, dry_run)

    def committed(self) -> TransactionResult:
        outcomes = [
            ServerOutcome(name, Outcome.CHANGED, self.snapshots[name], self.expected[name])
            if name in self.touched
            else self.untouched(name)
            for name in self.requested
        ]
        return TransactionResult(self.plan, tuple(outcomes), self.tx_id)

    def not_visible(self) -> TransactionResult:
        """Every write accepted, some not visible yet: those servers `NOT_VISIBLE`."""
        outcomes = []
        for name in self.requested:
            late = self.unconfirmed.get(name)
            if late is None:
                outcomes.append(
                    ServerOutcome(name, Outcome.CHANGED, self.snapshots[name], self.expected[name])
                    if name in self.touched
                    else self.untouched(name)
                )
                continue
            outcomes.append(
                ServerOutcome(
                    name,
                    Outcome.NOT_VISIBLE,
                    self.snapshots[name],
                    self.expected[name],
                    f"{late}. The transaction stays open: run cmproxy recover once the "
                    "change shows.",
                )
            )
        return TransactionResult(self.plan, tuple(outcomes), self.tx_id)

    def roll_back(self) -> tuple[TransactionResult, str]:
        """Restore after a failure; the result and the journal status."""
        reason = str(self.failure)
        restored = self.run.restore(self.snapshots, self.expected, reason, self.unconfirmed)
        all_back = all(ok for ok, _ in restored.values())
        outcomes = []
        for name in self.requested:
            if name not in self.touched:
                outcomes.append(self.untouched(name, reason))
                continue
            ok, why = restored[name]
            snap = self.snapshots[name]
            if ok:
                outcomes.append(ServerOutcome(name, Outcome.ROLLED_BACK, snap, snap, reason))
            else:
                outcomes.append(
                    ServerOutcome(
                        name,
                        Outcome.FAILED,
                        snap,
                        None,
                        f"{reason}; rollback: {why}. Check the server and run cmproxy recover.",
                    )
                )
        status = "rolled_back" if all_back else "failed"
        return TransactionResult(self.plan, tuple(outcomes), self.tx_id), status


def _next_run(changes: Sequence[Change], start: int) -> range:
    """The changes a round takes from `start`: the run of server writes that follows (one
    pipeline can make them in order), or one account creation."""
    end = start + 1
    if batchable(changes[start]):
        while end < len(changes) and batchable(changes[end]):
            end += 1
    return range(start, end)


def _all(names: Iterable[Iterable[str]]) -> list[str]:
    return [n for some in names for n in some]


def _plan_sites(txs: Iterable[_Tx]) -> list[str]:
    """Every site the transactions write at (their accounts' included)."""
    return [c.site_code for tx in txs for c in tx.plan]


def run_transaction(
    client: SiteClient,
    desired: DesiredState | DesiredSource,
    *,
    journal: Journal | None = None,
    base: SiteState | None = None,
    options: PlanOptions | None = None,
    policy: RetryPolicy | None = None,
    hooks: Sequence[Hook] = (),
    dry_run: bool = False,
) -> TransactionResult:
    """Apply `desired` atomically: every server ends in its old or its new state.

    `base` is the state the caller planned from (read now when omitted); a server that
    changed since is a `ConflictError` and nothing is written. Rule violations raise before
    anything is written. Failures while applying do not raise: the result says, per server,
    whether it was rolled back or needs a person (`Outcome.FAILED`). The journal defaults to
    `Journal()` (`$CMPROXY_JOURNAL` or `~/.cmproxy/journal.sqlite3`); a dry run needs none.

    Outcomes cover every server asked for and every server written — a cloud DP's request is
    written on its primary site server (R5), and both are reported.
    """
    (result,) = run_transactions(
        client,
        [desired],
        journal=journal,
        base=base,
        options=options,
        policy=policy,
        hooks=hooks,
        dry_run=dry_run,
    )
    if isinstance(result, CMProxyError):
        raise result
    return result


def run_transactions(
    client: SiteClient,
    desired: Sequence[DesiredState | DesiredSource],
    *,
    journal: Journal | None = None,
    base: SiteState | None = None,
    options: PlanOptions | None = None,
    policy: RetryPolicy | None = None,
    hooks: Sequence[Hook] = (),
    dry_run: bool = False,
    hold: Hold | None = None,
    fresh_base: bool = False,
    before_writes: Callable[[], None] | None = None,
    unit: str | None = None,
) -> list[TransactionResult | CMProxyError]:
    """Run independent transactions side by side, each atomic on its own.

    Each `desired` is one transaction, with the guarantees of `run_transaction` (its own
    journal entry, conflict check, verify and rollback); a failure in one never touches
    another. What they share is the round trips: one journal commit per step, one fresh read,
    per round one `apply_many` call with every transaction's next run of server writes, in
    order (a `Session` writes one site's in one pipeline), and one final read. Returns, in
    order, each one's `TransactionResult`, or the `CMProxyError` that stopped it before it
    wrote anything (`ConflictError`, a read that failed). Rule violations in any raise before
    anything is written. Transactions must not share servers (the journal refuses the second claim).

    `hold`: the caller's `Journal.hold`; these transactions may claim its servers. With
    `fresh_base=True` the caller says `base` was read *after* the hold was taken, so it is
    already the fresh read for a transaction whose servers are all held (and which creates no
    account): that transaction skips its own re-read (see docs/transactions.md).

    `before_writes` is called once the transactions are claimed and checked, before their
    first write (`apply_bulk` waits there for the accounts it creates meanwhile). If it
    raises, none of them writes: each ends "nothing written" with that error (a `CMProxyError`
    is returned as its result, anything else is raised).

    `unit`: an open all-or-nothing unit of the journal (`Journal.begin_unit`); `recover`
    treats its transactions as one. Every pipeline sent while they run is journalled (its
    shell and command) before it is sent, so `recover` can stop what a killed run left.
    """
    runner = _Run(client, policy or RetryPolicy(), hooks)
    current = base if base is not None else runner.read(None)
    txs = [_Tx.prepare(attrs.evolve(runner), current, d, options) for d in desired]
    results: list[TransactionResult | CMProxyError | None] = [None] * len(txs)
    live: list[int] = []
    for i, tx in enumerate(txs):
        if dry_run or tx.plan.is_empty:
            results[i] = tx.unwritten(dry_run)
        else:
            live.append(i)
    if live:
        held = hold.servers if hold is not None and fresh_base and base is not None else None
        journal = journal if journal is not None else Journal()
        going = [txs[i] for i in live]
        with recording(client, journal, lambda: [t.run.tx_id for t in going if t.run.tx_id]):
            _run_live(
                runner,
                going,
                journal,
                results,
                live,
                hold=hold,
                held=held,
                before_writes=before_writes,
                unit=unit,
            )
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def _run_live(
    runner: _Run,
    txs: list[_Tx],
    journal: Journal | None,
    results: list[TransactionResult | CMProxyError | None],
    slots: list[int],
    *,
    hold: Hold | None = None,
    held: frozenset[str] | None = None,
    before_writes: Callable[[], None] | None = None,
    unit: str | None = None,
) -> None:
    """Claim, check, apply in rounds, verify, commit or roll back; fills `results[slots]`.

    `held`: servers whose state in `current` was read under the caller's hold (already fresh).
    `before_writes`: see `run_transactions`.
    """
    current = txs[0].current  # all planned from the same state
    journal = journal if journal is not None else Journal()
    claims = journal.begin_many(
        runner.client.endpoint, [tx.claim() for tx in txs], hold=hold, unit=unit
    )
    claimed: list[tuple[int, _Tx]] = []
    for slot, tx, claim in zip(slots, txs, claims, strict=True):
        if isinstance(claim, ConflictError):
            results[slot] = claim
        else:
            tx.run.tx_id = claim
            claimed.append((slot, tx))
    if not claimed:
        return

    # Optimistic check under the journal claims: nobody changed the servers since `current`
    # (already known for servers `current` was read under a hold).
    ended: list[tuple[str, str, str]] = []
    live: list[tuple[int, _Tx]] = []
    recheck: list[tuple[int, _Tx]] = []
    for slot, tx in claimed:
        (live if tx.read_under(held) else recheck).append((slot, tx))
    fresh = current
    mine = [tx for _, tx in recheck]
    try:
        if mine:
            fresh = runner.read(*_where(current, _all(t.touched for t in mine), _plan_sites(mine)))
    except BaseException as error:
        if not isinstance(error, CMProxyError):
            journal.finish_many(
                [(tx.tx_id, "rolled_back", f"nothing written: {error}") for _, tx in claimed]
            )
            raise
        ended += [(tx.tx_id, "rolled_back", f"nothing written: {error}") for tx in mine]
        for slot, _ in recheck:
            results[slot] = error
        recheck = []
    for slot, tx in recheck:
        conflict = tx.conflict(fresh)
        if conflict is None:
            live.append((slot, tx))
            continue
        ended.append((tx.tx_id, "rolled_back", f"nothing written: {conflict}"))
        tx.run.emit("conflict", conflict.server, conflict.detail)
        results[slot] = conflict
    journal.finish_many(ended)
    if live and before_writes is not None:
        try:
            before_writes()
        except BaseException as error:
            journal.finish_many(
                [(tx.tx_id, "rolled_back", f"nothing written: {error}") for _, tx in live]
            )
            if not isinstance(error, CMProxyError):
                raise
            for slot, _ in live:
                results[slot] = error
            return

    # Each round applies, for every transaction still going, its next run of server writes
    # (in R11 order, in one pipeline per site, a failure stopping the rest of its run), or its
    # next account on its own.
    cursor = {id(tx): 0 for _, tx in live}
    while True:
        active = [tx for _, tx in live if tx.failure is None and cursor[id(tx)] < len(tx.plan)]
        if not active:
            break
        items: list[tuple[_Run, Change]] = []
        steps: list[tuple[str, int]] = []
        groups: list[int] = []
        for group, tx in enumerate(active):
            for seq in _next_run(tx.plan.changes, cursor[id(tx)]):
                items.append((tx.run, tx.plan.changes[seq]))
                steps.append((tx.tx_id, seq))
                groups.append(group)
            cursor[id(tx)] = steps[-1][1] + 1
        journal.mark_changes(steps, "applying")
        read_back: list[bool] = []
        try:
            failures = runner.apply_all(items, fresh, groups, read_back)
        except CMProxyError as error:  # a re-read failed for good: the round's fate is unknown
            failures = [_ChangeFailedError(change, error) for _, change in items]
        except BaseException:
            # Interrupted (Ctrl-C) or a bug: restore before letting it through.
            for _, tx in live:
                tx.run.restore(tx.snapshots, tx.expected, "interrupted")
            journal.finish_many([(tx.tx_id, "rolled_back", "interrupted") for _, tx in live])
            raise
        verified: dict[int, list[bool]] = {}
        for j, group in enumerate(groups):
            if batchable(items[j][1]):
                verified.setdefault(group, []).append(read_back[j])
        for group, flags in verified.items():
            active[group].wrote_round(flags)
        marks: dict[str, list[tuple[str, int]]] = {"applied": [], "failed": [], "planned": []}
        for group, failure, step in zip(groups, failures, steps, strict=True):
            tx = active[group]
            if failure is None:
                marks["applied"].append(step)
            elif isinstance(failure, _NotVisibleError):
                marks["applied"].append(step)  # accepted: made, only not seen yet
                tx.unconfirmed.setdefault(failure.change.target.lower(), failure)
            elif isinstance(failure, _SkippedError):
                marks["planned"].append(step)  # never made
            elif isinstance(failure, _ConflictedError):
                marks["planned"].append(step)  # never made: someone else's value is there
                tx.failure = tx.failure or failure
            else:
                marks["failed"].append(step)
                tx.failure = tx.failure or failure
            if failure is None or not isinstance(failure, _SkippedError | _ConflictedError):
                tx.wrote = True
        for state, marked in marks.items():
            journal.mark_changes(marked, state)

    # Servers written more than once are checked whole at the end (not those whose write is
    # already known not to show yet: they end not visible anyway).
    verify = {
        id(tx): [n for n in tx.to_verify() if n not in tx.unconfirmed]
        for _, tx in live
        if tx.failure is None
    }
    checked = [tx for _, tx in live if verify.get(id(tx))]
    if checked:
        try:
            names, sites = _where(
                current, _all(verify[id(tx)] for tx in checked), _plan_sites(checked)
            )
            final: SiteState | None = runner.read(names, sites)
            assert final is not None
            snapshots = {n: tx.snapshots[n] for tx in checked for n in verify[id(tx)]}
            expected = {n: tx.expected[n] for tx in checked for n in verify[id(tx)]}
            final = runner.await_servers(list(snapshots), snapshots, expected, final)
        except CMProxyError as error:
            final, why = None, error
        for tx in checked:
            for name in verify[id(tx)]:
                now = ServerSnapshot.of(final, name) if final is not None else None
                if runner.policy.visibility_timeout and _not_seen_yet(
                    now, tx.snapshots[name], tx.expected[name]
                ):
                    tx.unconfirmed.setdefault(
                        name,
                        _NotVisibleError(
                            tx.plan.for_server(name)[-1], runner.policy.visibility_timeout
                        ),
                    )
                elif now is None or not tx.expected[name].same_as(now):
                    tx.failure = _ChangeFailedError(
                        tx.plan.changes[-1],
                        f"{name} does not show its new state after all writes"
                        + ("" if final is not None else f" (the re-read failed: {why})"),
                    )
                    break

    finished: list[tuple[str, str, str]] = []
    for slot, tx in live:
        if tx.failure is None and tx.unconfirmed:
            # Accepted, not seen: left open (not rolled back) for `recover` to settle.
            results[slot] = tx.not_visible()
            tx.run.emit("not visible", "site", ", ".join(tx.unconfirmed))
        elif tx.failure is None:
            finished.append((tx.tx_id, "committed", ""))
            results[slot] = tx.committed()
        elif isinstance(tx.failure, _ConflictedError) and not tx.wrote:
            # Compare-and-set found someone else's change before this transaction wrote
            # anything: the same outcome as a conflict found by a re-read.
            found = tx.failure.error
            assert isinstance(found, ConflictError)
            finished.append((tx.tx_id, "rolled_back", f"nothing written: {found}"))
            results[slot] = found
        else:
            result, status = tx.roll_back()
            finished.append((tx.tx_id, status, str(tx.failure)))
            results[slot] = result
    journal.finish_many(finished)
    for _, tx in live:
        if tx.failure is None and not tx.unconfirmed:
            tx.run.emit("committed", "site", tx.tx_id)


class Transaction:
    """`with Transaction(client, journal=...) as tx:` collects changes; exit applies them.

    On a clean exit the collected desired state is applied with `run_transaction`; if any
    server could not be changed, `TransactionError` (or `RollbackError` when a rollback
    failed too) is raised with `.outcomes`. `tx.result` holds the `TransactionResult`.
    """

    def __init__(
        self,
        client: SiteClient,
        *,
        journal: Journal | None = None,
        base: SiteState | None = None,
        options: PlanOptions | None = None,
        policy: RetryPolicy | None = None,
        hooks: Sequence[Hook] = (),
        dry_run: bool = False,
    ) -> None:
        self._client = client
        self._kwargs: dict[str, Any] = {
            "journal": journal,
            "base": base,
            "options": options,
            "policy": policy,
            "hooks": hooks,
            "dry_run": dry_run,
        }
        self._proxies: list[ProxyRequest] = []
        self._flags: list[SupFlagsRequest] = []
        self.result: TransactionResult | None = None

    def set_proxy(self, server: str, proxy: ProxySettings, role: str | None = None) -> None:
        self._proxies.append(ProxyRequest(server, proxy, role))

    def remove_proxy(self, server: str) -> None:
        self._proxies.append(ProxyRequest(server, ProxySettings.disabled()))

    def set_sup_flags(
        self, server: str, use_proxy: bool | None = None, use_proxy_for_adr: bool | None = None
    ) -> None:
        self._flags.append(SupFlagsRequest(server, use_proxy, use_proxy_for_adr))

    @property
    def desired(self) -> DesiredState:
        return DesiredState(proxies=self._proxies, sup_flags=self._flags)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            return  # the body failed before anything was written
        self.result = run_transaction(self._client, self.desired, **self._kwargs)
        if not self.result.ok:
            failed = [o for o in self.result.outcomes if o.outcome is Outcome.FAILED]
            summary = "; ".join(
                f"{o.server}: {o.outcome.value} ({o.reason})"
                for o in self.result.outcomes
                if o.outcome is not Outcome.UNCHANGED
            )
            late = any(o.outcome is Outcome.NOT_VISIBLE for o in self.result.outcomes)
            if failed:
                raise RollbackError(f"the change was not applied: {summary}", self.result.outcomes)
            if late:
                raise NotVisibleError(
                    f"the change was accepted but is not visible yet: {summary}",
                    self.result.outcomes,
                )
            raise TransactionError(f"the change was not applied: {summary}", self.result.outcomes)


@attrs.frozen
class RecoveryOutcome:
    """What `recover` did with one unfinished transaction."""

    transaction_id: str
    #: committed (already in the new state), rolled_back, failed; released (a hold: nothing
    #: was ever written under it); not quiet (what the killed run left running could not be
    #: stopped: nothing was decided, the transaction stays open)
    status: str
    servers: tuple[ServerOutcome, ...]
    #: Why, when the status alone does not say (not quiet).
    detail: str = ""


#: RecoveryOutcome statuses that leave nothing for a person to do.
RECOVERED = frozenset({"committed", "rolled_back", "released"})


def recover(
    client: SiteClient,
    journal: Journal,
    *,
    policy: RetryPolicy | None = None,
    hooks: Sequence[Hook] = (),
    quiet_timeout: float = 60.0,
) -> list[RecoveryOutcome]:
    """Finish every open transaction of this endpoint left by a killed process.

    First the site is made quiet: the shells the interrupted transactions' pipelines ran in
    (journalled before each was sent) are looked up among this account's shells on the
    endpoint and deleted, which stops what still runs in them (`cmproxy.quiet`), for at most
    `quiet_timeout` seconds. If that fails, nothing is decided: each transaction is reported
    `not quiet` and stays open (run `recover` again later).

    Then, an all-or-nothing run (`apply_bulk(all_or_nothing=True)`) killed before it ended is
    recovered as one: every server it changed, committed or not, is restored to its snapshot.
    Any other transaction: if every server already shows its new state, it is closed as
    committed (rolled forward); otherwise every server is restored to its snapshot and
    verified. Holds left by a killed bulk run are released: each write was made under its own
    transaction.

    Read-after-write lag: a server whose journalled write was accepted ("applied") but that
    still shows some of its old values (and nothing but ours) may be a lagging new state, not
    an old one: it is re-read first, for at most `policy.visibility_timeout`. If it still does
    not show its new state, the restore writes its snapshot anyway (see `_Run.restore`), so
    the snapshot is the last write even if the accepted one shows up later.
    """
    policy = policy or RetryPolicy()
    results: list[RecoveryOutcome] = []
    for hold_id in journal.holds(client.endpoint):
        journal.release(hold_id)
        results.append(RecoveryOutcome(hold_id, "released", ()))
    units = journal.open_units(client.endpoint)
    open_txs = journal.open_transactions(client.endpoint)
    members = {tx_id for unit in units for tx_id, _status, _servers in unit.members}
    why = make_quiet(client, journal, [*(t.id for t in open_txs), *members], timeout=quiet_timeout)
    if why is not None:
        _Run(client, policy, hooks).emit("not quiet", "site", why)
        stuck = [t.id for t in open_txs if t.id not in members] + [u.id for u in units]
        results += [RecoveryOutcome(i, "not quiet", (), why) for i in stuck]
        return results
    for unit in units:
        results += _recover_unit(client, journal, unit, policy, hooks)
    for tx in open_txs:
        if tx.id not in members:
            with recording(client, journal, functools.partial(list, [tx.id])):
                results.append(_recover_one(client, journal, tx, policy, hooks))
    return results


def _recover_one(
    client: SiteClient,
    journal: Journal,
    tx: JournalTransaction,
    policy: RetryPolicy,
    hooks: Sequence[Hook],
) -> RecoveryOutcome:
    """Roll one interrupted transaction forward (all new already) or back."""
    run = _Run(client, policy, hooks, tx.id)
    names = [e.server for e in tx.servers]
    befores = {e.server: ServerSnapshot.from_dict(e.before) for e in tx.servers}
    afters = {e.server: ServerSnapshot.from_dict(e.after) for e in tx.servers}
    state = run.read(names)
    accepted = {t.lower() for _seq, t, _kind, st in tx.changes if st == "applied"}
    written = [n for n in names if n.lower() in accepted]
    state = run.await_servers(written, befores, afters, state)
    now = {n: ServerSnapshot.of(state, n) for n in names}
    late = [n for n in written if _not_seen_yet(now[n], befores[n], afters[n])]
    if all(afters[n].same_as(now[n]) for n in names):
        journal.finish(tx.id, "committed", "recovered: already in the new state")
        run.emit("recovered", "site", "rolled forward")
        outs = tuple(ServerOutcome(n, Outcome.CHANGED, befores[n], afters[n]) for n in names)
        return RecoveryOutcome(tx.id, "committed", outs)
    restored = run.restore(befores, afters, "recovering an interrupted transaction", force=late)
    ok = all(r[0] for r in restored.values())
    journal.finish(tx.id, "rolled_back" if ok else "failed", "recovered")
    outs = tuple(
        ServerOutcome(
            n,
            Outcome.ROLLED_BACK if restored[n][0] else Outcome.FAILED,
            befores[n],
            befores[n] if restored[n][0] else now[n],
            restored[n][1],
        )
        for n in names
    )
    return RecoveryOutcome(tx.id, "rolled_back" if ok else "failed", outs)


def _recover_unit(
    client: SiteClient,
    journal: Journal,
    unit: JournalUnit,
    policy: RetryPolicy,
    hooks: Sequence[Hook],
) -> list[RecoveryOutcome]:
    """An all-or-nothing run killed before it ended: all of it goes back (its committed
    transactions too), so every server ends old. The unit stays open if a restore failed."""
    run = _Run(client, policy, hooks, unit.id)
    befores: dict[str, ServerSnapshot] = {}
    afters: dict[str, ServerSnapshot] = {}
    for _tx_id, _status, servers in unit.members:
        for e in servers:
            befores[e.server] = ServerSnapshot.from_dict(e.before)
            afters[e.server] = ServerSnapshot.from_dict(e.after)
    still_open = [tx_id for tx_id, status, _servers in unit.members if status == "open"]
    why = "recovering an interrupted all-or-nothing run: all of it is put back"
    restored: dict[str, tuple[bool, str]] = {}
    if befores:
        with recording(client, journal, lambda: still_open):
            restored = run.restore(befores, afters, why)
    results: list[RecoveryOutcome] = []
    finished: list[tuple[str, str, str]] = []
    for tx_id, status, servers in unit.members:
        names = [e.server for e in servers]
        ok = all(restored[n][0] for n in names)
        if status == "open":
            finished.append((tx_id, "rolled_back" if ok else "failed", why))
        outs = tuple(
            ServerOutcome(
                n,
                Outcome.ROLLED_BACK if restored[n][0] else Outcome.FAILED,
                befores[n],
                befores[n] if restored[n][0] else None,
                restored[n][1],
            )
            for n in names
        )
        results.append(RecoveryOutcome(tx_id, "rolled_back" if ok else "failed", outs))
    journal.finish_many(finished)
    if all(r[0] for r in restored.values()):
        journal.close_unit(unit.id)
        run.emit("recovered", "site", f"all-or-nothing run {unit.id[:8]} put back")
    return results
