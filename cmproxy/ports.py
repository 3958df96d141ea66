"""What the engine needs from a site, declared: one protocol and its optional capabilities.

`SiteClient` is what every transaction needs (a `Session` provides it; tests provide fakes,
`cmproxy.testing`). A site may offer more, each capability a protocol of its own, checked by
`isinstance` in one place each (never by probing attribute names):

- `AppliesMany`: many changes in one call, one pipeline per site (a round of a bulk batch);
- `Warms`: open its concurrent lanes (runspace pools) ahead;
- `ReportsLanes`: say how many of them are ready while the others still warm;
- `CreatesAccountsInWrites`: create a bulk run's new account in its first write pipelines
  instead of in a step of its own before them;
- `RecordsPipelines`: tell a watcher each pipeline before it is sent (the journal records it);
- `StopsShells` / `HoldsShells`: list and delete this account's shells, and say which are its
  own (recovery stops what a killed run left running).

What `SiteClient.apply` answers may carry a read-back (`matches`, `shows_before`):
`read_back_matches` and `shows_before` read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from cmproxy.model import SiteState
from cmproxy.plan import Change
from cmproxy.steps import PipelineWatcher, RemoteShell

__all__ = [
    "AppliesMany",
    "CreatesAccountsInWrites",
    "HoldsShells",
    "Identified",
    "RecordsPipelines",
    "ReportsLanes",
    "SiteClient",
    "StopsShells",
    "Warms",
    "read_back_matches",
    "shows_before",
]


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
        also offer `apply_many` (`AppliesMany`).
        """
        ...


@runtime_checkable
class AppliesMany(Protocol):
    """Applies many changes at once: per change, its read-back or the exception it raised, in
    order (a `Session` writes one site's changes in one pipeline). `groups[i]` names change
    i's transaction: after one of its writes failed, its later ones are not made."""

    def apply_many(
        self, changes: Sequence[Change], groups: Sequence[int] | None = None
    ) -> Sequence[object]: ...


@runtime_checkable
class CreatesAccountsInWrites(Protocol):
    """While the context is open, every write pipeline at the site of one of `creations`
    (`CREATE_ACCOUNT` changes, at most one per site) registers that account first unless it
    exists, under a lock (the first creates it, the others find it), and stops before any
    write if it cannot: the writes wait for no separate account step."""

    def creating_accounts(self, creations: Sequence[Change]) -> AbstractContextManager[None]: ...


@runtime_checkable
class ReportsLanes(Protocol):
    """How many steps it can run at once now while some of its lanes still warm (None: none
    is warming): a bulk run starts no more batches than that, so none waits for a lane while
    another site has none."""

    def lanes_ready(self) -> int | None: ...


@runtime_checkable
class Warms(Protocol):
    """Opens `concurrency` lanes ahead (`secrets`: each exchanges its SecureString key)."""

    def warm(self, concurrency: int, *, secrets: bool = False) -> None: ...


@runtime_checkable
class RecordsPipelines(Protocol):
    """Calls `watcher` with each pipeline's shell and command just before it is sent."""

    def watch_pipelines(self, watcher: PipelineWatcher) -> AbstractContextManager[None]: ...


@runtime_checkable
class StopsShells(Protocol):
    """Lists this account's shells on the endpoint (None: cannot) and deletes one."""

    def list_shells(self) -> list[RemoteShell] | None: ...

    def delete_shell(self, resource_uri: str, shell_id: str) -> bool: ...


@runtime_checkable
class HoldsShells(Protocol):
    """Says which shells it holds open itself (never to be stopped as orphans)."""

    def own_shells(self) -> frozenset[str]: ...


class _Account(Protocol):
    @property
    def username(self) -> str | None: ...


@runtime_checkable
class Identified(Protocol):
    """Says which account it connects as (a shell of another account is not its to stop)."""

    @property
    def info(self) -> _Account: ...


def read_back_matches(answer: object) -> bool | None:
    """Did `apply`'s answer read the new value back (None: it read nothing back)?"""
    matches = getattr(answer, "matches", None)
    return None if matches is None else bool(matches)


def shows_before(answer: object) -> bool:
    """Did `apply`'s answer read back the value from before the write (accepted, not seen)?"""
    return bool(getattr(answer, "shows_before", False))
