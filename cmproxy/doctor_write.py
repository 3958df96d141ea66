"""`cmproxy doctor --write-test SERVER`: one reversible write on a live site.

The server's own proxy (and SUP options) are written back as they are, under a journal claim,
each read back in its own pipeline, re-read until visible, and the end state compared with the
start, raw embedded properties included. What the write-back could change is refused rather
than guessed (docs/live-testing.md says which, and why the proxy account needs no password).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cmproxy._exceptions import CMProxyError
from cmproxy.doctor_facts import FIELDS, SITE_SYSTEM, SUP, Facts, Status, read_facts
from cmproxy.journal import Journal, JournalEntry
from cmproxy.model import SiteState, SiteSystemServer
from cmproxy.plan import (
    Change,
    FieldChange,
)
from cmproxy.ports import read_back_matches
from cmproxy.settings import SUP_OPTIONS, registered
from cmproxy.transaction import RESTORE_OPTIONS, ServerSnapshot, restore_desired, run_transaction

if TYPE_CHECKING:
    from cmproxy.session import Session

__all__ = ["VISIBLE_POLL", "VISIBLE_WITHIN", "WriteTest", "write_test"]


@attrs.frozen
class WriteTest:
    """The reversible write on one server and what it showed."""

    server: str
    status: Status
    detail: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    writes: tuple[str, ...] = ()
    transaction_id: str | None = None
    #: Seconds from the write's answer to a separate read that showed the written values.
    read_after_write_seconds: float | None = None
    reads_until_visible: int = 0
    #: The end state equals the start (model snapshot and raw embedded properties).
    unchanged: bool | None = None
    #: What the delay means: the values written equal the old ones, so a separate read shows
    #: them at once; it bounds how soon such a read answers, not how long a real change takes.
    note: str = (
        "the values written equal the old ones: the read-after-write delay bounds how soon a "
        "separate read answers, not how long a real change takes to show"
    )

    def detail_lines(self) -> list[str]:
        """The lines under the status, the same in the text report and the CLI's."""
        lines = [self.detail, *(f"wrote: {x}" for x in self.writes)]
        if self.read_after_write_seconds is not None:
            lines.append(
                f"read after write: {self.read_after_write_seconds:.3f}s "
                f"({self.reads_until_visible} read(s)); {self.note}"
            )
        if self.unchanged is not None:
            lines.append(f"site as it was: {'yes' if self.unchanged else 'NO'}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "status": self.status,
            "detail": self.detail,
            "before": self.before,
            "after": self.after,
            "writes": list(self.writes),
            "transaction_id": self.transaction_id,
            "read_after_write_seconds": self.read_after_write_seconds,
            "reads_until_visible": self.reads_until_visible,
            "site_as_it_was": self.unchanged,
            "note": self.note,
        }


# -- the write test ------------------------------------------------------------------------------

#: Raw embedded properties compared before and after the write test (what a write touches).
_RAW = {
    SITE_SYSTEM: (
        "UseProxy",
        "ProxyName",
        "ProxyServerPort",
        "ProxyUserName",
        "AnonymousProxyAccess",
    ),
    SUP: ("UseProxy", "UseProxyForADR"),
}
#: How long (and how often) a separate read is retried until it shows the written values.
VISIBLE_WITHIN = 30.0
VISIBLE_POLL = 0.5


def _raw(facts: Facts) -> dict[str, dict[str, list[Any]]]:
    """Per object, per watched property: [Value, Value1, Value2] (absent properties left out)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for obj, names in _RAW.items():
        by_name = {str(p.get("PropertyName")): p for p in facts.props.get(obj, ())}
        out[obj] = {n: [by_name[n].get(f) for f in FIELDS] for n in names if n in by_name}
    return out


def _refusal(
    server: SiteSystemServer, raw: Mapping[str, Mapping[str, list[Any]]], state: SiteState
) -> str | None:
    """Why writing this server's values back could change something, or None.

    The write-back sends every proxy field (name, port and the account, looked up by name
    with Get-CMAccount: no password is needed, the account is already registered), because
    a Set that enables the proxy without -ProxyServerPort / -ProxyAccessAccount resets them
    to 80 / the System account (configmgr-cmdlets.md §3.5, §9: [INFERRED]/[UNCONFIRMED]).
    What it cannot send back is refused rather than guessed.
    """
    site = raw.get(SITE_SYSTEM, {})
    missing = [n for n in _RAW[SITE_SYSTEM] if n not in site]
    if missing:
        return (
            f"the SMS Site System object lacks {missing}: its shape is not the one cmproxy writes"
        )
    name, port = str(site["ProxyName"][2] or ""), site["ProxyServerPort"][0]
    account, anonymous = str(site["ProxyUserName"][2] or ""), site["AnonymousProxyAccess"][0]
    proxy = server.proxy
    if not proxy.enabled:
        stale = name or account or str(port) not in ("80", "0", "") or str(anonymous) != "1"
        if stale:
            return (
                "the proxy is off but its fields still hold values (ProxyName "
                f"{name!r}, port {port}, ProxyUserName {account!r}, AnonymousProxyAccess "
                f"{anonymous}); whether -EnableProxy $false clears them is [UNCONFIRMED] "
                "(configmgr-cmdlets.md §9), so writing it back could change them"
            )
    else:
        if str(anonymous) == "1" and account:
            return (
                f"ProxyUserName holds {account!r} while AnonymousProxyAccess is 1; writing "
                "the proxy back with the System account could clear that name"
            )
        if proxy.account and not state.has_account(proxy.account, server.site_code):
            return (
                f"the proxy account {proxy.account} is not registered at site "
                f"{server.site_code} (Get-CMAccount finds nothing), so it cannot be written back"
            )
        if str(port) in ("0", "", "None"):
            return "ProxyServerPort is empty; a write would set the default port 80"
    if SUP_OPTIONS.carried(server):
        flags = SUP_OPTIONS.read(server)
        if len(raw.get(SUP, {})) < len(_RAW[SUP]):
            return (
                "the SUP object lacks UseProxy/UseProxyForADR: its shape is not the one "
                "cmproxy writes"
            )
        if flags.any and not proxy.enabled:
            return (
                "the SUP options are on but the server has no proxy (R11); writing them back "
                "would make WSUS fail to configure its proxy (configmgr-cmdlets.md §7, issue #33)"
            )
    return None


def _rewrites(server: SiteSystemServer) -> list[Change]:
    """The changes that write the server's own values back, one per setting it carries (the
    planner drops such no-op changes, so they are built here, exactly as the planner would
    build a real one)."""
    changes = []
    for setting in registered():
        build = setting.invocation
        if build is None or not setting.carried(server):
            continue
        value = setting.read(server)
        text = value.describe() if hasattr(value, "describe") else repr(value)
        changes.append(
            Change(
                kind=setting.kind,
                site_code=server.site_code,
                target=server.name,
                before=value,
                after=value,
                fields=(FieldChange(setting.name, text, text, "written back"),),
                invocation=build(server, value),
                reasons=("cmproxy doctor --write-test: the server's own values written back",),
            )
        )
    return changes


def write_test(
    session: Session,
    name: str,
    journal: Journal,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WriteTest:
    """Write one server's proxy (and SUP options) back as they are, and prove nothing changed.

    Claims the server in the journal (a killed run is finished by `cmproxy recover`: its
    after equals its before), re-reads under the claim (someone else's change → nothing
    written), writes through `Session.apply` (each write read back in its own pipeline), then
    re-reads separately until the values are visible (bounded: VISIBLE_WITHIN) and compares
    the end with the start, the raw embedded properties included. Should the end differ, the
    start is put back with `run_transaction` (a normal, journaled restore) and the test fails.
    """
    state = session.read_state([name])
    server = state.server(name)
    if server is None:
        return WriteTest(name, "fail", f"{name} is not a site system server (nothing written)")
    name = server.name
    sup_name = name if SUP_OPTIONS.carried(server) else None
    facts = read_facts(session, server.site_code, name, sup_name)
    raw_before = _raw(facts)
    before = ServerSnapshot.of(state, name)
    assert before is not None
    refusal = _refusal(server, raw_before, state)
    if refusal is not None:
        return WriteTest(
            name, "fail", f"refused, nothing written: {refusal}", before.to_dict(), None
        )
    changes = _rewrites(server)
    tx_id, moved = _claim(session, journal, server, before, changes)
    if moved is not None:
        return moved
    written, problem, answered = _write_back(session, journal, tx_id, changes, clock)
    reads, delay = 0, None
    if not problem:
        reads, delay, problem = _until_visible(
            session, name, before, answered, clock=clock, sleep=sleep
        )
    raw_after = _raw(read_facts(session, server.site_code, name, sup_name))
    final_state = session.read_state([name])
    after = ServerSnapshot.of(final_state, name)
    same = before.same_as(after) and raw_after == raw_before
    if not same and not problem:
        problem = "the end state differs from the start: " + _diff(raw_before, raw_after)
    if problem and not before.same_as(after):
        problem += _put_back(session, journal, name, before, final_state)
        after = ServerSnapshot.of(session.read_state([name]), name)
        raw_after = _raw(read_facts(session, server.site_code, name, sup_name))
        same = before.same_as(after) and raw_after == raw_before
    # The journal says what a person must know: done, nothing left changed, or look at it.
    status = "committed" if not problem else "rolled_back" if same else "failed"
    journal.finish(tx_id, status, problem)
    ok = (
        f"{len(written)} write(s) made and read back; the end state equals the start, raw "
        "embedded properties included"
    )
    return WriteTest(
        name,
        "fail" if problem else "ok",
        problem or ok,
        before.to_dict(),
        after.to_dict() if after else None,
        tuple(written),
        tx_id,
        delay,
        reads,
        same if problem else True,
    )


def _claim(
    session: Session,
    journal: Journal,
    server: SiteSystemServer,
    before: ServerSnapshot,
    changes: Sequence[Change],
) -> tuple[str, WriteTest | None]:
    """Claim the server in the journal (its after is its before), then re-read it under the
    claim: the transaction id, and the failed test if someone changed it meanwhile."""
    name = server.name
    entry = JournalEntry(name.lower(), server.site_code, before.to_dict(), before.to_dict())
    tx_id = journal.begin(
        session.endpoint, [entry], [(c.target, c.kind.name, c.to_dict()) for c in changes]
    )
    fresh = ServerSnapshot.of(session.read_state([name]), name)
    if before.same_as(fresh):
        return tx_id, None
    journal.finish(tx_id, "rolled_back", "nothing written: changed meanwhile")
    return tx_id, WriteTest(
        name,
        "fail",
        f"nothing written: the server changed meanwhile (now "
        f"{fresh.describe() if fresh else 'gone'})",
        before.to_dict(),
        fresh.to_dict() if fresh else None,
        transaction_id=tx_id,
    )


def _write_back(
    session: Session,
    journal: Journal,
    tx_id: str,
    changes: Sequence[Change],
    clock: Callable[[], float],
) -> tuple[list[str], str, float]:
    """Make each write (journaled), each read back in its own pipeline; stop at the first
    that fails. Returns what was written, the problem ("" if none), when the last answered."""
    written: list[str] = []
    answered = clock()
    for seq, change in enumerate(changes):
        journal.mark_change(tx_id, seq, "applying")
        try:
            result = session.apply(change)
        except CMProxyError as error:
            journal.mark_change(tx_id, seq, "failed")
            return written, f"{change.invocation.render()} failed: {error}", answered
        answered = clock()
        written.append(change.invocation.render())
        if not read_back_matches(result):
            journal.mark_change(tx_id, seq, "failed")
            return written, f"the read-back after {change.invocation.render()} differs", answered
        journal.mark_change(tx_id, seq, "applied")
    return written, "", answered


def _until_visible(  # noqa: PLR0913 - the clock and the sleep are the test's seams
    session: Session,
    name: str,
    before: ServerSnapshot,
    answered: float,
    *,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> tuple[int, float | None, str]:
    """Re-read separately until the start values show (bounded: VISIBLE_WITHIN). Returns the
    reads made, the delay after the last answer, and the problem ("" if none)."""
    reads = 0
    while True:
        reads += 1
        now = ServerSnapshot.of(session.read_state([name]), name)
        if before.same_as(now):
            return reads, clock() - answered, ""
        if clock() - answered > VISIBLE_WITHIN:
            return (
                reads,
                None,
                f"a separate read did not show the written values within {VISIBLE_WITHIN:g}s",
            )
        sleep(VISIBLE_POLL)


def _put_back(
    session: Session, journal: Journal, name: str, before: ServerSnapshot, base: SiteState
) -> str:
    """Restore the start with a normal, journaled restore transaction; what to add to the
    problem."""
    try:
        run_transaction(
            session,
            restore_desired({name.lower(): before}),
            journal=journal,
            base=base,
            options=RESTORE_OPTIONS,
        )
    except CMProxyError as error:
        return f"; restoring the start failed too: {error}. Check the server."
    return "; the start was put back with a restore transaction"


def _diff(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for obj in sorted(set(a) | set(b)):
        for prop in sorted(set(a.get(obj, {})) | set(b.get(obj, {}))):
            x, y = a.get(obj, {}).get(prop), b.get(obj, {}).get(prop)
            if x != y:
                parts.append(f"{obj}.{prop} {x} → {y}")
    return "; ".join(parts) or "(model snapshot only)"
