"""Retry-aware transactions: replace proxy configurations so each server ends old or new.

    snapshot → plan → claim in the journal → fresh read (conflict? nothing written)
      → for each change: journal, apply, re-read, verify
      → on failure: restore every touched server to its snapshot (planned like any change, so
        R11 ordering holds), verify the restore → outcome per server, journal closed.

A write whose answer is lost (the ambiguous case) is settled by re-reading, never by blind
repetition: if the new value is there the write happened; if the old one is, it is retried;
anything else is someone else's change and is left alone.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from cmproxy._exceptions import CMProxyError, ConflictError, RollbackError, TransactionError
from cmproxy.journal import Journal, JournalEntry
from cmproxy.model import ProxySettings, SiteState, SupFlags
from cmproxy.plan import (
    Change,
    ChangeKind,
    DesiredState,
    Plan,
    PlanOptions,
    ProxyRequest,
    SupFlagsRequest,
    plan,
)
from cmproxy.retry import RetryEvent, RetryPolicy, is_transient
from cmproxy.roles import SoftwareUpdatePoint

__all__ = [
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
]

log = logging.getLogger("cmproxy.transaction")


class SiteClient(Protocol):
    """What a transaction needs from a live session (cmproxy.Session provides it)."""

    @property
    def endpoint(self) -> str:
        """A stable identity of the SMS Provider endpoint, for the journal."""
        ...

    def read_state(self, servers: Sequence[str] | None = None) -> SiteState:
        """A fresh read (only `servers`, with their sites and accounts, when given)."""
        ...

    def apply(self, change: Change) -> object:
        """Run the change's invocation once. May raise; never retries by itself.

        May return a read-back with a boolean `matches` (the value read in the same pipeline
        right after the write); the transaction then skips its own re-read.
        """
        ...


class Outcome(enum.Enum):
    """How a server ended."""

    UNCHANGED = "unchanged"
    CHANGED = "changed"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"


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

    kind: str  # planned, conflict, apply, applied, ambiguous, retry, rollback, restored, ...
    transaction_id: str | None
    target: str
    detail: str = ""


Hook = Callable[[TransactionEvent], None]


class _ChangeFailedError(CMProxyError):
    def __init__(self, change: Change, error: BaseException | str) -> None:
        self.change = change
        self.error = error
        super().__init__(f"{change.kind.value} on {change.target} failed: {error}")


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

    def read(self, servers: Sequence[str] | None) -> SiteState:
        return self.policy.call(
            lambda: self.client.read_state(servers),
            operation="read " + (", ".join(servers) if servers else "site"),
            idempotent=True,
            on_retry=self.on_retry,
        )

    def holds(self, change: Change, state: SiteState) -> bool:
        """Does `state` show the change's after value?"""
        return _shows(change, state, after=True)

    def was_before(self, change: Change, state: SiteState) -> bool:
        """Does `state` still show the change's before value?"""
        return _shows(change, state, after=False)

    def apply_and_verify(self, change: Change) -> None:
        """Apply once; settle a lost answer by re-reading; verify by re-reading."""
        readback = [change.target] if change.kind is not ChangeKind.CREATE_ACCOUNT else None
        attempts = 0
        while True:
            attempts += 1
            self.emit("apply", change.target, change.invocation.render())
            try:
                readback_matches = getattr(self.client.apply(change), "matches", None)
            except Exception as error:
                if not is_transient(error):
                    raise _ChangeFailedError(change, error) from error
                # Ambiguous: the write may have happened. Re-read to find out.
                self.emit("ambiguous", change.target, f"{type(error).__name__}: {error}")
                state = self.read(readback)
                if self.holds(change, state):
                    break
                if self.was_before(change, state) and attempts < self.policy.attempts:
                    self.emit("retry", change.target, f"attempt {attempts}: not applied")
                    self.policy.sleep(self.policy.initial_backoff)
                    continue
                raise _ChangeFailedError(change, error) from error
            if readback_matches is None:
                readback_matches = self.holds(change, self.read(readback))
            if not readback_matches:
                raise _ChangeFailedError(change, "the re-read does not show the new value")
            break
        self.emit("applied", change.target)

    def restore(
        self,
        snapshots: dict[str, ServerSnapshot],
        expected: dict[str, ServerSnapshot],
        why: str,
    ) -> dict[str, tuple[bool, str]]:
        """Put each server back to its snapshot, if it holds nothing but our changes.

        A server showing a value that is neither its snapshot's nor the one we wrote was
        changed by someone else: it is left alone (never overwrite another's update).
        Returns per server (restored and verified?, reason).
        """
        results: dict[str, tuple[bool, str]] = {}
        state = self.read(list(snapshots))
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
            restore_plan = plan(state, restore_desired(ours), RESTORE_OPTIONS)
        except CMProxyError as error:
            return dict.fromkeys(snapshots, (False, f"cannot plan the restore: {error}"))
        for change in restore_plan:
            self.emit("rollback", change.target, why)
            try:
                self.apply_and_verify(change)
            except CMProxyError as error:
                results[change.target.lower()] = (False, f"restore failed: {error}")
        after = self.read(list(snapshots))
        for server, snap in snapshots.items():
            if server in results:
                continue
            if snap.same_as(ServerSnapshot.of(after, server)):
                results[server] = (True, why)
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


def _requested_servers(desired: DesiredState) -> list[str]:
    names = [r.server for r in desired.proxies] + [r.server for r in desired.sup_flags]
    return list(dict.fromkeys(n.lower() for n in names))


def run_transaction(
    client: SiteClient,
    desired: DesiredState,
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
    run = _Run(client, policy or RetryPolicy(), hooks)
    current = base if base is not None else run.read(None)
    the_plan = plan(current, desired, options)
    run.emit("planned", "site", f"{len(the_plan)} change(s)")
    touched = list(
        dict.fromkeys(c.target.lower() for c in the_plan if c.kind is not ChangeKind.CREATE_ACCOUNT)
    )
    requested = list(dict.fromkeys([*_requested_servers(desired), *touched]))
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

    def untouched(name: str, reason: str = "already as desired") -> ServerOutcome:
        if name in redirected:
            reason = f"R5: its proxy is the one of {redirected[name]} ({reason})"
        snap = ServerSnapshot.of(current, name)
        return ServerOutcome(name, Outcome.UNCHANGED, snap, snap, reason)

    if dry_run or the_plan.is_empty:
        if dry_run:
            outs = tuple(
                untouched(n, f"dry run: {len(the_plan.for_server(n))} change(s) planned")
                for n in requested
            )
        else:
            outs = tuple(untouched(n) for n in requested)
        return TransactionResult(the_plan, outs, None, dry_run)

    journal = journal if journal is not None else Journal()
    run.tx_id = journal.begin(
        client.endpoint,
        [
            JournalEntry(
                name,
                current.server(name).site_code,  # type: ignore[union-attr]
                snapshots[name].to_dict(),
                expected[name].to_dict(),
            )
            for name in touched
        ],
        [(c.target, c.kind.name, c.to_dict()) for c in the_plan],
    )
    # Optimistic check under the journal claim: nobody changed the servers since `current`.
    try:
        fresh = run.read(touched)
        for name in touched:
            if not snapshots[name].same_as(ServerSnapshot.of(fresh, name)):
                now = ServerSnapshot.of(fresh, name)
                raise ConflictError(
                    name,
                    f"read as {snapshots[name].describe()}, now "
                    f"{now.describe() if now else 'gone'}",
                )
        for change in the_plan:
            if change.kind is ChangeKind.CREATE_ACCOUNT and fresh.has_account(
                change.target, change.site_code
            ):
                raise ConflictError(change.target, "the account was created meanwhile")
    except BaseException as error:
        journal.finish(run.tx_id, "rolled_back", f"nothing written: {error}")
        if isinstance(error, ConflictError):
            run.emit("conflict", error.server, error.detail)
        raise

    failure: _ChangeFailedError | None = None
    for seq, change in enumerate(the_plan):
        journal.mark_change(run.tx_id, seq, "applying")
        try:
            run.apply_and_verify(change)
        except _ChangeFailedError as error:
            failure = error
            journal.mark_change(run.tx_id, seq, "failed")
            break
        except BaseException:
            # Interrupted (Ctrl-C) or a bug: restore before letting it through.
            run.restore(snapshots, expected, "interrupted")
            journal.finish(run.tx_id, "rolled_back", "interrupted")
            raise
        journal.mark_change(run.tx_id, seq, "applied")

    # A server written more than once must show its whole new state at the end, not just the
    # last field written (an earlier write could have been undone in between). A server
    # written once was verified by that write's own read-back.
    writes = Counter(c.target.lower() for c in the_plan if c.kind is not ChangeKind.CREATE_ACCOUNT)
    several = [name for name in touched if writes[name] > 1]
    if failure is None and several:
        final = run.read(several)
        for name in several:
            if not expected[name].same_as(ServerSnapshot.of(final, name)):
                failure = _ChangeFailedError(
                    the_plan.changes[-1], f"{name} does not show its new state after all writes"
                )
                break

    if failure is None:
        journal.finish(run.tx_id, "committed")
        run.emit("committed", "site", run.tx_id)
        outcomes = []
        for name in requested:
            if name in touched:
                outcomes.append(
                    ServerOutcome(name, Outcome.CHANGED, snapshots[name], expected[name])
                )
            else:
                outcomes.append(untouched(name))
        return TransactionResult(the_plan, tuple(outcomes), run.tx_id)

    reason = str(failure)
    restored = run.restore(snapshots, expected, reason)
    all_back = all(ok for ok, _ in restored.values())
    journal.finish(run.tx_id, "rolled_back" if all_back else "failed", reason)
    outcomes = []
    for name in requested:
        if name not in touched:
            outcomes.append(untouched(name, reason))
            continue
        ok, why = restored[name]
        if ok:
            outcomes.append(
                ServerOutcome(name, Outcome.ROLLED_BACK, snapshots[name], snapshots[name], reason)
            )
        else:
            outcomes.append(
                ServerOutcome(
                    name,
                    Outcome.FAILED,
                    snapshots[name],
                    None,
                    f"{reason}; rollback: {why}. Check the server and run cmproxy recover.",
                )
            )
    return TransactionResult(the_plan, tuple(outcomes), run.tx_id)


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
            cls = RollbackError if failed else TransactionError
            raise cls(f"the change was not applied: {summary}", self.result.outcomes)


@attrs.frozen
class RecoveryOutcome:
    """What `recover` did with one unfinished transaction."""

    transaction_id: str
    status: str  # committed (already in the new state), rolled_back, failed
    servers: tuple[ServerOutcome, ...]


def recover(
    client: SiteClient,
    journal: Journal,
    *,
    policy: RetryPolicy | None = None,
    hooks: Sequence[Hook] = (),
) -> list[RecoveryOutcome]:
    """Finish every open transaction of this endpoint left by a killed process.

    If every server already shows its new state, the transaction is closed as committed
    (rolled forward). Otherwise every server is restored to its snapshot and verified.
    """
    results: list[RecoveryOutcome] = []
    for tx in journal.open_transactions(client.endpoint):
        run = _Run(client, policy or RetryPolicy(), hooks, tx.id)
        names = [e.server for e in tx.servers]
        befores = {e.server: ServerSnapshot.from_dict(e.before) for e in tx.servers}
        afters = {e.server: ServerSnapshot.from_dict(e.after) for e in tx.servers}
        state = run.read(names)
        now = {n: ServerSnapshot.of(state, n) for n in names}
        if all(afters[n].same_as(now[n]) for n in names):
            journal.finish(tx.id, "committed", "recovered: already in the new state")
            run.emit("recovered", "site", "rolled forward")
            outs = tuple(ServerOutcome(n, Outcome.CHANGED, befores[n], afters[n]) for n in names)
            results.append(RecoveryOutcome(tx.id, "committed", outs))
            continue
        restored = run.restore(befores, afters, "recovering an interrupted transaction")
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
        results.append(RecoveryOutcome(tx.id, "rolled_back" if ok else "failed", outs))
    return results
