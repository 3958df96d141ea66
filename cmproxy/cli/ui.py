"""What the user sees on stderr while a command works: a status line while connecting and
reading, and during `apply` a bar that names the server being written and moves per server.

Both only when stderr is a terminal, the output is a table and `-q` was not given; otherwise
the same moments are logged at INFO (`-v` shows them).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from cmproxy import BulkPlan, ChangeKind, TransactionEvent

__all__ = ["ApplyProgress", "Ui"]

log = logging.getLogger("cmproxy.cli")

#: Events after which a server's transaction has nothing more to write.
_ENDED = frozenset({"rollback", "restored", "conflict"})


class Ui:
    """The stderr side of one command run."""

    def __init__(self, *, live: bool) -> None:
        self.console = Console(stderr=True, highlight=False)
        #: Status line and bar shown (a terminal, table output, not quiet).
        self.live = live and self.console.is_terminal

    @contextmanager
    def status(self, text: str) -> Iterator[None]:
        """A spinner with `text` on stderr for as long as the block runs."""
        log.info("%s", text)
        if not self.live:
            yield
            return
        with self.console.status(text, spinner="dots"):
            yield

    def apply_progress(self, bulk: BulkPlan) -> ApplyProgress:
        return ApplyProgress(self, bulk)


class ApplyProgress:
    """A bar over the servers a plan changes, driven by the transactions' events (`hooks`).

    The bar counts servers, not changes: a server is done when each of its planned changes
    was applied, or when its transaction rolled back or met a conflict. The description names
    the server last written. Before the first write it says what is happening (reading the
    site again, claiming the servers), so the line never sits blank.
    """

    def __init__(self, ui: Ui, bulk: BulkPlan) -> None:
        self.ui = ui
        self._left: dict[str, int] = {}
        for _endpoint, plan in bulk.plans:
            for change in plan:
                if change.kind is not ChangeKind.CREATE_ACCOUNT:
                    key = change.target.lower()
                    self._left[key] = self._left.get(key, 0) + 1
        self._names = {c.target.lower(): c.target for _e, p in bulk.plans for c in p}
        self._done: set[str] = set()
        self._lock = threading.Lock()
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("servers"),
            TimeElapsedColumn(),
            console=ui.console,
            transient=False,
            disable=not ui.live,
        )
        self._task = self._progress.add_task(
            "reading the site and claiming the servers", total=len(self._left)
        )

    @property
    def total(self) -> int:
        return len(self._left)

    def __enter__(self) -> ApplyProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.update(self._task, description="done")
        self._progress.stop()

    def _describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)
        if self.ui.live:
            self._progress.refresh()  # shown as it happens, whatever the refresh rate
        log.info("%s", text)

    def hook(self, event: TransactionEvent) -> None:
        """A `cmproxy.transaction.Hook`: one call per transaction event, from any thread."""
        key = event.target.lower()
        name = self._names.get(key, event.target)
        with self._lock:
            if event.kind == "apply" and key in self._left:
                self._describe(f"writing {name}")
            elif event.kind == "applied" and key in self._left and key not in self._done:
                self._left[key] -= 1
                if self._left[key] <= 0:
                    self._finish(key, f"{name} changed")
            elif event.kind in _ENDED and key in self._left and key not in self._done:
                self._finish(key, f"{name}: {event.kind}")
            elif event.kind == "retry":
                self._describe(f"retrying {event.target}")

    def _finish(self, key: str, text: str) -> None:
        self._done.add(key)
        self._progress.update(self._task, advance=1, description=text)
        if self.ui.live:
            self._progress.refresh()  # each server shown as it ends, whatever the refresh rate
        log.info("%s (%d/%d servers)", text, len(self._done), self.total)

    def settle(self, servers: Sequence[Any]) -> None:
        """After the run: servers whose transaction ended without an event (a write skipped
        behind a failed one, a cancelled batch) are counted as ended too."""
        with self._lock:
            for item in servers:
                key = str(item).lower()
                if key in self._left and key not in self._done:
                    self._finish(key, f"{self._names.get(key, item)} ended")
