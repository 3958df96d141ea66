"""How many runspace pools bootstrap (import the ConfigurationManager module) at a time.

The import loads the AdminUI assemblies on the SMS Provider. If that is CPU-bound there
([UNCONFIRMED]), k imports on c < k cores each take k / c times as long: all at once, every
pool (the first one the planning read needs included) is ready late; in turns of c, the first
c are ready after one import. So by default the limit is learned: the first pool a warm-up
opens asks the provider its logical processors (`[Environment]::ProcessorCount`, one short
pipeline) before it imports, and the pools import in turns of that many (`Tuning.imports_at_once`
sets it instead). Pools waiting for their turn are already open, so each imports as soon as a
turn is free.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from cmproxy.steps import Result, Script, Step

__all__ = ["PROCESSOR_COUNT", "ImportTurns", "processor_count"]

#: The provider's logical processors (.NET `Environment.ProcessorCount`).
PROCESSOR_COUNT = Step(Script("ProcessorCount", source="[Environment]::ProcessorCount"))


def processor_count(result: Result) -> int | None:
    """What PROCESSOR_COUNT brought back, if it is a count."""
    values = [v for v in result.output if isinstance(v, int) and not isinstance(v, bool)]
    return values[0] if len(values) == 1 and values[0] >= 1 else None


class ImportTurns:
    """Bootstraps running at once, at most `limit` (None: no limit), the limit either given or
    learned once from the provider by the first bootstrap that needs it."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._limit: int | None = None
        self._running = 0
        self._learn = False
        self._asking = False
        #: The provider's logical processors, once asked (None: not asked, or no answer).
        self.cores: int | None = None

    def limit_to(self, at_once: int | None) -> None:
        """Turns of `at_once`; None: of the provider's cores, asked by the next bootstrap
        (once per transport; all at once if it gave no answer)."""
        with self._changed:
            if at_once is None:
                self._learn = self.cores is None and not self._asking
                self._limit = self.cores
            else:
                self._learn = False
                self._limit = max(1, at_once)
            self._changed.notify_all()

    @contextlib.contextmanager
    def turn(self, ask: Callable[[], int | None]) -> Iterator[None]:
        """Hold a turn while a pool bootstraps; `ask`: how this pool would ask the provider its
        cores (run first when the limit is still to learn; if it raises, the others go on
        with no limit and the error is this caller's)."""
        with self._changed:
            asker = self._learn and not self._asking
            self._asking = self._asking or asker
        if asker:
            cores = None
            try:
                cores = ask()
            finally:  # answered or not, the others must not wait for it any more
                with self._changed:
                    self.cores = cores
                    self._limit, self._learn, self._asking = cores, False, False
                    self._changed.notify_all()
        with self._changed:
            self._changed.wait_for(
                lambda: (
                    not self._learn
                    and not self._asking
                    and (self._limit is None or self._running < self._limit)
                )
            )
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()
