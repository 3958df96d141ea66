"""The transaction engine: claim, check, write in rounds, verify, commit or roll back.

    snapshot → plan → claim in the journal → fresh read (conflict? nothing written)
      → for each change: journal, apply, re-read, verify
      → on failure: restore every touched server to its snapshot (planned like any change, so
        R11 ordering holds), verify the restore → outcome per server, journal closed.

Each transaction moves through the phases of `Phase` (claimed → checked → writing →
verifying → closed); `run_transactions` runs many side by side, sharing round trips.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from cmproxy._exceptions import (
    CMProxyError,
    ConflictError,
)
from cmproxy.journal import Hold, Journal, JournalEntry
from cmproxy.model import SiteState
from cmproxy.outcomes import Hook, Outcome, ServerOutcome, ServerSnapshot, TransactionResult
from cmproxy.plan import (
    Change,
    ChangeKind,
    DesiredSource,
    DesiredState,
    Plan,
    PlanOptions,
    plan,
    resolve_desired,
)
from cmproxy.ports import SiteClient
from cmproxy.quiet import recording
from cmproxy.retry import RetryPolicy
from cmproxy.rollback import Written, restore
from cmproxy.settings import setting_for
from cmproxy.settling import (
    ChangeFailedError,
    Run,
    WriteConflictedError,
    WriteNotVisibleError,
    WriteSkippedError,
    expected_after,
    not_seen_yet,
    where,
)
from cmproxy.writer import batchable

__all__ = ["run_transaction", "run_transactions"]


class Phase(enum.Enum):
    """Where a transaction is. Each step of `_Engine` takes the transactions in one phase and
    moves each to the next, or closes it (its result known)."""

    PLANNED = "planned"  # planned from `current`; nothing claimed
    CLAIMED = "claimed"  # its servers claimed in the journal
    CHECKED = "checked"  # nobody changed them since `current`: it may write
    WRITING = "writing"  # its writes go out in rounds
    VERIFYING = "verifying"  # every write made: servers written twice are read whole
    CLOSED = "closed"  # its result is known


Row = tuple[str, str, str]  # a journal's finish_many row: transaction id, status, detail


@attrs.define(eq=False)
class _Tx:
    """One transaction of a `run_transactions` call: its plan, snapshots and progress."""

    run: Run
    current: SiteState
    plan: Plan
    touched: list[str]
    requested: list[str]
    redirected: dict[str, str]
    snapshots: dict[str, ServerSnapshot]
    expected: dict[str, ServerSnapshot]
    failure: ChangeFailedError | None = None
    #: Servers with a write accepted but not visible when the visibility bound ran out.
    unconfirmed: dict[str, WriteNotVisibleError] = attrs.field(factory=dict)
    #: A write of it was made (or may have been): a conflict after it rolls back, not "nothing
    #: written".
    wrote: bool = False
    #: None until a round writes its servers; then: was that its only such round, with every
    #: write read back after all of its own writes in the pipeline, at the first attempt?
    verified_at_once: bool | None = None
    phase: Phase = Phase.PLANNED
    #: The index in `plan.changes` of its next change to write.
    cursor: int = 0
    result: TransactionResult | CMProxyError | None = None

    def close(self, result: TransactionResult | CMProxyError) -> None:
        self.result = result
        self.phase = Phase.CLOSED

    def end_unwritten(self, error: BaseException) -> Row:
        """Closed before any write: `error` is its result (a `CMProxyError`); the journal row."""
        if isinstance(error, CMProxyError):
            self.close(error)
        return (self.tx_id, "rolled_back", f"nothing written: {error}")

    def take(self, failure: ChangeFailedError | None) -> str:
        """Take one write's fate; returns the journal state of that change."""
        if failure is None or not isinstance(failure, WriteSkippedError | WriteConflictedError):
            self.wrote = True
        if failure is None:
            return "applied"
        if isinstance(failure, WriteNotVisibleError):
            self.unconfirmed.setdefault(failure.change.target.lower(), failure)
            return "applied"  # accepted: made, only not seen yet
        if isinstance(failure, WriteSkippedError):
            return "planned"  # never made
        self.failure = self.failure or failure
        # A compare-and-set conflict was never made: someone else's value is there.
        return "planned" if isinstance(failure, WriteConflictedError) else "failed"

    def judge(
        self, names: Sequence[str], final: SiteState | None, why: object, bound: float
    ) -> None:
        """The final read of servers written more than once: each shows its new state, or
        (with a visibility `bound`) still only ours → not visible yet, or it failed."""
        for name in names:
            now = ServerSnapshot.of(final, name) if final is not None else None
            if bound and not_seen_yet(now, self.snapshots[name], self.expected[name]):
                late = WriteNotVisibleError(self.plan.for_server(name)[-1], bound)
                self.unconfirmed.setdefault(name, late)
            elif now is None or not self.expected[name].same_as(now):
                self.failure = ChangeFailedError(
                    self.plan.changes[-1],
                    f"{name} does not show its new state after all writes"
                    + ("" if final is not None else f" (the re-read failed: {why})"),
                )
                break

    def conclude(self) -> Row | None:
        """Closes it: committed, not visible (left open: no row), or rolled back."""
        if self.failure is None and self.unconfirmed:
            # Accepted, not seen: left open (not rolled back) for `recover` to settle.
            self.close(self.not_visible())
            self.run.emit("not visible", "site", ", ".join(self.unconfirmed))
            return None
        if self.failure is None:
            self.close(self.committed())
            return (self.tx_id, "committed", "")
        if isinstance(self.failure, WriteConflictedError) and not self.wrote:
            # Compare-and-set found someone else's change before this transaction wrote
            # anything: the same outcome as a conflict found by a re-read.
            found = self.failure.error
            assert isinstance(found, ConflictError)
            self.close(found)
            return (self.tx_id, "rolled_back", f"nothing written: {found}")
        result, status = self.roll_back()
        self.close(result)
        return (self.tx_id, status, str(self.failure))

    @classmethod
    def prepare(
        cls,
        run: Run,
        current: SiteState,
        desired: DesiredState | DesiredSource,
        options: PlanOptions | None,
    ) -> _Tx:
        desired = resolve_desired(current, desired)
        the_plan = plan(current, desired, options)
        run.emit("planned", "site", f"{len(the_plan)} change(s)")
        touched = list(
            dict.fromkeys(c.target.lower() for c in the_plan if setting_for(c) is not None)
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
        expected = expected_after(snapshots, the_plan)
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
        writes = Counter(c.target.lower() for c in self.plan if setting_for(c) is not None)
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
        restored = restore(
            self.run, Written(self.snapshots, self.expected), reason, self.unconfirmed
        )
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


def run_transaction(  # noqa: PLR0913 - public: the client, the desired state, keyword options
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


def run_transactions(  # noqa: PLR0913 - public: the client, the states, keyword options
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
    runner = Run(client, policy or RetryPolicy(), hooks)
    current = base if base is not None else runner.read(None)
    txs = [_Tx.prepare(attrs.evolve(runner), current, d, options) for d in desired]
    for tx in txs:
        if dry_run or tx.plan.is_empty:
            tx.close(tx.unwritten(dry_run))
    going = [tx for tx in txs if tx.phase is Phase.PLANNED]
    if going:
        held = hold.servers if hold is not None and fresh_base and base is not None else None
        journal = journal if journal is not None else Journal()
        engine = _Engine(runner, journal, current, going, _Bounds(hold, held, before_writes, unit))
        with recording(client, journal, lambda: [t.run.tx_id for t in going if t.run.tx_id]):
            engine.run()
    results = [tx.result for tx in txs]
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


@attrs.frozen
class _Bounds:
    """What the caller of `run_transactions` set around the engine (see there)."""

    hold: Hold | None
    #: Servers whose state in `current` was read under the caller's hold (already fresh).
    held: frozenset[str] | None
    before_writes: Callable[[], None] | None
    unit: str | None


@attrs.define
class _Engine:
    """Moves live transactions through their phases, sharing every round trip: one journal
    commit per step, one fresh read, per round one `apply_changes`, one final read."""

    runner: Run
    journal: Journal
    current: SiteState
    txs: list[_Tx]
    bounds: _Bounds
    #: The fresh read the writes are checked against (`current` when nothing was re-read).
    fresh: SiteState | None = None
    #: The transactions that may write, in the order they were found fresh.
    live: list[_Tx] = attrs.field(factory=list)

    def run(self) -> None:
        """claimed → checked → writing → verifying → closed; a step may close some early."""
        self.claim()
        if not any(tx.phase is Phase.CLAIMED for tx in self.txs):
            return
        self.check()
        if not self.start_writing():
            return
        self.write_rounds()
        self.verify()
        self.journal.finish_many([row for tx in self.live if (row := tx.conclude()) is not None])
        for tx in self.live:
            if tx.failure is None and not tx.unconfirmed:
                tx.run.emit("committed", "site", tx.tx_id)

    def claim(self) -> None:
        """Claim every transaction's servers in the journal; a claim refused closes it."""
        claims = self.journal.begin_many(
            self.runner.client.endpoint,
            [tx.claim() for tx in self.txs],
            hold=self.bounds.hold,
            unit=self.bounds.unit,
        )
        for tx, claim in zip(self.txs, claims, strict=True):
            if isinstance(claim, ConflictError):
                tx.close(claim)
            else:
                tx.run.tx_id = claim
                tx.phase = Phase.CLAIMED

    def check(self) -> None:
        """Optimistic check under the journal claims: nobody changed the servers since
        `current` (already known for servers `current` was read under a hold)."""
        claimed = [tx for tx in self.txs if tx.phase is Phase.CLAIMED]
        self.live = [tx for tx in claimed if tx.read_under(self.bounds.held)]
        recheck = [tx for tx in claimed if not tx.read_under(self.bounds.held)]
        self.fresh = self.current
        ended: list[Row] = []
        try:
            if recheck:
                touched = _all(t.touched for t in recheck)
                self.fresh = self.runner.read(*where(self.current, touched, _plan_sites(recheck)))
        except BaseException as error:
            if not isinstance(error, CMProxyError):
                self.journal.finish_many([tx.end_unwritten(error) for tx in claimed])
                raise
            ended += [tx.end_unwritten(error) for tx in recheck]
            recheck = []
        for tx in recheck:
            conflict = tx.conflict(self.fresh)
            if conflict is None:
                self.live.append(tx)
                continue
            tx.run.emit("conflict", conflict.server, conflict.detail)
            ended.append(tx.end_unwritten(conflict))
        for tx in self.live:
            tx.phase = Phase.CHECKED
        self.journal.finish_many(ended)

    def start_writing(self) -> bool:
        """`before_writes`, then every checked transaction writes; if it raises, none does."""
        if self.live and self.bounds.before_writes is not None:
            try:
                self.bounds.before_writes()
            except BaseException as error:
                self.journal.finish_many([tx.end_unwritten(error) for tx in self.live])
                if not isinstance(error, CMProxyError):
                    raise
                return False
        for tx in self.live:
            tx.phase = Phase.WRITING
        return True

    def write_rounds(self) -> None:
        """Each round applies, for every transaction still going, its next run of server
        writes (in R11 order, in one pipeline per site, a failure stopping the rest of its
        run), or its next account on its own."""
        while active := [tx for tx in self.live if tx.failure is None and tx.cursor < len(tx.plan)]:
            self.round(active)

    def round(self, active: list[_Tx]) -> None:
        items: list[tuple[Run, Change]] = []
        steps: list[tuple[str, int]] = []
        groups: list[int] = []
        for group, tx in enumerate(active):
            for seq in _next_run(tx.plan.changes, tx.cursor):
                items.append((tx.run, tx.plan.changes[seq]))
                steps.append((tx.tx_id, seq))
                groups.append(group)
            tx.cursor = steps[-1][1] + 1
        self.journal.mark_changes(steps, "applying")
        read_back: list[bool] = []
        failures = self.apply(items, groups, read_back)
        verified: dict[int, list[bool]] = {}
        for j, group in enumerate(groups):
            if batchable(items[j][1]):
                verified.setdefault(group, []).append(read_back[j])
        for group, flags in verified.items():
            active[group].wrote_round(flags)
        marks: dict[str, list[tuple[str, int]]] = {"applied": [], "failed": [], "planned": []}
        for group, failure, step in zip(groups, failures, steps, strict=True):
            marks[active[group].take(failure)].append(step)
        for state, marked in marks.items():
            self.journal.mark_changes(marked, state)

    def apply(
        self, items: list[tuple[Run, Change]], groups: list[int], read_back: list[bool]
    ) -> list[ChangeFailedError | None]:
        """One round's writes; a re-read that failed for good makes the round's fate unknown
        (each change failed); an interrupt (Ctrl-C) or a bug restores first."""
        assert self.fresh is not None
        try:
            return self.runner.apply_all(items, self.fresh, groups, read_back)
        except CMProxyError as error:
            return [ChangeFailedError(change, error) for _, change in items]
        except BaseException:
            for tx in self.live:
                restore(tx.run, Written(tx.snapshots, tx.expected), "interrupted")
            self.journal.finish_many([(tx.tx_id, "rolled_back", "interrupted") for tx in self.live])
            raise

    def verify(self) -> None:
        """Servers written more than once are checked whole at the end (not those whose write
        is already known not to show yet: they end not visible anyway)."""
        going = [tx for tx in self.live if tx.failure is None]
        for tx in going:
            tx.phase = Phase.VERIFYING
        verify = {id(tx): [n for n in tx.to_verify() if n not in tx.unconfirmed] for tx in going}
        checked = [tx for tx in going if verify[id(tx)]]
        if not checked:
            return
        final: SiteState | None = None
        why: CMProxyError | None = None
        try:
            names, sites = where(
                self.current, _all(verify[id(tx)] for tx in checked), _plan_sites(checked)
            )
            snapshots = {n: tx.snapshots[n] for tx in checked for n in verify[id(tx)]}
            expected = {n: tx.expected[n] for tx in checked for n in verify[id(tx)]}
            final = self.runner.await_servers(
                list(snapshots), snapshots, expected, self.runner.read(names, sites)
            )
        except CMProxyError as error:
            final, why = None, error
        for tx in checked:
            tx.judge(verify[id(tx)], final, why, self.runner.policy.visibility_timeout)
