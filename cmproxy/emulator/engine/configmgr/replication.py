"""What reading cmdlets see of roles written at a site with replication lag.

The [UNCONFIRMED] model of `settings.Replication`: a write is committed at once (the SMS
Provider's own copy, which later writes build on), and becomes visible to reads only once its
lag has passed, in the order the writes were made. Until then reads show the role as it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import attrs

from cmproxy.emulator.state import SysRes, nocase

_Key = tuple[str, str, str]


@attrs.define
class _Pending:
    #: The row readers see now.
    visible: SysRes
    #: Writes not visible yet: (moment they become visible, row after the write), in order.
    queue: list[tuple[float, SysRes]] = attrs.field(factory=list)

    def advance(self, now: float) -> None:
        while self.queue and self.queue[0][0] <= now:
            self.visible = self.queue.pop(0)[1]


class ReplicaView:
    """Per role row: the writes accepted but not yet visible (thread-safe)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[_Key, _Pending] = {}

    @staticmethod
    def _key(row: SysRes) -> _Key:
        return nocase(row.site), nocase(row.server), nocase(row.role)

    def written(self, before: SysRes, after: SysRes, lag: float) -> None:
        """A write turned `before` into `after`; readers see it `lag` seconds from now (and
        never before an earlier write of the same row)."""
        key = self._key(before)
        with self._lock:
            now = self._clock()
            pending = self._pending.get(key)
            if pending is not None:
                pending.advance(now)
            if lag <= 0 and (pending is None or not pending.queue):
                self._pending.pop(key, None)
                return
            if pending is None:
                pending = self._pending[key] = _Pending(before)
            at = now + lag
            if pending.queue:
                at = max(at, pending.queue[-1][0])
            pending.queue.append((at, after))

    def view(self, row: SysRes) -> SysRes:
        """The row as reading cmdlets see it now."""
        key = self._key(row)
        with self._lock:
            pending = self._pending.get(key)
            if pending is None:
                return row
            pending.advance(self._clock())
            if not pending.queue:
                del self._pending[key]
                return row
            return pending.visible

    def views(self, rows: list[SysRes]) -> list[SysRes]:
        if not self._pending:
            return rows
        return [self.view(r) for r in rows]
