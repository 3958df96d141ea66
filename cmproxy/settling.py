"""Apply changes once, settle lost answers by re-reading, await writes not visible yet.

A write whose answer is lost (the ambiguous case) is settled by re-reading, never by blind
repetition: if the new value is there the write happened; if the old one is, it is retried;
anything else is someone else's change and is left alone. A write accepted whose re-read still
shows the old value is "not visible yet": re-read with backoff for at most
`RetryPolicy.visibility_timeout` (`cmproxy.visibility`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import attrs

from cmproxy._exceptions import (
    CMProxyError,
    ConflictError,
)
from cmproxy.model import SiteState
from cmproxy.outcomes import Hook, ServerSnapshot, TransactionEvent
from cmproxy.plan import (
    Change,
    ChangeKind,
)
from cmproxy.ports import AppliesMany, SiteClient, read_back_matches, shows_before
from cmproxy.retry import RetryEvent, RetryPolicy, is_transient
from cmproxy.settings import setting_for
from cmproxy.visibility import reread_until_visible
from cmproxy.writer import SkippedWriteError

log = logging.getLogger("cmproxy.transaction")

__all__ = [
    "ChangeFailedError",
    "Run",
    "WriteConflictedError",
    "WriteNotVisibleError",
    "WriteSkippedError",
    "apply_changes",
    "expected_after",
    "not_seen_yet",
    "ours",
    "read_scope",
    "shows",
    "where",
]


class ChangeFailedError(CMProxyError):
    def __init__(self, change: Change, error: BaseException | str) -> None:
        self.change = change
        self.error = error
        super().__init__(f"{change.kind.value} on {change.target} failed: {error}")


class WriteSkippedError(ChangeFailedError):
    """Not made: an earlier write of the same transaction failed (that one is the failure)."""


class WriteConflictedError(ChangeFailedError):
    """Not made: just before its Set, the server showed someone else's values (the batch
    template's compare-and-set). `error` is the `ConflictError` naming them."""


class WriteNotVisibleError(ChangeFailedError):
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
    if isinstance(client, AppliesMany):
        many = client.apply_many
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


def where(
    state: SiteState, servers: Iterable[str], sites: Iterable[str] = ()
) -> tuple[list[str], list[str]]:
    """The servers to read (once each) and the sites to read them from: theirs in `state`,
    plus `sites`."""
    names = list(dict.fromkeys(servers))
    found = {s.site_code.upper() for n in names if (s := state.server(n)) is not None}
    return names, sorted(found | {c.upper() for c in sites})


def read_scope(changes: Sequence[Change], state: SiteState) -> tuple[list[str] | None, list[str]]:
    """What to re-read to check `changes`: their servers (everything for an account)."""
    names, sites = where(state, (c.target for c in changes), (c.site_code for c in changes))
    if any(c.kind is ChangeKind.CREATE_ACCOUNT for c in changes):
        return None, sites
    return names, sites


@attrs.define
class Run:
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
        items: Sequence[tuple[Run, Change]],
        state: SiteState,
        groups: Sequence[int] | None = None,
        read_back: list[bool] | None = None,
    ) -> list[ChangeFailedError | None]:
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
        if read_back is not None:
            read_back[:] = [False] * len(items)
        applying = _Applying(
            self,
            items,
            state,
            groups,
            read_back if isinstance(self.client, AppliesMany) else None,
        )
        pending = list(range(len(items)))
        while pending:
            pending = applying.attempt(pending)
            if pending:
                self.policy.sleep(self.policy.initial_backoff)
        return applying.failures

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
                not_seen_yet(ServerSnapshot.of(now, n), snapshots[n], expected[n]) for n in servers
            )

        if not servers or not self.policy.visibility_timeout or not still_old(state):
            return state
        return reread_until_visible(
            lambda: self.read(list(servers)), still_old, self.policy, delay_first=True
        ).value


@attrs.define
class _Applying:
    """One `Run.apply_all` call: its changes, and what each attempt found about each."""

    run: Run
    items: Sequence[tuple[Run, Change]]
    state: SiteState
    groups: Sequence[int] | None
    #: Set per change when verified at once (None: the client cannot say; see apply_all).
    read_back: list[bool] | None
    failures: list[ChangeFailedError | None] = attrs.field(init=False)
    attempts: int = 0

    def __attrs_post_init__(self) -> None:
        self.failures = [None] * len(self.items)

    def attempt(self, pending: list[int]) -> list[int]:
        """Apply `pending` once, judge each answer, settle the unsure ones by one re-read and
        await those not visible yet; returns the changes to apply again."""
        self.attempts += 1
        for i in pending:
            run, change = self.items[i]
            run.emit("apply", change.target, change.invocation.render())
        outcomes = apply_changes(
            self.run.client,
            [self.items[i][1] for i in pending],
            [self.groups[i] for i in pending] if self.groups is not None else None,
        )
        unsure: list[tuple[int, BaseException | None]] = []
        skipped: list[int] = []
        lagging: list[int] = []
        for i, outcome in zip(pending, outcomes, strict=True):
            verdict = self.judge(i, outcome)
            if verdict == "unsure":
                unsure.append((i, outcome if isinstance(outcome, BaseException) else None))
            elif verdict == "skipped":
                skipped.append(i)
            elif verdict == "lagging":
                lagging.append(i)
        again = self.settle(unsure, lagging) if unsure else []
        if lagging:
            self.await_visible(lagging)
        if self.groups is not None and skipped:
            # A write skipped behind one that turned out made (or is retried) goes again,
            # in order; one skipped behind a real failure stays skipped.
            failed = {
                self.groups[j]
                for j, f in enumerate(self.failures)
                if f is not None and not isinstance(f, WriteSkippedError)
            }
            again = sorted({*again, *(i for i in skipped if self.groups[i] not in failed)})
        return again

    def judge(self, i: int, outcome: object) -> str:
        """Change i's answer: "done" (applied, or failed for good: `failures[i]` says), or
        "skipped", "unsure" (settle by a re-read) or "lagging" (accepted, still old)."""
        run, change = self.items[i]
        self.failures[i] = None  # this attempt decides
        if isinstance(outcome, SkippedWriteError):
            self.failures[i] = WriteSkippedError(change, "an earlier write of it failed")
            return "skipped"
        if isinstance(outcome, ConflictError):
            run.emit("conflict", outcome.server, outcome.detail)
            self.failures[i] = WriteConflictedError(change, outcome)
            return "done"
        if isinstance(outcome, BaseException):
            if not is_transient(outcome):
                self.failures[i] = ChangeFailedError(change, outcome)
                return "done"
            run.emit("ambiguous", change.target, f"{type(outcome).__name__}: {outcome}")
            return "unsure"
        matches = read_back_matches(outcome)
        if matches is None:
            return "unsure"  # no read-back: the shared re-read verifies it
        if matches:
            run.emit("applied", change.target)
            if self.read_back is not None and self.attempts == 1:
                self.read_back[i] = True
            return "done"
        if shows_before(outcome) and self.run.policy.visibility_timeout:
            return "lagging"  # accepted, still the old value: not visible yet?
        self.failures[i] = ChangeFailedError(change, "the re-read does not show the new value")
        return "done"

    def settle(
        self, unsure: Sequence[tuple[int, BaseException | None]], lagging: list[int]
    ) -> list[int]:
        """One re-read for the changes whose answer was lost or not read back: made → applied;
        still the old value → to retry (returned) if the answer was lost, else not visible yet
        (added to `lagging`); anything else → failed."""
        pending: list[int] = []
        policy = self.run.policy
        now = self.run.read(*read_scope([self.items[i][1] for i, _ in unsure], self.state))
        for i, error in unsure:
            run, change = self.items[i]
            if shows(change, now, after=True):
                run.emit("applied", change.target)
            elif error is None and policy.visibility_timeout and shows(change, now, after=False):
                lagging.append(i)
            elif error is None:
                self.failures[i] = ChangeFailedError(
                    change, "the re-read does not show the new value"
                )
            elif shows(change, now, after=False) and self.attempts < policy.attempts:
                run.emit("retry", change.target, f"attempt {self.attempts}: not applied")
                pending.append(i)
            else:
                self.failures[i] = ChangeFailedError(change, error)
        return pending

    def await_visible(self, lagging: Sequence[int]) -> None:
        """Changes accepted whose re-read still shows the old value: re-read them with backoff
        while any still does (`RetryPolicy.visibility_timeout`). Then each shows its new value
        → applied; still the old → not visible (`WriteNotVisibleError`); anything else →
        someone else's change, failed (never waited for: it ends the wait once nothing is
        old)."""
        changes = [self.items[i][1] for i in lagging]
        for i in lagging:
            self.items[i][0].emit("not visible", self.items[i][1].target, "accepted; re-reading")
        scope = read_scope(changes, self.state)
        seen = reread_until_visible(
            lambda: self.run.read(*scope),
            lambda now: any(shows(c, now, after=False) for c in changes),
            self.run.policy,
            delay_first=True,
        )
        for i, change in zip(lagging, changes, strict=True):
            run = self.items[i][0]
            if shows(change, seen.value, after=True):
                run.emit("applied", change.target, f"visible after {seen.waited:.1f}s")
            elif shows(change, seen.value, after=False):
                self.failures[i] = WriteNotVisibleError(change, seen.waited)
            else:
                now = ServerSnapshot.of(seen.value, change.target)
                self.failures[i] = ChangeFailedError(
                    change,
                    "the re-read shows neither the value before the write nor the one written "
                    f"(now {now.describe() if now else 'gone'}): someone else's change",
                )


def shows(change: Change, state: SiteState, *, after: bool) -> bool:
    """Does `state` show the change's after (or before) value for what it writes?"""
    if change.kind is ChangeKind.CREATE_ACCOUNT:
        return state.has_account(change.target, change.site_code) is after
    snap = ServerSnapshot.of(state, change.target)
    setting = setting_for(change)
    if snap is None or setting is None:
        return False
    return bool(setting.same(setting.in_snapshot(snap), change.after if after else change.before))


def ours(now: ServerSnapshot, before: ServerSnapshot, after: ServerSnapshot) -> bool:
    """Is every field of `now` either its before or its after value?"""
    proxy_ok = now.proxy.same_as(before.proxy) or now.proxy.same_as(after.proxy)
    was, will = dict(before.settings), dict(after.settings)
    others_ok = all(value in (was.get(n), will.get(n)) for n, value in now.settings)
    return proxy_ok and now.sup in (before.sup, after.sup) and others_ok


def not_seen_yet(now: ServerSnapshot | None, before: ServerSnapshot, after: ServerSnapshot) -> bool:
    """Shows nothing but our values, yet not all of its new ones: written, not visible yet?"""
    return now is not None and ours(now, before, after) and not after.same_as(now)


def expected_after(
    snapshots: dict[str, ServerSnapshot], changes: Iterable[Change]
) -> dict[str, ServerSnapshot]:
    """The snapshots (by lower-case name) with each change's value put in by its `Setting`:
    what verification expects to read back (public form: `cmproxy.expected_after`)."""
    after = dict(snapshots)
    for change in changes:
        key = change.target.lower()
        if key not in after:
            continue
        setting = setting_for(change)
        if setting is not None:
            after[key] = setting.into_snapshot(after[key], change.after)
    return after
