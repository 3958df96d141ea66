"""Concurrent reads and writes joined into shared pipelines (a `Session` uses them).

Pure threading: no transport here. `ReadCoalescer` joins reads of a few servers,
`WriteCoalescer` joins writes at one site, `write_batches` groups one `apply_many` call's
writes per site. Both group their callers with `cmproxy.grouping.Grouper`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from cmproxy.grouping import Grouper, batch_error
from cmproxy.plan import Change
from cmproxy.reader import SiteRead
from cmproxy.tuning import DEFAULT_TUNING
from cmproxy.writer import WriteResult, batchable

__all__ = ["ReadCoalescer", "WriteCoalescer", "write_batches"]


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
        self._group: Grouper[tuple[str, ...], SiteRead] = Grouper(
            self._read_all, in_flight=in_flight, fits=self._fits
        )

    @property
    def batches(self) -> int:
        """Batches run, for tests and benchmarks."""
        return self._group.groups

    @property
    def requests(self) -> int:
        """Reads asked, for tests and benchmarks."""
        return self._group.requests

    def read(self, names: Sequence[str]) -> SiteRead:
        return self._group.submit(tuple(names))

    def _fits(self, batch: list[tuple[str, ...]], names: tuple[str, ...]) -> bool:
        return len(_names(batch)) + len(names) <= self._limit

    def _read_all(self, batch: list[tuple[str, ...]]) -> list[SiteRead]:
        result = self._read(_names(batch))
        return [result] * len(batch)


def _names(batch: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The servers of a batch of reads, each once, in the order they were asked."""
    return tuple(dict.fromkeys(name for names in batch for name in names))


def _write_key(change: Change) -> tuple[str, str]:
    return change.target.lower(), change.kind.name


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
        self._sites: dict[str, Grouper[Change, WriteResult | BaseException]] = {}

    @property
    def batches(self) -> int:
        """Batches run, for tests and benchmarks."""
        with self._lock:
            return sum(g.groups for g in self._sites.values())

    @property
    def requests(self) -> int:
        """Writes asked, for tests and benchmarks."""
        with self._lock:
            return sum(g.requests for g in self._sites.values())

    def apply(self, change: Change) -> WriteResult:
        site = str(change.site_code).upper()
        with self._lock:
            group = self._sites.get(site)
            if group is None:
                group = self._sites[site] = Grouper(
                    lambda changes: self._run(site, changes),
                    in_flight=self._in_flight,
                    fits=self._fits,
                    error=batch_error,
                )
        outcome = group.submit(change)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _fits(self, batch: list[Change], change: Change) -> bool:
        key = _write_key(change)
        return len(batch) < self._limit and all(_write_key(c) != key for c in batch)

    def _run(self, site: str, changes: list[Change]) -> list[WriteResult | BaseException]:
        if len(changes) == 1:
            return [self._run_one(changes[0])]
        return self._run_many(site, changes)


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
