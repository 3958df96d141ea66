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

This module is the facade (`Transaction`) and the place every name below has always been
imported from. The work lives in: `cmproxy.outcomes` (the values reported),
`cmproxy.ports` (what a site must offer), `cmproxy.settling` (apply once, settle lost answers,
await visibility), `cmproxy.rollback` (restore to snapshots), `cmproxy.engine` (the phases of a
transaction, many side by side) and `cmproxy.recovery` (`recover`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from cmproxy._exceptions import NotVisibleError, RollbackError, TransactionError
from cmproxy.engine import run_transaction, run_transactions
from cmproxy.journal import Journal
from cmproxy.model import ProxySettings, SiteState
from cmproxy.outcomes import (
    RECOVERED,
    Hook,
    Outcome,
    RecoveryOutcome,
    ServerOutcome,
    ServerSnapshot,
    TransactionEvent,
    TransactionResult,
)
from cmproxy.plan import Change, DesiredState, PlanOptions, ProxyRequest, SupFlagsRequest
from cmproxy.ports import SiteClient
from cmproxy.recovery import recover
from cmproxy.retry import RetryPolicy
from cmproxy.rollback import RESTORE_OPTIONS, restore_desired
from cmproxy.settling import apply_changes
from cmproxy.settling import expected_after as _expected_after
from cmproxy.settling import shows as _shows

__all__ = [
    "RECOVERED",
    "RESTORE_OPTIONS",
    "Hook",
    "Outcome",
    "RecoveryOutcome",
    "ServerOutcome",
    "ServerSnapshot",
    "SiteClient",
    "Transaction",
    "TransactionEvent",
    "TransactionResult",
    "_shows",
    "apply_changes",
    "expected_after",
    "recover",
    "restore_desired",
    "run_transaction",
    "run_transactions",
]


def expected_after(
    snapshot: ServerSnapshot, server: str, changes: Iterable[Change]
) -> ServerSnapshot:
    """`snapshot` of `server` with the changes planned for it applied: what a committed run
    leaves. Each change's `Setting` says what it writes, so faces (the Ansible collection)
    report the after of a check-mode run without knowing any change kind."""
    return _expected_after({server.lower(): snapshot}, changes)[server.lower()]


class Transaction:
    """`with Transaction(client, journal=...) as tx:` collects changes; exit applies them.

    On a clean exit the collected desired state is applied with `run_transaction`; if any
    server could not be changed, `TransactionError` (or `RollbackError` when a rollback
    failed too) is raised with `.outcomes`. `tx.result` holds the `TransactionResult`.
    """

    def __init__(  # noqa: PLR0913 - the public signature: keyword-only options of run_transaction
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
