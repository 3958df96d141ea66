"""The contract suite: the e2e scenarios against a real site when CMPROXY_LIVE_* is set.

See docs/live-testing.md. Skipped (with the reason shown by -ra) when no lab is configured.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e import scenarios

import cmproxy
from cmproxy.journal import Journal
from cmproxy.model import ProxySettings
from cmproxy.plan import DesiredState, ProxyRequest, SupFlagsRequest, plan
from cmproxy.roles import SoftwareUpdatePoint
from cmproxy.session import Session

from .conftest import live_info

pytestmark = pytest.mark.live

_INFO = live_info()
_SKIP = pytest.mark.skipif(
    _INFO is None, reason="no live site: set CMPROXY_LIVE_SERVER (docs/live-testing.md)"
)


@pytest.fixture
def live_session() -> Iterator[Session]:
    assert _INFO is not None
    with Session(_INFO) as session:
        yield session


def _require(var: str) -> str:
    value = os.environ.get(var)
    if not value:
        pytest.skip(f"set {var} to let the live write scenarios touch a lab server")
    return value


@_SKIP
def test_live_read(live_session: Session) -> None:
    read = live_session.read()
    assert read.state.sites
    assert live_session.site_code is not None
    assert read.state.site(live_session.site_code) is not None


@_SKIP
def test_live_change_proxy_and_restore(live_session: Session) -> None:
    server = _require("CMPROXY_LIVE_TEST_SERVER")
    before = live_session.read_state([server]).server(server)
    assert before is not None, f"{server} is not a site system server"
    try:
        scenarios.change_server_proxy(
            live_session, server, ProxySettings(server="cmproxy-live.invalid", port=8089)
        )
    finally:
        restore = DesiredState(proxies=[ProxyRequest(server, before.proxy)])
        live_session.apply_plan(plan(live_session.read_state(), restore))


@_SKIP
def test_live_sup_flags_and_restore(live_session: Session) -> None:
    server = _require("CMPROXY_LIVE_TEST_SUP")
    before = live_session.read_state([server]).server(server)
    assert before is not None and before.proxy.enabled, "the SUP server needs a proxy"
    role = before.role(SoftwareUpdatePoint)
    assert isinstance(role, SoftwareUpdatePoint)
    try:
        scenarios.set_and_clear_sup_flags(live_session, server)
    finally:
        request = SupFlagsRequest(server, role.use_proxy, role.use_proxy_for_adr)
        live_session.apply_plan(plan(live_session.read_state(), DesiredState(sup_flags=[request])))


@_SKIP
def test_live_create_and_use_account(live_session: Session) -> None:
    server = _require("CMPROXY_LIVE_TEST_SERVER")
    domain = (_INFO.username or "LAB\\x").split("\\")[0] if _INFO else "LAB"
    account = f"{domain}\\cmproxy-live-{uuid.uuid4().hex[:6]}"
    before = live_session.read_state([server]).server(server)
    assert before is not None
    try:
        scenarios.create_and_use_account(
            live_session, server, account, f"Pw-{uuid.uuid4().hex}'$(x)`", "proxy.invalid"
        )
    finally:
        restore = DesiredState(proxies=[ProxyRequest(server, before.proxy)])
        live_session.apply_plan(plan(live_session.read_state(), restore))


@_SKIP
def test_live_doctor(live_session: Session, tmp_path: Path) -> None:
    """The site's objects have the shapes cmproxy reads (the emulator's shapes), and a write
    test on the lab server leaves it as it was (docs/live-testing.md, `cmproxy doctor`)."""
    report = cmproxy.doctor(live_session)
    assert report.ok, report.render()
    server = _require("CMPROXY_LIVE_TEST_SERVER")
    with Journal(tmp_path / "journal.sqlite3") as journal:
        tested = cmproxy.doctor(live_session, server, journal=journal)
    assert tested.write_test is not None
    assert tested.write_test.unchanged is True, tested.render()
