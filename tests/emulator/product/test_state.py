"""The SQLite state: persistence across restarts, atomic writes, no clear-text secrets."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from cmproxy.emulator.engine import SiteEngine
from cmproxy.emulator.seeds import DEMO_ACCOUNT_PASSWORD, apply_seed
from cmproxy.emulator.state import SITE_SYSTEM, Prop, SiteState


def test_state_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "site.db"
    state = SiteState(path)
    apply_seed(state, "demo")
    rs = SiteEngine(state, sleep=lambda _s: None).open_runspace("CONTOSO\\admin")
    res = rs.run_script(
        "Import-Module ConfigurationManager; Set-Location PS1:\n"
        "Set-CMSiteSystemServer -SiteSystemServerName cm-ps1-dp02.contoso.com -SiteCode PS1 "
        "-EnableProxy $true -ProxyServerName keep.contoso.com -ProxyServerPort 3128"
    )
    assert not res.had_errors, res
    before = state.snapshot()
    state.close()

    again = SiteState(path)
    apply_seed(again, "demo")  # a non-empty state is not re-seeded
    assert again.snapshot() == before
    props = again.server_props("PS1", "cm-ps1-dp02.contoso.com")
    assert props["ProxyName"].value2 == "keep.contoso.com"
    assert props["ProxyServerPort"].value == 3128
    assert any(c.command == "Set-CMSiteSystemServer" and c.wrote for c in again.call_log())
    again.close()


def test_transaction_is_atomic() -> None:
    state = SiteState()
    apply_seed(state, "empty")
    before = state.snapshot()

    def write_then_fail() -> None:
        with state.transaction():
            state.set_props("PS1", "cm-ps1.contoso.com", SITE_SYSTEM, [Prop("UseProxy", 1)])
            raise RuntimeError("mid-write")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert state.snapshot() == before


def test_passwords_are_hashed(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    state = SiteState(path)
    apply_seed(state, "demo")
    assert state.check_password("PS1", "contoso\\SVC-PROXY", DEMO_ACCOUNT_PASSWORD)
    assert not state.check_password("PS1", "CONTOSO\\svc-proxy", "wrong")
    state.close()
    raw = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert DEMO_ACCOUNT_PASSWORD.encode() not in raw


def test_empty_seed() -> None:
    state = SiteState()
    apply_seed(state, "empty")
    [site] = state.sites()
    assert (site.code, site.type) == ("PS1", "primary")
    props = state.server_props("PS1", site.server)
    assert props["UseProxy"].value == 0
    assert state.accounts() == []


def test_demo_seed_shape() -> None:
    state = SiteState()
    apply_seed(state, "demo")
    assert [(s.code, s.type, s.parent) for s in state.sites()] == [
        ("CAS", "CAS", ""),
        ("PS1", "primary", "CAS"),
        ("PS2", "primary", "CAS"),
        ("SS1", "secondary", "PS1"),
    ]
    roles = {r.role for r in state.sysres()}
    for role in (
        "SMS Site Server",
        "SMS Provider",
        "SMS Site System",
        "SMS Software Update Point",
        "AI Update Service Point",
        "SMS Dmp Connector",
        "SMS Cloud Proxy Connector",
        "SMS Exchange Server Connector",
        "SMS Distribution Point",
        "SMS Management Point",
    ):
        assert role in roles
    servers = {(r.site, r.server) for r in state.sysres()}
    assert all(state.get_sysres(s, srv, SITE_SYSTEM) for s, srv in servers)
    assert 35 <= len(servers) <= 45
    dps = state.sysres(role="SMS Distribution Point")
    cloud = [r for r in dps if state.server_props(r.site, r.server, r.role)["IsCloud"].value]
    assert cloud and all(r.server.endswith(".cloudapp.net") for r in cloud)
    assert state.sysres("SS1", role="SMS Software Update Point")
    assert state.component_props("PS2")["DefaultUseParentWSUS"].value == 1
    log = state.log("cm-ps1.contoso.com", "ruleengine.log") or ""
    assert "Failed to download the update from internet. Error = 12007." in log
    with pytest.raises(ValueError, match="unknown seed"):
        apply_seed(SiteState(), "nope")


def _commands(state: SiteState) -> list[str]:
    return [c.command for c in state.call_log()]


def test_call_log_is_complete_and_ordered_without_a_flush(tmp_path: Path) -> None:
    """record_call buffers: every read still sees each call made, in order, numbered as
    one INSERT per call numbered them; a reader in another thread sees them too."""
    state = SiteState(tmp_path / "s.db")
    for i in range(SiteState.FLUSH_CALLS_AT + 3):  # one batch written by record_call, 3 held
        state.record_call("u", f"C{i}", {"I": i, "L": [i, "x"]}, i % 2 == 0, "ok")
    seen: list[list[Any]] = []
    reader = threading.Thread(target=lambda: seen.append(state.call_log()))
    reader.start()
    reader.join()
    [log] = seen
    assert [c.command for c in log] == [f"C{i}" for i in range(SiteState.FLUSH_CALLS_AT + 3)]
    assert [c.id for c in log] == list(range(1, SiteState.FLUSH_CALLS_AT + 4))
    last = SiteState.FLUSH_CALLS_AT + 2
    assert log[-1].params == {"I": last, "L": [last, "x"]}
    assert log[0].wrote and not log[1].wrote
    assert [c.ts for c in log] == sorted(c.ts for c in log)
    assert [c.command for c in state.call_log("c5")] == ["C5"]


def test_call_log_buffer_survives_close_clear_and_rollback(tmp_path: Path) -> None:
    """Buffered calls reach the file on close, are numbered as the table numbers them,
    are not lost with a transaction that rolls back, and are gone after a clear."""
    path = tmp_path / "s.db"
    state = SiteState(path)
    apply_seed(state, "empty")
    state.record_call("u", "Before", {}, False, "ok")
    inside: list[tuple[int, str]] = []

    def write_then_fail() -> None:
        with state.transaction():
            state.record_call("u", "During", {}, False, "ok")
            # read inside the transaction: the held-back calls are there, numbered
            inside.extend((c.id, c.command) for c in state.call_log())
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert inside == [(1, "Before"), (2, "During")]
    state.record_call("u", "After", {}, False, "ok")
    state.close()  # without a flush of its own

    again = SiteState(path)
    assert _commands(again) == ["Before", "During", "After"]
    again.record_call("u", "Gone", {}, False, "ok")
    again.clear_call_log()
    again.record_call("u", "New", {}, False, "ok")
    assert [(c.id, c.command) for c in again.call_log()] == [(5, "New")]
    again.close()
