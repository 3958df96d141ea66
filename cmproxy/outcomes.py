"""The values a transaction reports: how each server ended, the result, its events.

Pure values (no IO): `cmproxy.transaction`, `cmproxy.bulk` and the faces read them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import attrs

from cmproxy.model import ProxySettings, SiteState, SupFlags
from cmproxy.plan import (
    Plan,
)
from cmproxy.settings import SERVER_PROXY, SETTINGS, SUP_OPTIONS, registered, setting_named

__all__ = [
    "RECOVERED",
    "Hook",
    "Outcome",
    "RecoveryOutcome",
    "ServerOutcome",
    "ServerSnapshot",
    "TransactionEvent",
    "TransactionResult",
]


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
    """A server's proxy-related state: its proxy, its SUP options if it hosts a SUP, and the
    values of the settings its other roles carry (`settings`: (name, value) pairs, sorted)."""

    proxy: ProxySettings
    sup: SupFlags | None = None
    settings: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, state: SiteState, server: str) -> ServerSnapshot | None:
        found = state.server(server)
        if found is None:
            return None
        others = tuple(
            sorted(
                (setting.name, setting.value(found))
                for setting in registered()
                if setting not in SETTINGS and setting.carried(found)
            )
        )
        return cls(SERVER_PROXY.value(found), SUP_OPTIONS.value(found), others)

    def same_as(self, other: ServerSnapshot | None) -> bool:
        return (
            other is not None
            and self.proxy.same_as(other.proxy)
            and self.sup == other.sup
            and self.settings == other.settings
        )

    def describe(self) -> str:
        sup = f"; SUP {self.sup.describe()}" if self.sup is not None else ""
        others = "".join(f"; {name} {value!r}" for name, value in self.settings)
        return self.proxy.describe() + sup + others

    def to_dict(self) -> dict[str, Any]:
        """JSON for journals and results; never a password."""
        data: dict[str, Any] = {
            "proxy": self.proxy.normalized().to_dict(),
            "sup": self.sup.to_dict() if self.sup is not None else None,
        }
        if self.settings:
            data["settings"] = {n: setting_named(n).encode(v) for n, v in self.settings}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerSnapshot:
        sup = data.get("sup")
        others = tuple(
            sorted((n, setting_named(n).decode(v)) for n, v in data.get("settings", {}).items())
        )
        return cls(ProxySettings(**data["proxy"]), SupFlags(**sup) if sup else None, others)


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
