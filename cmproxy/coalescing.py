"""Concurrent reads and writes joined into shared pipelines (a `Session` uses them).

Pure threading: no transport here. `ReadCoalescer` joins reads of a few servers,
`WriteCoalescer` joins writes at one site, `write_batches` groups one `apply_many` call's
writes per site.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable, Sequence

from cmproxy._exceptions import ConnectionError, TransportError
from cmproxy.plan import Change
from cmproxy.reader import SiteRead
from cmproxy.tuning import DEFAULT_TUNING
from cmproxy.writer import WriteResult, batchable

__all__ = ["ReadCoalescer", "WriteCoalescer", "batch_error", "write_batches"]


class _ReadBatch:
    def __init__(self, names: Iterable[str]) -> None:
        self.names: dict[str, None] = dict.fromkeys(names)
        self.done = threading.Event()
        self.result: SiteRead | None = None
        self.error: BaseException | None = None


class ReadCoalescer:
    """Joins concurrent reads of a few servers into one pipeline, without reading stale data.

    A caller joins the batch that is still *collecting* (it has not started), so every batch
    starts after each of its callers asked: each caller gets a read at least as fresh as its own
    would have been. At most `in_flight` batches run at once; while they run, new callers
    collect into the next one. Each caller gets the whole batch's read (a superset of what it
    asked for) or the batch's error.
    """

    def __init__(
        self,
        read: Callable[[tuple[str, ...]], SiteRead],
        *,
        limit: int = DEFAULT_TUNING.read_batch_limit,
        in_flight: int = DEFAULT_TUNING.reads_in_flight,
    ) -> None:
        self._read = read
        self._limit = max(1, limit)
        self._lock = threading.Lock()
        self._slots = threading.Semaphore(max(1, in_flight))
        self._collecting: _ReadBatch | None = None
        #: Batches run and servers read, for tests and benchmarks.
        self.batches = 0
        self.requests = 0

    def read(self, names: Sequence[str]) -> SiteRead:
        with self._lock:
            self.requests += 1
            batch = self._collecting
            if batch is not None and len(batch.names) + len(names) <= self._limit:
                batch.names.update(dict.fromkeys(names))
                leader = False
            else:
                batch = _ReadBatch(names)
                self._collecting = batch
                leader = True
        if leader:
            with self._slots:  # waiting here is when followers join
                with self._lock:
                    if self._collecting is batch:
                        self._collecting = None
                    self.batches += 1
                    wanted = tuple(batch.names)
                try:
                    batch.result = self._read(wanted)
                except BaseException as exc:
                    batch.error = exc
                finally:
                    batch.done.set()
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        assert batch.result is not None
        return batch.result


class _WriteBatch:
    def __init__(self, change: Change) -> None:
        self.changes: list[Change] = [change]
        self.keys: set[tuple[str, str]] = {_write_key(change)}
        self.done = threading.Event()
        self.results: list[WriteResult | BaseException] = []
        self.error: BaseException | None = None


def _write_key(change: Change) -> tuple[str, str]:
    return change.target.lower(), change.kind.name


def batch_error(exc: BaseException, size: int) -> BaseException:
    """What one caller of a failed batch gets: its own exception object.

    A transport failure (the batch may or may not have run, wholly or in part) is a transient
    `TransportError` for every caller: each settles by re-reading, as for a lost answer.
    """
    if size == 1:
        return exc
    if isinstance(exc, TransportError | ConnectionError):
        return TransportError(f"a batch of {size} writes at one site got no answer: {exc}")
    try:
        return copy.copy(exc)
    except Exception:  # an exception that cannot be copied is passed as it is
        return exc


class WriteCoalescer:
    """Joins concurrent writes at one site into one pipeline (`Set-ProxyBatch.ps1`).

    A caller joins only a batch that is still *collecting* (it has not started), never one
    that holds a write to the same server and kind; each write runs once, in its own
    try/catch, and is read back in the same pipeline after the batch's writes. Each caller gets
    its own `WriteResult` or its own exception. A batch of one runs `run_one` (a `Session`
    sends it through `Set-ProxyBatch.ps1` too, for its compare-and-set).
    At most `in_flight` batches per site run at once; while they run, new callers collect.
    """

    def __init__(
        self,
        run_one: Callable[[Change], WriteResult],
        run_many: Callable[[str, list[Change]], list[WriteResult | BaseException]],
        *,
        limit: int = DEFAULT_TUNING.write_batch_limit,
        in_flight: int = DEFAULT_TUNING.writes_in_flight,
    ) -> None:
        self._run_one = run_one
        self._run_many = run_many
        self._limit = max(1, limit)
        self._in_flight = max(1, in_flight)
        self._lock = threading.Lock()
        self._collecting: dict[str, _WriteBatch] = {}
        self._slots: dict[str, threading.Semaphore] = {}
        #: Batches run and writes asked, for tests and benchmarks.
        self.batches = 0
        self.requests = 0

    def apply(self, change: Change) -> WriteResult:
        site = str(change.site_code).upper()
        key = _write_key(change)
        with self._lock:
            self.requests += 1
            batch = self._collecting.get(site)
            if batch is not None and len(batch.changes) < self._limit and key not in batch.keys:
                batch.changes.append(change)
                batch.keys.add(key)
                index = len(batch.changes) - 1
                leader = False
            else:
                batch = _WriteBatch(change)
                self._collecting[site] = batch
                index = 0
                leader = True
            slots = self._slots.setdefault(site, threading.Semaphore(self._in_flight))
        if leader:
            self._lead(site, batch, slots)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch_error(batch.error, len(batch.changes))
        outcome = batch.results[index]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _lead(self, site: str, batch: _WriteBatch, slots: threading.Semaphore) -> None:
        with slots:  # waiting here is when followers join
            with self._lock:
                if self._collecting.get(site) is batch:
                    del self._collecting[site]
                self.batches += 1
                changes = list(batch.changes)  # sealed: nobody joins any more
            try:
                if len(changes) == 1:
                    batch.results = [self._run_one(changes[0])]
                else:
                    batch.results = self._run_many(site, changes)
            except BaseException as exc:
                batch.error = exc
            finally:
                batch.done.set()


def write_batches(
    changes: Sequence[Change], groups: Sequence[int] | None, limit: int
) -> list[tuple[str, list[int]]]:
    """One `apply_many` call's changes as (site, indexes) batches: server proxy and SUP option
    writes per site, up to `limit` each (a group, one transaction's writes, is never split);
    any other change alone (its own template)."""
    per_site: dict[str, list[int]] = {}
    batches: list[tuple[str, list[int]]] = []
    for i, change in enumerate(changes):
        site = str(change.site_code).upper()
        if batchable(change):
            per_site.setdefault(site, []).append(i)
        else:
            batches.append((site, [i]))  # its own template, in parallel with the rest
    for site, idx in per_site.items():
        current: list[int] = []
        for i in idx:
            same_group = groups is not None and bool(current) and groups[current[-1]] == groups[i]
            if len(current) >= limit and not same_group:
                batches.append((site, current))
                current = []
            current.append(i)
        if current:
            batches.append((site, current))
    return batches
