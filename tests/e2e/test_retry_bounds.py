"""Retries through the real clients: bounded by count and deadline; non-transient errors
(bad credentials, rule violations) are never retried."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from cmproxy import (
    AuthenticationError,
    ConnectionError,
    DesiredState,
    Journal,
    ProxyRequest,
    ProxySettings,
    RuleViolation,
    Session,
    SupFlagsRequest,
    TransactionEvent,
    run_transaction,
)
from cmproxy.emulator.api import Emulator
from cmproxy.retry import RetryPolicy

from .conftest import SERVER, info_for

WANT = DesiredState(proxies=[ProxyRequest(SERVER, ProxySettings(server="p.contoso.com"))])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.e2e
@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_bad_credentials_are_never_retried(transport: str, tmp_path: Path) -> None:
    with Emulator(seed="demo", receive_timeout=3.0) as emu:
        info = info_for(emu, transport).evolve(password="wrong-password")
        sleeps: list[float] = []
        policy = RetryPolicy(attempts=5, initial_backoff=0.01, jitter=0, sleep=sleeps.append)
        events: list[TransactionEvent] = []
        with pytest.raises(AuthenticationError):
            run_transaction(
                Session(info),
                WANT,
                journal=Journal(tmp_path / "j.db"),
                policy=policy,
                hooks=[events.append],
            )
        assert sleeps == []  # a retry always backs off first: none happened
        assert not [e for e in events if e.kind == "retry"]
        assert emu.state.call_log() == []


@pytest.mark.e2e
def test_a_rule_violation_is_not_retried_and_writes_nothing(tmp_path: Path) -> None:
    with Emulator(seed="demo", receive_timeout=3.0) as emu, Session(info_for(emu, "psrp")) as s:
        bad = DesiredState(sup_flags=[SupFlagsRequest("cm-ps2-sup02.contoso.com", True, True)])
        with pytest.raises(RuleViolation, match="R11"):
            run_transaction(s, bad, journal=Journal(tmp_path / "j.db"))
        assert not [c for c in emu.state.call_log() if c.wrote]


@pytest.mark.e2e
def test_transient_failures_are_retried_within_count_and_deadline(
    tmp_path: Path, policy_on_fake_clock: Callable[..., RetryPolicy]
) -> None:
    port = _closed_port()
    with Emulator(seed="demo") as emu:
        info = info_for(emu, "psrp").evolve(port=port, connection_timeout=2)

    def run(policy: RetryPolicy) -> int:
        events: list[TransactionEvent] = []
        with pytest.raises(ConnectionError):
            run_transaction(
                Session(info),
                WANT,
                journal=Journal(tmp_path / "j.db"),
                policy=policy,
                hooks=[events.append],
            )
        return 1 + len([e for e in events if e.kind == "retry"])

    by_count = policy_on_fake_clock(attempts=3, deadline=1000, backoff=1)
    assert run(by_count) == 3
    by_deadline = policy_on_fake_clock(attempts=100, deadline=4.5, backoff=2)
    assert run(by_deadline) == 3  # tries at t=0, 2, 4; the next would end past 4.5
