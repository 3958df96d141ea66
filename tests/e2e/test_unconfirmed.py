"""Where the product's behaviour is [UNCONFIRMED], cmproxy stays correct either way: it sends
explicit values where it can, and verifies by reading back where it must rely on a default
(docs/rules.md, "Choices where the reference is unconfirmed")."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmproxy import (
    DesiredState,
    Journal,
    Outcome,
    ProxyRequest,
    ProxySettings,
    Session,
    run_transaction,
)
from cmproxy.emulator.api import Emulator
from cmproxy.emulator.settings import EmulatorSettings, ProductBehaviour
from cmproxy.retry import RetryPolicy

from .conftest import info_for, oracle

SUP = "cm-sup01.contoso.com"  # CAS SUP with proxy.contoso.com:8080 as CONTOSO\svc-proxy


def _run(behaviour: ProductBehaviour, proxy: ProxySettings, tmp_path: Path) -> tuple[Outcome, str]:
    with Emulator(seed="demo", settings=EmulatorSettings(behaviour=behaviour)) as emu:
        before = oracle(emu, SUP, "CAS")
        with Session(info_for(emu, "psrp").evolve(site_code="CAS")) as session:
            result = run_transaction(
                session,
                DesiredState(proxies=[ProxyRequest(SUP, proxy)]),
                journal=Journal(tmp_path / "j.db"),
                policy=RetryPolicy.for_tests(),
            )
        out = result.outcome(SUP)
        now = oracle(emu, SUP, "CAS")
        assert now == (out.after if out.outcome is Outcome.CHANGED else before)
        return out.outcome, out.reason


@pytest.mark.e2e
@pytest.mark.parametrize("resets", [True, False])
def test_back_to_the_system_account_is_verified_whatever_the_product_does(
    resets: bool, tmp_path: Path
) -> None:
    behaviour = ProductBehaviour(enable_without_account_resets_to_system=resets)
    outcome, reason = _run(
        behaviour, ProxySettings(server="proxy.contoso.com", port=8080), tmp_path
    )
    if resets:
        assert outcome is Outcome.CHANGED
    else:  # the site kept the old account: verification catches it, the change is undone
        assert outcome is Outcome.ROLLED_BACK
        assert "does not show the new value" in reason


@pytest.mark.e2e
@pytest.mark.parametrize("resets", [True, False])
def test_the_port_is_always_explicit(resets: bool, tmp_path: Path) -> None:
    behaviour = ProductBehaviour(enable_without_port_resets_to_80=resets)
    proxy = ProxySettings(server="proxy-new.contoso.com", port=80, account="CONTOSO\\svc-proxy")
    outcome, _ = _run(behaviour, proxy, tmp_path)
    assert outcome is Outcome.CHANGED
