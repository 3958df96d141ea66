"""What a killed process may have left running on the server, recorded and then stopped.

A pipeline belongs to its shell (a PSRP runspace pool, a WinRS shell), not to the client's
connection: when the client dies, its batch of writes keeps running until it ends or the shell
is deleted (its idle timeout is two hours by default). Recovery that read, decided and restored
while that batch still landed writes left servers mixed and reported them wrongly.

So, while a transaction runs, `recording` journals each pipeline's shell and command *before*
it is sent; and `make_quiet`, the first thing `recover` does, finds those shells among the
account's shells on the endpoint (WSMan Enumerate) and deletes the ones still there (a Delete
ends the shell's commands, and the endpoint answers once they are stopped), then lists again
to confirm they are gone. Only then does recovery read and decide.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from cmproxy._exceptions import CMProxyError
from cmproxy.journal import Journal
from cmproxy.ports import HoldsShells, Identified, RecordsPipelines, StopsShells
from cmproxy.steps import PipelineRef

__all__ = ["make_quiet", "recording"]

log = logging.getLogger("cmproxy.transaction")


def _account(client: object) -> str:
    return str(client.info.username or "").lower() if isinstance(client, Identified) else ""


@contextlib.contextmanager
def recording(client: Any, journal: Journal, tx_ids: Callable[[], Sequence[str]]) -> Iterator[None]:
    """While the block runs, journal each pipeline `client` sends (its shell and command)
    against the transactions `tx_ids()` names at that moment, before it is sent.

    A client without `watch_pipelines` (a test double) records nothing. Pipelines other
    threads send meanwhile on the same client are recorded too: recovery then stops a little
    more than it strictly must, never less. The blocks open at once on one client and journal
    share one watcher (`_Recorder`): each pipeline is one commit with all their transactions.
    """
    if not isinstance(client, RecordsPipelines):
        yield
        return
    key = (id(client), id(journal))
    with _RECORDERS_LOCK:
        recorder = _RECORDERS.get(key)
        if recorder is None:
            recorder = _RECORDERS[key] = _Recorder(client, journal)
        recorder.sources.append(tx_ids)
    try:
        yield
    finally:
        with _RECORDERS_LOCK:
            recorder.sources.remove(tx_ids)
            if not recorder.sources:
                del _RECORDERS[key]
                recorder.stop()


class _Recorder:
    """The one watcher of a client for a journal while `recording` blocks are open on it.

    A bulk run has a block per batch in flight on one session, and the session tells every
    watcher about every pipeline: a watcher per block made each pipeline wait, before it was
    sent, for one fsynced commit per batch in flight (issue 18: twelve at N = 1,000)."""

    def __init__(self, client: RecordsPipelines, journal: Journal) -> None:
        self.journal = journal
        self.account = _account(client)
        #: The open blocks' `tx_ids`, in the order they opened (changed under _RECORDERS_LOCK).
        self.sources: list[Callable[[], Sequence[str]]] = []
        self._watching = contextlib.ExitStack()
        self._watching.enter_context(client.watch_pipelines(self.record))

    def record(self, ref: PipelineRef) -> None:
        with _RECORDERS_LOCK:
            sources = list(self.sources)
        ids = list(dict.fromkeys(tx_id for source in sources for tx_id in source()))
        if ids:
            self.journal.record_pipeline(
                ids, ref.resource_uri, ref.shell_id, ref.command_id, account=self.account
            )

    def stop(self) -> None:
        self._watching.close()


#: The recorder of each (client, journal) pair with a `recording` block open, by their ids
#: (both stay alive while it is here: it holds them).
_RECORDERS: dict[tuple[int, int], _Recorder] = {}
_RECORDERS_LOCK = threading.Lock()


@attrs.frozen
class Pace:
    """The clock `make_quiet` bounds its attempts by, and how it waits between them."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def make_quiet(
    client: Any,
    journal: Journal,
    tx_ids: Sequence[str],
    *,
    timeout: float = 60.0,
    pace: Pace | None = None,
) -> str | None:
    """Stop what the interrupted transactions `tx_ids` may still be running on the endpoint.

    Returns None once none of their recorded shells is left (the site is quiet as far as they
    are concerned), or why it could not make sure of that (then nothing may be decided).
    """
    clock, sleep = (pace or Pace()).clock, (pace or Pace()).sleep
    recorded = journal.pipeline_shells(tx_ids)
    own = {s.upper() for s in client.own_shells()} if isinstance(client, HoldsShells) else set()
    shells = {sid: (uri, acct) for sid, (uri, acct) in recorded.items() if sid not in own}
    if not shells:
        return None
    if not isinstance(client, StopsShells):
        return f"this client cannot list or stop shells ({_ids(shells)} may still run)"
    lister, deleter = client.list_shells, client.delete_shell
    me = _account(client)
    strangers = sorted(sid for sid, (_uri, acct) in shells.items() if acct and acct != me)
    if strangers:
        # Another account's shells are neither listed nor deletable for us: we cannot tell.
        return (
            f"the interrupted run used another account's shells ({', '.join(strangers)}); "
            "run recover as that account"
        )
    end = clock() + timeout
    errors: list[str] = []
    tried = False
    while True:
        try:
            listed = lister()
        except CMProxyError as error:
            return f"could not list this account's shells: {error}"
        if listed is None:
            return f"this client cannot list shells ({_ids(shells)} may still run)"
        left = sorted({s.shell_id.upper() for s in listed} & set(shells))
        if not left:
            return None
        if tried and clock() >= end:
            detail = f" ({'; '.join(errors[-3:])})" if errors else ""
            return (
                f"the shells {', '.join(left)} of the interrupted run could not be stopped{detail}"
            )
        tried = True
        for sid in left:
            try:
                deleter(shells[sid][0], sid)
                log.info("stopped the shell %s an interrupted run left running", sid)
            except CMProxyError as error:
                errors.append(f"{sid}: {error}")
                log.warning("could not stop the shell %s: %s", sid, error)
        sleep(0.2)


def _ids(shells: dict[str, Any]) -> str:
    return ", ".join(sorted(shells))
