"""`recover` makes the site quiet before it decides (issue 15), over the in-memory site.

The journal names the shells that carried an interrupted transaction's pipelines; `recover`
deletes those still listed (never its own) and only then reads and decides; if it cannot make
sure nothing of theirs still runs, it decides nothing and leaves the journal open. An
all-or-nothing unit is recovered as one. End to end (SIGKILL, the emulator's shells): tests/e2e/
test_recovery_orphans.py.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from cmproxy import DesiredState, ProxyRequest, ProxySettings, SiteState
from cmproxy.journal import Journal, JournalEntry
from cmproxy.retry import RetryPolicy
from cmproxy.testing import InMemorySite
from cmproxy.transaction import ServerSnapshot, recover, run_transaction
from cmproxy.transports.base import RemoteShell

SCP = "cm-scp01.contoso.com"
NEW = ProxySettings(server="proxy-new.contoso.com", port=3128)
PWSH = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


class ShellSite(InMemorySite):
    """The in-memory site with an endpoint's shell table: listed, deleted, one of them ours.

    Deleting a shell "stops" its pipeline: the writes it still had to make never land."""

    def __init__(self, state: SiteState, shells: list[str], own: frozenset[str] = frozenset()):
        super().__init__(state)
        self.shells = dict.fromkeys(shells, PWSH)
        self.own = own
        self.deleted: list[str] = []
        self.refuse = False

    def list_shells(self) -> list[RemoteShell]:
        return [RemoteShell(s, uri) for s, uri in self.shells.items()]

    def delete_shell(self, resource_uri: str, shell_id: str) -> bool:
        if self.refuse:
            from cmproxy import TransportError

            raise TransportError("the shell is stuck")
        self.deleted.append(shell_id)
        return self.shells.pop(shell_id, None) is not None

    def own_shells(self) -> frozenset[str]:
        return self.own


def _interrupted(site: InMemorySite, journal: Journal, shell: str, account: str = "") -> str:
    """A transaction whose proxy write landed, then its process died; its pipeline ran in
    `shell`."""
    desired = DesiredState(proxies=[ProxyRequest(SCP, NEW)])
    planned = run_transaction(site, desired, journal=journal, dry_run=True).plan
    before = ServerSnapshot.of(site.state, SCP)
    assert before is not None
    after = attrs.evolve(before, proxy=NEW)
    tx_id = journal.begin(
        site.endpoint,
        [JournalEntry(SCP, "PS1", before.to_dict(), after.to_dict())],
        [(c.target, c.kind.name, c.to_dict()) for c in planned],
    )
    journal.record_pipeline([tx_id], PWSH, shell, "C0MMAND", account=account)
    site.apply(planned.changes[0])
    return tx_id


def test_the_interrupted_runs_shell_is_deleted_before_anything_is_decided(
    state: SiteState, journal: Journal
) -> None:
    site = ShellSite(state, ["ORPHAN", "OTHER-LIVE", "MINE"], own=frozenset({"MINE"}))
    _interrupted(site, journal, "ORPHAN")
    journal.record_pipeline([journal.open_transactions()[0].id], PWSH, "MINE", "X")
    (done,) = recover(site, journal, policy=RetryPolicy.for_tests())
    assert site.deleted == ["ORPHAN"]  # not another process's shell, not our own
    assert done.status == "committed"  # its one write had landed: rolled forward
    shown = ServerSnapshot.of(site.state, SCP)
    assert shown is not None and shown.proxy == NEW
    assert journal.open_transactions() == []


def test_a_client_that_cannot_list_shells_decides_nothing(
    state: SiteState, journal: Journal
) -> None:
    site = InMemorySite(state)
    tx_id = _interrupted(site, journal, "ORPHAN")
    shown = ServerSnapshot.of(site.state, SCP)
    (done,) = recover(site, journal, policy=RetryPolicy.for_tests())
    assert (done.transaction_id, done.status) == (tx_id, "not quiet")
    assert "cannot list" in done.detail
    assert ServerSnapshot.of(site.state, SCP) == shown  # nothing restored
    assert [t.id for t in journal.open_transactions()] == [tx_id]


def test_a_shell_that_cannot_be_stopped_leaves_the_journal_open(
    state: SiteState, journal: Journal
) -> None:
    site = ShellSite(state, ["ORPHAN"])
    site.refuse = True
    tx_id = _interrupted(site, journal, "ORPHAN")
    (done,) = recover(site, journal, policy=RetryPolicy.for_tests(), quiet_timeout=0.0)
    assert done.status == "not quiet"
    assert "ORPHAN" in done.detail and "could not be stopped" in done.detail
    assert [t.id for t in journal.open_transactions()] == [tx_id]
    site.refuse = False
    (again,) = recover(site, journal, policy=RetryPolicy.for_tests())
    assert again.status == "committed"
    assert site.deleted == ["ORPHAN"]


def test_another_accounts_shells_cannot_be_vouched_for(state: SiteState, journal: Journal) -> None:
    site = ShellSite(state, [])
    _interrupted(site, journal, "THEIRS", account="contoso\\someone-else")
    (done,) = recover(site, journal, policy=RetryPolicy.for_tests())
    assert done.status == "not quiet"
    assert "another account" in done.detail


def test_an_all_or_nothing_unit_is_put_back_whole(state: SiteState, journal: Journal) -> None:
    site = ShellSite(state, [])
    servers = [s.name for s in state.servers if s.site_code == "PS1"][:2]
    befores = {n: ServerSnapshot.of(state, n) for n in servers}
    unit = journal.begin_unit(site.endpoint)
    ids = []
    for name in servers:
        desired = DesiredState(proxies=[ProxyRequest(name, NEW)])
        planned = run_transaction(site, desired, journal=journal, dry_run=True).plan
        before = befores[name]
        assert before is not None
        after = attrs.evolve(before, proxy=NEW)
        entry = JournalEntry(name, "PS1", before.to_dict(), after.to_dict())
        (tx_id,) = journal.begin_many(
            site.endpoint,
            [([entry], [(c.target, c.kind.name, c.to_dict()) for c in planned])],
            unit=unit,
        )
        assert isinstance(tx_id, str)
        ids.append(tx_id)
        site.apply(planned.changes[0])
    journal.finish(ids[0], "committed")  # the first server's transaction had finished
    outcomes = recover(site, journal, policy=RetryPolicy.for_tests())
    assert sorted(o.transaction_id for o in outcomes) == sorted(ids)
    assert {o.status for o in outcomes} == {"rolled_back"}
    assert {n: ServerSnapshot.of(site.state, n) for n in servers} == befores
    assert journal.open_units() == [] and journal.open_transactions() == []


def test_a_finished_transaction_keeps_no_pipeline_records(
    state: SiteState, journal: Journal
) -> None:
    site = ShellSite(state, [])
    tx_id = _interrupted(site, journal, "ORPHAN")
    assert journal.pipelines([tx_id]) == [(PWSH, "ORPHAN", "C0MMAND")]
    journal.finish(tx_id, "committed")
    assert journal.pipelines([tx_id]) == []
