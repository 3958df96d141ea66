"""A bulk run's new proxy account is created by its write pipelines, not by a step before them.

Every `Set-ProxyBatch` pipeline at the site carries the account (its password a SecureString
parameter); under a named mutex for that account (Lock-CMProxyServer on 'account:<name>', a
real `System.Threading.Mutex`: one creates, the others wait and find it), so the site's write
lock does not idle while a separate account step answers and the batches start after it. If
the account cannot be created, that pipeline writes nothing and says so; each server ends old
or new and its result says which.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cmproxy import (
    Account,
    DesiredState,
    Journal,
    Outcome,
    ProxyRequest,
    ProxySettings,
    Session,
    apply_bulk,
)
from cmproxy.emulator.api import Emulator
from cmproxy.retry import RetryPolicy
from cmproxy.steps import Result, Step
from cmproxy.writer import BATCH_TEMPLATE

from .conftest import oracle
from .targets import RECEIVE_TIMEOUT, TRANSPORTS, account_change, connection_info, proxy_change

NEW = "CONTOSO\\svc-proxy-bulk"
#: Servers whose roles accept an authenticated proxy (not the DPs with Connected Cache, R1).
PS1 = [f"cm-ps1-{n}.contoso.com" for n in ("dp01", "dp02", "dp05", "mp01", "mp02")]
PS2 = [f"cm-ps2-{n}.contoso.com" for n in ("dp01", "dp03", "dp04", "dp05", "dp06")]
PROXY = ProxySettings(server="proxy-new.contoso.com", port=3128, account=NEW)


def _desired() -> DesiredState:
    return DesiredState(
        proxies=[ProxyRequest(name, PROXY) for name in PS1 + PS2],
        accounts=[Account(NEW, password="Bulk-Passw0rd!")],
    )


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(
        allow_basic=True, seed="demo", https=True, receive_timeout=RECEIVE_TIMEOUT
    ) as emulator:
        yield emulator


def _spy(session: Session) -> list[Step]:
    """The steps `session` runs, in order (the public `run_step`, wrapped)."""
    steps: list[Step] = []
    run_step = session.run_step

    def spy(step: Step) -> Result:
        steps.append(step)
        return run_step(step)

    session.run_step = spy  # type: ignore[method-assign]
    return steps


def _bulk(emu: Emulator, transport: str, tmp_path: Path, **options: Any) -> tuple[Any, list[Step]]:
    with (
        Session(connection_info(emu, transport, "basic")) as session,
        Journal(tmp_path / "journal.sqlite3") as journal,
    ):
        steps = _spy(session)
        results = apply_bulk(
            [session],
            _desired(),
            journal=journal,
            policy=RetryPolicy.for_tests(),
            progress=False,
            per_site=2,
            batch_size=2,
            **options,
        )
        assert journal.open_transactions() == [] and journal.holds() == []
    return results, steps


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_write_pipelines_create_the_account_once_per_site(
    emu: Emulator, transport: str, tmp_path: Path
) -> None:
    results, steps = _bulk(emu, transport, tmp_path)
    assert results.ok, results.to_dict()
    assert all(oracle(emu, name, name.split("-")[1].upper()).proxy == PROXY for name in PS1 + PS2)
    names = [step.script.name for step in steps]
    assert "New-ProxyAccount" not in names  # no step of its own
    batches = [dict(step.parameters) for step in steps if step.script.name == BATCH_TEMPLATE]
    assert len(batches) >= 4  # several pipelines per site, each carrying the account
    assert all(b["NewAccountName"] == NEW for b in batches)
    created = emu.state.call_log("New-CMAccount")
    assert sorted(str(c.params.get("SiteCode")) for c in created) == ["PS1", "PS2"]
    assert all("Bulk-Passw0rd!" not in str(c.params) for c in created)  # masked in the log
    for site in ("PS1", "PS2"):
        assert NEW in {a.username for a in emu.state.accounts(site)}
    # Each site's account existed before that site's first server write.
    log = emu.state.call_log()
    for site in ("PS1", "PS2"):
        made = next(
            i
            for i, c in enumerate(log)
            if c.command == "New-CMAccount" and c.params.get("SiteCode") == site
        )
        first_set = next(
            i
            for i, c in enumerate(log)
            if c.command == "Set-CMSiteSystemServer" and c.params.get("SiteCode") == site
        )
        assert made < first_set


def test_an_account_that_already_exists_is_found_not_created(emu: Emulator, tmp_path: Path) -> None:
    emu.state.add_account("PS2", NEW, "Other-Passw0rd!")
    results, _ = _bulk(emu, "psrp", tmp_path)
    assert results.ok, results.to_dict()
    assert [c.params.get("SiteCode") for c in emu.state.call_log("New-CMAccount")] == ["PS1"]


def test_a_pipeline_whose_account_creation_fails_writes_none_of_its_servers(
    emu: Emulator, tmp_path: Path
) -> None:
    """The first New-CMAccount fails (not transient): that pipeline stops before any write;
    another pipeline of the same site then creates the account and writes its own servers.
    Every server ends old or new, and its result says which."""
    faults = emu.settings.faults
    faults.fail_cmdlet = "New-CMAccount"
    faults.fail_cmdlet_on_call = 1
    faults.fail_cmdlet_error_id = "SmsInvalidProperty"
    before = {name: oracle(emu, name, name.split("-")[1].upper()) for name in PS1 + PS2}
    results, _ = _bulk(emu, "psrp", tmp_path)
    kept = [r for r in results if r.outcome.outcome is not Outcome.CHANGED]
    assert kept and not results.ok
    for item in results:
        name = item.outcome.server
        now = oracle(emu, name, name.split("-")[1].upper())
        if item.outcome.outcome is Outcome.CHANGED:
            assert now.proxy == PROXY
        else:  # nothing of it was written: "rolled back" to (= still at) its old state
            assert item.outcome.outcome is Outcome.ROLLED_BACK, item.outcome
            assert now == before[name], name
            assert "(New-CMAccount)" in item.outcome.reason
            assert "SmsInvalidProperty" in item.outcome.reason
    assert [c.outcome == "ok" for c in emu.state.call_log("New-CMAccount")].count(True) == 2
    assert len(results.items) == len(PS1 + PS2)


def test_all_or_nothing_puts_every_server_back_when_an_account_fails(
    emu: Emulator, tmp_path: Path
) -> None:
    faults = emu.settings.faults
    faults.fail_cmdlet = "New-CMAccount"
    faults.fail_cmdlet_on_call = 1
    faults.fail_cmdlet_error_id = "SmsInvalidProperty"
    before = {name: oracle(emu, name, name.split("-")[1].upper()) for name in PS1 + PS2}
    results, _ = _bulk(emu, "psrp", tmp_path, all_or_nothing=True)
    assert not results.ok
    for name, old in before.items():
        assert oracle(emu, name, name.split("-")[1].upper()) == old, name


def test_a_batch_carries_the_new_account_its_own_writes_use(emu: Emulator) -> None:
    """Two bulk runs sharing a session, each creating an account at PS1: each batch carries
    the one its own servers are set to use, and none once its run's context is closed."""

    session = Session(connection_info(emu, "psrp", "basic"))  # never opened: no IO here
    first, second = (
        account_change("CONTOSO\\svc-a", "Pw-a!"),
        account_change("CONTOSO\\svc-b", "Pw-b!"),
    )
    uses_a = [proxy_change("cm-ps1-dp01.contoso.com", account="CONTOSO\\svc-a")]
    uses_b = [proxy_change("cm-ps1-dp02.contoso.com", account="CONTOSO\\svc-b")]
    plain = [proxy_change("cm-ps1-dp05.contoso.com", account=None)]
    with session.creating_accounts([first]):
        with session.creating_accounts([second]):
            assert session._new_account_for("ps1", uses_a) is first
            assert session._new_account_for("PS1", uses_b) is second
            assert session._new_account_for("PS1", plain) is None
            assert session._new_account_for("PS2", uses_a) is None
        assert session._new_account_for("PS1", uses_b) is None
        assert session._new_account_for("PS1", uses_a) is first
    assert session._new_account_for("PS1", uses_a) is None
