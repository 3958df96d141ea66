"""An in-memory `SiteClient` for unit tests of code built on transactions.

The strict stub level of testing (botocore's Stubber idea): it holds a `SiteState`, applies
`Change`s the way the product would (including accepting what the rules refuse), and can be
told to fail. End-to-end tests use the emulator instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

import attrs

from cmproxy._exceptions import PowerShellError, TransportError
from cmproxy.model import KnownAccount, SiteState
from cmproxy.plan import Change, ChangeKind
from cmproxy.settings import setting_for

__all__ = ["InMemorySite"]


class InMemorySite:
    """A site held in memory. `fail_on(n, error)` makes the nth `apply` call fail.

    `lose_answer_on(n)` applies the nth write and then raises a transient `TransportError`,
    which is the ambiguous case a transaction must settle by re-reading.
    """

    def __init__(self, state: SiteState, endpoint: str = "memory://site") -> None:
        self.state = state
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self.applied: list[Change] = []
        self.calls = 0
        self.reads = 0
        self._failures: dict[int, BaseException] = {}
        self._lost: set[int] = set()
        self._failing: dict[tuple[str, ChangeKind | None], BaseException] = {}
        self.before_apply: Callable[[Change], None] | None = None

    @property
    def endpoint(self) -> str:
        return self._endpoint

    def fail_on(self, call: int, error: BaseException | None = None) -> None:
        self._failures[call] = error or PowerShellError(
            "The SMS Provider reported an error.", fully_qualified_error_id="ProviderError"
        )

    def fail_for(
        self, target: str, kind: ChangeKind | None = None, error: BaseException | None = None
    ) -> None:
        """Make every write to `target` (of `kind`, if given) fail."""
        self._failing[(target.lower(), kind)] = error or PowerShellError(
            "The SMS Provider reported an error.", fully_qualified_error_id="ProviderError"
        )

    def lose_answer_on(self, call: int) -> None:
        self._lost.add(call)

    def read_state(
        self, servers: Sequence[str] | None = None, *, site_codes: Iterable[str] | None = None
    ) -> SiteState:
        del servers, site_codes  # the whole site, always (a superset of what was asked)
        with self._lock:
            self.reads += 1
            return self.state

    def apply(self, change: Change) -> None:
        if self.before_apply is not None:
            self.before_apply(change)
        with self._lock:
            self.calls += 1
            n = self.calls
            if n in self._failures:
                raise self._failures[n]
            for key in ((change.target.lower(), change.kind), (change.target.lower(), None)):
                if key in self._failing:
                    raise self._failing[key]
            self.state = _applied(self.state, change)
            self.applied.append(change)
            if n in self._lost:
                raise TransportError("connection reset while reading the answer")


def _applied(state: SiteState, change: Change) -> SiteState:
    if change.kind is ChangeKind.CREATE_ACCOUNT:
        assert isinstance(change.after, str)
        account = KnownAccount(change.after, change.site_code)
        return attrs.evolve(state, accounts=state.accounts | {account})
    server = state.server(change.target)
    setting = setting_for(change)
    assert server is not None
    assert setting is not None
    # What is stored is what the product keeps (a proxy without its password).
    return state.with_server(setting.show(server, setting.stored(change.after)))
