"""A stand-in for the emulator engine's `sleep` (its modelled cost) that observes which calls
are in their cost at the same moment, instead of timing them (no timed assertion: the
project's rule). Calls that are serialised can never meet; calls that run in parallel meet as
soon as both are scheduled, and the wait for that is bounded far above any scheduling delay.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: How long calls wait for each other at the meeting point: far above any scheduling delay.
WAIT = 10.0


def until(condition: Callable[[], bool], what: str, bound: float = WAIT) -> None:
    """Wait (bounded far above any scheduling delay) until `condition` holds: orders threads,
    times nothing."""
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.002)


class Meeting:
    """Stands in for the engine's sleep: each modelled cost waits (bounded) until `parties`
    calls are in their cost at once, and records how many were in it together at most."""

    def __init__(self, parties: int, wait: float = WAIT) -> None:
        self.barrier = threading.Barrier(parties)
        self.wait = wait
        self._lock = threading.Lock()
        self._inside = 0
        self.most_at_once = 0
        self.met: list[bool] = []

    def sleep(self, _seconds: float) -> None:
        with self._lock:
            self._inside += 1
            self.most_at_once = max(self.most_at_once, self._inside)
        try:
            self.barrier.wait(timeout=self.wait)
            met = True
        except threading.BrokenBarrierError:
            met = False
        with self._lock:
            self._inside -= 1
            self.met.append(met)
