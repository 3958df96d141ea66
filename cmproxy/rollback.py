"""Put servers back to their snapshots: the restore after a failure, and after a crash.

A restore is planned like any change (`RESTORE_OPTIONS`, so R11 ordering holds) and verified.
A server showing a value that is neither its snapshot's nor the one written was changed by
someone else: it is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from cmproxy._exceptions import (
    CMProxyError,
)
from cmproxy.model import SiteState
from cmproxy.outcomes import ServerSnapshot
from cmproxy.plan import (
    DesiredState,
    PlanOptions,
    ProxyRequest,
    SettingRequest,
    SupFlagsRequest,
    plan,
)
from cmproxy.settings import registered
from cmproxy.settling import ChangeFailedError, Run, not_seen_yet, ours

__all__ = ["RESTORE_OPTIONS", "Written", "restore", "restore_desired", "showing"]

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
    others = [
        SettingRequest(server, name, value)
        for server, snap in snapshots.items()
        for name, value in snap.settings
    ]
    return DesiredState(proxies=proxies, sup_flags=flags, settings=others)


def showing(state: SiteState, shown: Mapping[str, ServerSnapshot]) -> SiteState:
    """`state` with each server of `shown` showing that snapshot (its proxy and SUP options)."""
    for name, snap in shown.items():
        server = state.server(name)
        if server is None:
            continue
        for setting in registered():
            value = setting.in_snapshot(snap)
            if value is not None:
                server = setting.show(server, value)
        state = state.with_server(server)
    return state


@attrs.frozen
class Written:
    """The servers a transaction writes: each one's snapshot before, and the state after."""

    before: Mapping[str, ServerSnapshot]
    after: Mapping[str, ServerSnapshot]


def restore(
    run: Run,
    written: Written,
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
    snapshots, expected = written.before, written.after
    state = run.read(list(snapshots))
    lagging = [n for n in unconfirmed if n in snapshots]
    state = run.await_servers(lagging, snapshots, expected, state)
    late = [
        n
        for n in {*lagging, *(f for f in force if f in snapshots)}
        if not_seen_yet(ServerSnapshot.of(state, n), snapshots[n], expected[n])
    ]
    results = _others(state, written)
    restorable = {n: snap for n, snap in snapshots.items() if n not in results}
    try:
        base = showing(state, {n: expected[n] for n in late})
        restore_plan = plan(base, restore_desired(restorable), RESTORE_OPTIONS)
    except CMProxyError as error:
        return dict.fromkeys(snapshots, (False, f"cannot plan the restore: {error}"))
    for change in restore_plan:
        run.emit("rollback", change.target, why)
        try:
            failure = run.apply_all([(run, change)], state)[0]
        except CMProxyError as error:
            failure = ChangeFailedError(change, error)
        if failure is not None:
            results[change.target.lower()] = (False, f"restore failed: {failure}")
    return _confirm(run, snapshots, results, why, late)


def _others(state: SiteState, written: Written) -> dict[str, tuple[bool, str]]:
    """The servers showing a value neither ours nor their snapshot's: left as they are."""
    results: dict[str, tuple[bool, str]] = {}
    for server, snap in written.before.items():
        now = ServerSnapshot.of(state, server)
        if now is None or not ours(now, snap, written.after[server]):
            results[server] = (
                False,
                f"changed by someone else meanwhile (now {now.describe() if now else 'gone'}); "
                "left as it is",
            )
    return results


def _confirm(
    run: Run,
    snapshots: Mapping[str, ServerSnapshot],
    results: dict[str, tuple[bool, str]],
    why: str,
    late: Sequence[str],
) -> dict[str, tuple[bool, str]]:
    """Re-read after the restore: each server not already judged shows its snapshot?"""
    after = run.read(list(snapshots))
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
            run.emit("restored", server)
        else:
            results[server] = (False, "re-read after the restore does not show the snapshot")
    return results
