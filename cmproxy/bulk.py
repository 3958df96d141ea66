"""Bulk changes: one desired state, many servers, a few SMS Providers.

One client (session) per SMS Provider — never one per server. The whole desired state is
planned first, so a rule violation anywhere stops everything before a single write. Needed
accounts are created once, then every server gets its own transaction (a cloud DP travels
with its managing primary site server, R5), run with bounded concurrency per provider and
overall. With `all_or_nothing=True`, one failure puts every changed server back to its
snapshot. Ctrl-C cancels cleanly: servers not started are left untouched, in-flight
transactions finish or roll back, none is left open.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import attrs

from cmproxy._exceptions import CMProxyError, ValidationError
from cmproxy.desired import DesiredSpec
from cmproxy.journal import Journal
from cmproxy.model import KnownAccount, SiteState
from cmproxy.plan import (
    ChangeKind,
    DesiredState,
    Plan,
    PlanOptions,
    ProxyRequest,
    SupFlagsRequest,
    plan,
)
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
    restore_desired,
    run_transaction,
)

__all__ = ["BulkPlan", "apply_bulk", "plan_bulk"]

log = logging.getLogger("cmproxy.bulk")


@attrs.frozen
class _Provider:
    client: SiteClient
    state: SiteState


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
        return "".join(f"<h4>{endpoint}</h4>{p._repr_html_()}" for endpoint, p in self.plans)

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
        names = {r.server.lower() for r in wanted.proxies}
        names |= {r.server.lower() for r in wanted.sup_flags}
        mine = {n for n in names - claimed if provider.state.server(n) is not None}
        claimed |= mine
        result.append(
            (
                provider,
                DesiredState(
                    proxies=[r for r in wanted.proxies if r.server.lower() in mine],
                    sup_flags=[r for r in wanted.sup_flags if r.server.lower() in mine],
                    accounts=wanted.accounts,
                ),
            )
        )
    if isinstance(desired, DesiredState):
        asked = {r.server.lower() for r in desired.proxies}
        asked |= {r.server.lower() for r in desired.sup_flags}
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
    for r in desired.proxies:
        proxies.setdefault(target(r.server), []).append(r)
    for f in desired.sup_flags:
        flags.setdefault(target(f.server), []).append(f)
    return {
        key: DesiredState(
            proxies=proxies.get(key, []), sup_flags=flags.get(key, []), accounts=desired.accounts
        )
        for key in sorted(set(proxies) | set(flags))
    }


def _warm(client: SiteClient, concurrency: int) -> None:
    try:
        client.warm(concurrency)  # type: ignore[attr-defined]
    except Exception as exc:  # a lane that cannot open is reported by the step that needs it
        log.info("could not prepare %s for concurrent steps: %s", client.endpoint, exc)


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
    opts = options or (desired.options if isinstance(desired, DesiredSpec) else None)
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


def apply_bulk(
    clients: Sequence[SiteClient],
    desired: DesiredState | DesiredSpec,
    *,
    journal: Journal,
    options: PlanOptions | None = None,
    policy: RetryPolicy | None = None,
    all_or_nothing: bool = False,
    max_workers: int = 64,
    per_provider: int = 64,
    progress: bool | None = None,
    hooks: Sequence[Hook] = (),
    dry_run: bool = False,
    cancel: threading.Event | None = None,
) -> Results:
    """Apply `desired` across `clients` (one per SMS Provider), one transaction per server.

    Rule violations raise before anything is written. Apply failures do not raise: the
    `Results` say per server what happened. `cancel` (or Ctrl-C) stops starting new servers.

    Up to `per_provider` transactions share one client at a time (a `Session` is thread-safe:
    its steps run on a few runspace pools and concurrent server reads share one pipeline), and
    up to `max_workers` run overall; see docs/performance.md for how the defaults were chosen.
    """
    policy = policy or RetryPolicy()
    opts = options or (desired.options if isinstance(desired, DesiredSpec) else None)
    # Sessions that can open their runspace pools ahead do it while the hierarchy is read, so
    # the module imports of the concurrent lanes are not paid one by one later.
    warmers = [
        threading.Thread(target=_warm, args=(c, per_provider), daemon=True)
        for c in clients
        if not dry_run and callable(getattr(c, "warm", None))
    ]
    for warmer in warmers:
        warmer.start()
    try:
        providers = _read_providers(clients, policy)
    finally:
        for warmer in warmers:
            warmer.join()
    split = _split(desired, providers)
    # Validate everything first: nothing is written unless the whole change is allowed.
    plans = [(p, d, plan(p.state, d, opts)) for p, d in split]
    if dry_run:
        return Results(
            tuple(
                ServerResult(
                    s.site_code,
                    ServerOutcome(
                        s.name,
                        Outcome.UNCHANGED,
                        ServerSnapshot.of(p.state, s.name),
                        ServerSnapshot.of(p.state, s.name),
                        f"dry run: {len(pl.for_server(s.name))} change(s) planned",
                    ),
                )
                for p, _d, pl in plans
                for s in p.state.servers
                if pl.for_server(s.name)
            )
        )
    cancel = cancel or threading.Event()
    # Accounts once, before the per-server transactions that need them.
    jobs: list[tuple[_Provider, str, DesiredState]] = []
    for read, d, pl in plans:
        state = read.state
        for change in pl:
            if change.kind is ChangeKind.CREATE_ACCOUNT:
                written = read.client.apply(change)
                if getattr(written, "matches", None) is True:
                    # Read back in the same pipeline: no need to re-read the whole hierarchy.
                    state = attrs.evolve(
                        state,
                        accounts=state.accounts
                        | {KnownAccount(str(change.target), change.site_code)},
                    )
                else:
                    state = read.client.read_state(None)
        provider = attrs.evolve(read, state=state)
        jobs += [(provider, key, group) for key, group in _groups(state, d).items()]

    limits: dict[str, threading.Semaphore] = {
        p.client.endpoint: threading.Semaphore(max(1, per_provider)) for p, _d in split
    }
    bar = _progress_bar(len(jobs), _want_progress(progress))
    lock = threading.Lock()
    done: list[tuple[int, Results]] = []

    def run_one(index: int, provider: _Provider, key: str, group: DesiredState) -> None:
        if cancel.is_set():
            done.append((index, _skipped(provider.state, key, group, "cancelled before start")))
            return
        with limits[provider.client.endpoint]:
            try:
                result = run_transaction(
                    provider.client,
                    group,
                    journal=journal,
                    base=provider.state,
                    options=opts,
                    policy=policy,
                    hooks=hooks,
                )
                items = tuple(
                    ServerResult(_site_of(provider.state, o.server), o) for o in result.outcomes
                )
                part = Results(items)
            except CMProxyError as error:
                part = _skipped(provider.state, key, group, f"not changed: {error}", failed=True)
        with lock:
            done.append((index, part))
            bar.update(1)

    executor = ThreadPoolExecutor(max_workers=max(1, max_workers), thread_name_prefix="cmproxy")
    futures: list[Future[None]] = []
    try:
        for index, (provider, key, group) in enumerate(jobs):
            futures.append(executor.submit(run_one, index, provider, key, group))
        wait(futures)
    except KeyboardInterrupt:
        cancel.set()
        log.warning("cancelled: waiting for in-flight transactions to finish or roll back")
        wait(futures)
    finally:
        executor.shutdown(wait=True)
        bar.close()
    results = Results.merge(part for _, part in sorted(done, key=lambda d: d[0]))
    if cancel.is_set():
        results = attrs.evolve(results, cancelled=True)
    if all_or_nothing and not results.ok:
        results = _undo_changed(results, providers, journal, policy, hooks)
    return results


def _site_of(state: SiteState, server: str) -> str:
    found = state.server(server)
    return found.site_code if found else "?"


def _skipped(
    state: SiteState, key: str, group: DesiredState, reason: str, *, failed: bool = False
) -> Results:
    """Outcomes for a group that wrote nothing: cancelled (unchanged) or refused (failed)."""
    del key
    outcome = Outcome.FAILED if failed else Outcome.UNCHANGED
    requested = [r.server for r in group.proxies] + [r.server for r in group.sup_flags]
    names = dict.fromkeys(n.lower() for n in requested)
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
            for name in names
        )
    )


def _undo_changed(
    results: Results,
    providers: Sequence[_Provider],
    journal: Journal,
    policy: RetryPolicy,
    hooks: Sequence[Hook],
) -> Results:
    """All-or-nothing: put every changed server back to its snapshot (one read per provider;
    each server its own restore transaction, so one failed undo does not block the others)."""
    items = list(results.items)
    fresh: dict[str, SiteState] = {}
    for i, item in enumerate(items):
        o = item.outcome
        if o.outcome is not Outcome.CHANGED or o.before is None:
            continue
        provider = next(p for p in providers if p.state.server(o.server) is not None)
        endpoint = provider.client.endpoint
        reason = "all-or-nothing: another server failed, so this one was put back"
        try:
            if endpoint not in fresh:
                fresh[endpoint] = _read_providers([provider.client], policy)[0].state
            undo = run_transaction(
                provider.client,
                restore_desired({o.server: o.before}),
                journal=journal,
                base=fresh[endpoint],
                options=RESTORE_OPTIONS,
                policy=policy,
                hooks=hooks,
            )
            ok = undo.ok
        except CMProxyError as error:
            ok, reason = False, f"all-or-nothing undo failed: {error}"
        items[i] = attrs.evolve(
            item,
            outcome=attrs.evolve(
                o,
                outcome=Outcome.ROLLED_BACK if ok else Outcome.FAILED,
                after=o.before if ok else o.after,
                reason=reason,
            ),
        )
    return Results(tuple(items), results.cancelled)


class _NoBar:
    def update(self, n: int) -> None:
        del n

    def close(self) -> None:
        pass


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm  # noqa: PLC0415 - only when progress is shown

    return tqdm(total=total, desc="servers", unit="server")
