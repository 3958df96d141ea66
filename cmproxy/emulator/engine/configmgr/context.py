"""What the ConfigMgr layer needs from the runspace and engine it runs in, as protocols, and
the call context its cmdlets take (`SiteCallContext`: the generic one plus the site's state
and the one way a cmdlet writes, `commit`).

`runspace.SiteRunspace` / `SiteEngine` implement the protocols; this layer never imports them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

from cmproxy.emulator.engine.configmgr.host import Drive
from cmproxy.emulator.engine.configmgr.replication import ReplicaView
from cmproxy.emulator.engine.language.commands import CommandContext
from cmproxy.emulator.engine.language.session import EngineFacts, Session
from cmproxy.emulator.state import SiteState


class SiteEngineFacts(EngineFacts, Protocol):
    """The engine as the ConfigMgr layer sees it (see `runspace.SiteEngine` for the meaning)."""

    @property
    def state(self) -> SiteState: ...

    @property
    def replica(self) -> ReplicaView: ...

    @property
    def auto_site_drive(self) -> bool: ...

    @property
    def console_installed(self) -> bool: ...

    @property
    def local_site(self) -> str: ...

    @property
    def local_server(self) -> str: ...

    def site_lock(self, site: str) -> threading.Lock: ...


class SiteSession(Session, Protocol):
    """A runspace on the console machine: its drives, location (drive name, path inside
    it), location stack, imported modules (lower case) and home folder."""

    drives: dict[str, Drive]
    location: tuple[str, str]
    location_stack: list[tuple[str, str]]
    modules: set[str]
    home: str

    @property
    def engine(self) -> SiteEngineFacts: ...

    def current_drive(self) -> Drive | None:
        """The current location's drive when it is a CMSite drive."""
        ...


class SiteCallContext(CommandContext[SiteSession]):
    """The context ConfigMgr-aware commands take."""

    @property
    def engine(self) -> SiteEngineFacts:
        return self.rs.engine

    @property
    def state(self) -> SiteState:
        return self.rs.engine.state

    def site_from_location(self) -> str:
        drive = self.rs.current_drive()
        return drive.site if drive is not None else ""

    def commit(self, site: str, fn: Callable[[], None]) -> None:
        """One write: per-site lock (if configured) held across its cost and transaction.

        The Set cost is the whole time the write holds the site: the emulator's own work for
        it (the state transaction) is part of it, and only the rest is slept, so the lock is
        held for the modelled cost, not for the cost plus this process's CPU.
        """
        eng = self.engine
        costs = eng.settings.costs
        lock = eng.site_lock(costs.write_lock_key(site)) if costs.serialise_site_writes else None
        with lock if lock is not None else contextlib.nullcontext():
            start = time.perf_counter()
            with self.state.transaction():
                fn()
            cost = eng.settings.costs.set_cmdlet
            if cost:
                eng.sleep(max(0.0, cost - (time.perf_counter() - start)))
            eng.settings.note_site_write(site, start, time.perf_counter())
        self.wrote = True
