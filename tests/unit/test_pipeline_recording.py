"""`recording` journals each pipeline once, however many transactions' blocks are open on
the client (issue 18).

A bulk run keeps one `recording` block open per batch of transactions on the same session, and
the session tells every watcher about every pipeline (any of them may carry any batch's work
as far as recovery knows). One watcher per block made each pipeline wait, before it was sent,
for as many fsynced journal commits as there were batches in flight (twelve at N = 1,000).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmproxy.journal import Journal, JournalEntry
from cmproxy.quiet import recording
from cmproxy.steps import PipelineRef, PipelineWatcher

PWSH = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"


class _Client:
    """What `recording` needs of a session: `watch_pipelines`, and sending tells every watcher
    first (as `Session` and its transports do)."""

    def __init__(self) -> None:
        self.watchers: list[PipelineWatcher] = []

    @contextlib.contextmanager
    def watch_pipelines(self, watcher: PipelineWatcher) -> Iterator[None]:
        self.watchers.append(watcher)
        try:
            yield
        finally:
            self.watchers.remove(watcher)

    def send(self, command: str) -> PipelineRef:
        ref = PipelineRef(PWSH, "SHELL-1", command)
        for watcher in list(self.watchers):
            watcher(ref)
        return ref


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def _open(journal: Journal, server: str) -> str:
    return journal.begin("ep", [JournalEntry(server, "PS1", {}, {})], [])


class _Counting:
    """Counts `Journal.record_pipeline` calls (each one fsynced commit)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[str]] = []
        original = Journal.record_pipeline
        lock = threading.Lock()

        def counted(journal: Journal, tx_ids: list[str], *args: str, **kwargs: str) -> None:
            with lock:
                self.calls.append(list(tx_ids))
            original(journal, tx_ids, *args, **kwargs)

        monkeypatch.setattr(Journal, "record_pipeline", counted)


def test_open_blocks_on_one_client_journal_each_pipeline_in_one_commit(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _Counting(monkeypatch)
    client = _Client()
    ids = [_open(journal, f"s{i}.contoso.com") for i in range(3)]
    with contextlib.ExitStack() as blocks:
        for tx_id in ids:
            blocks.enter_context(recording(client, journal, functools.partial(list, [tx_id])))
        assert len(client.watchers) == 1
        client.send("C1")
    assert counting.calls == [ids]  # one commit, every open block's transaction in it
    assert journal.pipelines(ids) == [(PWSH, "SHELL-1", "C1")]
    for tx_id in ids:
        assert journal.pipelines([tx_id]) == [(PWSH, "SHELL-1", "C1")]
    assert client.watchers == []  # the last block out removes the one watcher


def test_a_block_that_ended_no_longer_adds_its_transactions(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = _Counting(monkeypatch)
    client = _Client()
    first, second = _open(journal, "a.contoso.com"), _open(journal, "b.contoso.com")
    with recording(client, journal, lambda: [first]):
        with recording(client, journal, lambda: [second]):
            client.send("BOTH")
        client.send("FIRST-ONLY")
    client.send("NONE")  # no block open: nothing journalled
    assert counting.calls == [[first, second], [first]]
    assert journal.pipelines([first]) == [
        (PWSH, "SHELL-1", "BOTH"),
        (PWSH, "SHELL-1", "FIRST-ONLY"),
    ]
    assert journal.pipelines([second]) == [(PWSH, "SHELL-1", "BOTH")]


def test_blocks_on_two_journals_each_record_in_their_own(tmp_path: Path) -> None:
    client = _Client()
    one, two = Journal(tmp_path / "one.sqlite3"), Journal(tmp_path / "two.sqlite3")
    a, b = _open(one, "a.contoso.com"), _open(two, "b.contoso.com")
    with recording(client, one, lambda: [a]), recording(client, two, lambda: [b]):
        client.send("C")
    assert one.pipelines([a]) == [(PWSH, "SHELL-1", "C")]
    assert two.pipelines([b]) == [(PWSH, "SHELL-1", "C")]


def test_a_journal_that_cannot_record_keeps_the_pipeline_from_being_sent(
    journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = _Client()
    tx_id = _open(journal, "a.contoso.com")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Journal, "record_pipeline", broken)
    with recording(client, journal, lambda: [tx_id]), pytest.raises(OSError, match="disk full"):
        client.send("C")
