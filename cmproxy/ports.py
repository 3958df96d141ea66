"""What the transaction engine needs from a site, declared (issue 16 point 2).

A `Session` provides it; tests provide fakes (`cmproxy.testing`). The engine asks for nothing
else: no attribute is probed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from cmproxy.model import SiteState
from cmproxy.plan import (
    Change,
)

__all__ = ["SiteClient"]


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
        also offer `apply_many(changes)` returning, per change, that read-back or the
        exception raised (a `Session` writes one site's changes in one pipeline).
        """
        ...
