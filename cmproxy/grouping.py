"""Concurrent calls joined into one run: the leader/follower pattern behind the read and write
coalescers (`cmproxy.coalescing`) and the journal's group commit (`Journal.begin_many`).

Pure threading, no other cmproxy module but the error tree.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from cmproxy._exceptions import ConnectionError, TransportError

__all__ = ["Grouper", "batch_error"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class _Group(Generic[_T, _R]):
    def __init__(self, first: _T) -> None:
        self.items: list[_T] = [first]
        self.done = threading.Event()
        self.results: list[_R] = []
        self.error: BaseException | None = None


class Grouper(Generic[_T, _R]):
    """Leader/follower grouping: concurrent calls joined into one run (a pipeline, a commit).

    A caller joins the group still *collecting* (not started) when `fits` lets it; else it
    starts a new group and leads it: it waits for one of `in_flight` slots (waiting there is
    when followers join), seals the group and calls `run` with its items in arrival order, one
    result per item. A lone caller with a free slot waits for nothing (no timer). If `run`
    raises, each caller raises `error(exc, size)`.
    """

    def __init__(
        self,
        run: Callable[[list[_T]], Sequence[_R]],
        *,
        in_flight: int = 1,
        fits: Callable[[list[_T], _T], bool] = lambda _items, _item: True,
        error: Callable[[BaseException, int], BaseException] = lambda exc, _size: exc,
    ) -> None:
        self._run = run
        self._fits = fits
        self._error = error
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, in_flight))
        self._collecting: _Group[_T, _R] | None = None
        #: Groups run and calls made, for tests and benchmarks.
        self.groups = 0
        self.requests = 0

    def submit(self, item: _T) -> _R:
        """`item`'s result from the run of the group it joined (or that group's error)."""
        with self._lock:
            self.requests += 1
            group = self._collecting
            if group is not None and self._fits(group.items, item):
                group.items.append(item)
                index = len(group.items) - 1
            else:
                group = _Group(item)
                self._collecting = group
                index = 0
        if index == 0:
            self._lead(group)
        else:
            group.done.wait()
        if group.error is not None:
            raise self._error(group.error, len(group.items))
        return group.results[index]

    def _lead(self, group: _Group[_T, _R]) -> None:
        with self._slots:  # waiting here is when followers join
            with self._lock:
                if self._collecting is group:
                    self._collecting = None
                self.groups += 1
                items = list(group.items)  # sealed: nobody joins any more
            try:
                group.results = list(self._run(items))
            except BaseException as exc:
                group.error = exc
            finally:
                group.done.set()


def batch_error(exc: BaseException, size: int) -> BaseException:
    """What one caller of a failed batch (a pipeline, a journal commit) gets: its own
    exception object, with the cause of the original (a copy does not keep it).

    A transport failure (the batch may or may not have run, wholly or in part) is a transient
    `TransportError` for every caller: each settles by re-reading, as for a lost answer.
    """
    if size == 1:
        return exc
    if isinstance(exc, TransportError | ConnectionError):
        return TransportError(f"a batch of {size} writes at one site got no answer: {exc}")
    try:
        copied = copy.copy(exc)
    except Exception:  # an exception that cannot be copied is passed as it is
        return exc
    copied.__cause__ = exc.__cause__
    return copied
