"""Issue "Transactions", end to end: the emulator's faults injected at every step of a
three-step change (account, server proxy, SUP flags), through both transports.

Afterwards the server equals exactly its before or its after state (read from the emulator's
store, not through the SDK), the outcome says which, and the journal holds no open entry.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cmproxy import (
    DesiredState,
    Journal,
    Outcome,
    ProxyRequest,
    ProxySettings,
    Session,
    SupFlagsRequest,
    TransactionEvent,
    run_transaction,
)
from cmproxy.emulator.api import Emulator
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.retry import RetryPolicy

from .conftest import ACCOUNT, SERVER, SITE, info_for, oracle

SITE_SYSTEM = "SMS Site System"
SUP_ROLE = "SMS Software Update Point"

PASSWORD = "Tx-P@ss'w0rd;$(whoami)`"


def desired(case: str) -> DesiredState:
    """The three-step change, with an account that does not exist yet (one per case; a short
    name: a sAMAccountName has 20 characters at most)."""
    account = f"{ACCOUNT}-{zlib.crc32(case.encode()):08x}"
    proxy = ProxySettings(
        server="proxy-tx.contoso.com", port=3128, account=account, password=PASSWORD
    )
    return DesiredState(
        proxies=[ProxyRequest(SERVER, proxy)],
        sup_flags=[SupFlagsRequest(SERVER, use_proxy=True, use_proxy_for_adr=True)],
    )


STEPS = {0: "New-CMAccount", 1: "Set-CMSiteSystemServer", 2: "Set-CMSoftwareUpdatePoint"}

Inject = Callable[[EmulatorSettings, str], None]


def _request(field: str, offset: int, **extra: Any) -> Inject:
    def inject(settings: EmulatorSettings, cmdlet: str) -> None:
        del cmdlet
        setattr(settings.faults, field, settings.request_count + offset)
        for k, v in extra.items():
            setattr(settings.faults, k, v)

    return inject


def _cmdlet(kind: str, error_id: str = "ProviderError") -> Inject:
    def inject(settings: EmulatorSettings, cmdlet: str) -> None:
        call = settings.cmdlet_calls.get(cmdlet, 0) + 1
        if kind == "fail":
            settings.faults.fail_cmdlet = cmdlet
            settings.faults.fail_cmdlet_on_call = call
            settings.faults.fail_cmdlet_error_id = error_id
        else:
            settings.faults.lose_answer_cmdlet = cmdlet
            settings.faults.lose_answer_on_call = call

    return inject


FAULTS: dict[str, Inject] = {
    "drop-first-request": _request("drop_connection_on_request", 1),
    "drop-answer": _request("drop_connection_on_request", 3),
    "http500": _request("http_error_on_request", 1, http_error_status=500),
    "http503-answer": _request("http_error_on_request", 3, http_error_status=503),
    "wsman-fault": _request("wsman_fault_on_request", 2, wsman_fault_code=2150858843),
    "cmdlet-fails": _cmdlet("fail"),
    "cmdlet-busy": _cmdlet("fail", "ProviderBusy"),
    "answer-lost-after-write": _cmdlet("lose"),
}


@pytest.fixture(scope="module", params=["psrp", "winrm"])
def emulator(request: pytest.FixtureRequest) -> Iterator[tuple[Emulator, str]]:
    with Emulator(seed="demo", receive_timeout=3.0) as emu:
        yield emu, str(request.param)


@pytest.fixture(autouse=True)
def seeded_server(emulator: tuple[Emulator, str]) -> Iterator[None]:
    """Each case starts from the seed's state of the server (written straight to the store)."""
    emu, _ = emulator
    roles = (SITE_SYSTEM, SUP_ROLE)
    seed = {role: list(emu.state.server_props(SITE, SERVER, role).values()) for role in roles}
    yield
    emu.settings.reset_faults()
    for role, props in seed.items():
        emu.state.set_props(SITE, SERVER, role, props)


@pytest.mark.e2e
@pytest.mark.parametrize("step", sorted(STEPS))
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_at_every_step_leaves_old_or_new_state(
    emulator: tuple[Emulator, str], fault: str, step: int, tmp_path: Path
) -> None:
    emu, transport = emulator
    emu.settings.reset_faults()
    before = oracle(emu)
    injected: list[str] = []

    def hook(event: TransactionEvent) -> None:
        if event.kind == "apply" and not injected:
            index = len(applies)
            applies.append(event.target)
            if index == step:
                FAULTS[fault](emu.settings, STEPS[step])
                injected.append(fault)

    applies: list[str] = []
    journal = Journal(tmp_path / "journal.sqlite3")
    with Session(info_for(emu, transport)) as session:
        result = run_transaction(
            session,
            desired(f"{fault}-{step}"),
            journal=journal,
            policy=RetryPolicy.for_tests(),
            hooks=[hook],
        )
    emu.settings.reset_faults()
    assert injected == [fault]
    out = result.outcome(SERVER)
    now = oracle(emu)
    expected_after = out.after if out.outcome is Outcome.CHANGED else before
    assert now == expected_after, f"{fault} at step {step}: {out}"
    assert out.outcome in (Outcome.CHANGED, Outcome.ROLLED_BACK), out
    if out.outcome is Outcome.CHANGED:
        assert now.proxy.server == "proxy-tx.contoso.com"
        assert now.sup is not None and now.sup.use_proxy and now.sup.use_proxy_for_adr
    assert journal.open_transactions() == []
    dump = journal.dump()
    assert PASSWORD not in dump
    for call in emu.state.call_log():
        assert PASSWORD not in repr(call)
