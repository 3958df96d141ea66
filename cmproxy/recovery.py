"""Finish the transactions a killed process left open (`recover`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from cmproxy.journal import Journal, JournalTransaction, JournalUnit
from cmproxy.outcomes import Hook, Outcome, RecoveryOutcome, ServerOutcome, ServerSnapshot
from cmproxy.ports import SiteClient
from cmproxy.quiet import make_quiet, recording
from cmproxy.retry import RetryPolicy
from cmproxy.rollback import Written, restore
from cmproxy.settling import Run, not_seen_yet

__all__ = ["recover"]


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
    not show its new state, the restore writes its snapshot anyway (see `Run.restore`), so
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
        Run(client, policy, hooks).emit("not quiet", "site", why)
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
    run = Run(client, policy, hooks, tx.id)
    names = [e.server for e in tx.servers]
    befores = {e.server: ServerSnapshot.from_dict(e.before) for e in tx.servers}
    afters = {e.server: ServerSnapshot.from_dict(e.after) for e in tx.servers}
    state = run.read(names)
    accepted = {t.lower() for _seq, t, _kind, st in tx.changes if st == "applied"}
    written = [n for n in names if n.lower() in accepted]
    state = run.await_servers(written, befores, afters, state)
    now = {n: ServerSnapshot.of(state, n) for n in names}
    late = [n for n in written if not_seen_yet(now[n], befores[n], afters[n])]
    if all(afters[n].same_as(now[n]) for n in names):
        journal.finish(tx.id, "committed", "recovered: already in the new state")
        run.emit("recovered", "site", "rolled forward")
        outs = tuple(ServerOutcome(n, Outcome.CHANGED, befores[n], afters[n]) for n in names)
        return RecoveryOutcome(tx.id, "committed", outs)
    restored = restore(
        run, Written(befores, afters), "recovering an interrupted transaction", force=late
    )
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
    run = Run(client, policy, hooks, unit.id)
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
            restored = restore(run, Written(befores, afters), why)
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
