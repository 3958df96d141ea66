"""The collection end to end: real ansible-playbook runs against the emulated site.

Scenarios: check mode (plans, writes nothing), diff (before/after, password masked), apply
(changed), apply again (not changed), a list of servers in one task and one transaction, rule
violations (R11, update_password=always), R9 warnings, a rolled-back failure, connection
options from CMPROXY_* over HTTPS with CA verification, the info module, and the import guard
on a python without cmproxy.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Helpers live in a uniquely named module, not a conftest.py: tests/ has no __init__.py, so a
# tests/ansible package would be named "ansible" and shadow Ansible itself, and a conftest.py
# here would be a second top-level "conftest" (mypy refuses duplicate module names).
from cmproxy_ansible_harness import (
    PROXY_PASSWORD,
    PlaybookRun,
    Runner,
    ansible_tool,
    written_calls,
)

from cmproxy.emulator.api import Emulator

pytestmark = pytest.mark.e2e


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(seed="demo", receive_timeout=3.0) as emu:
        yield emu


@pytest.fixture
def runner(emulator: Emulator, tmp_path: Path) -> Runner:
    ansible_tool("ansible-playbook")
    return Runner(emulator, tmp_path)


DP1 = "cm-ps1-dp01.contoso.com"
DP2 = "cm-ps1-dp02.contoso.com"
SUP1 = "cm-ps1-sup01.contoso.com"  # proxy.contoso.com:8080, SUP sync on, ADR off
SUP2 = "cm-ps1-sup02.contoso.com"  # no proxy, SUP options on (an R11 mess)
SS1_SUP = "cm-ss1-sup01.contoso.com"  # secondary site SUP
ACCOUNT = "CONTOSO\\svc-ansible"


def proxy_task(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "cmproxy.configmgr.site_system_proxy": options}


def sup_task(name: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "cmproxy.configmgr.software_update_point_proxy": options}


APPLY = {
    "servers": [DP1, DP2],
    "proxy_server": "proxy-ansible.contoso.com",
    "proxy_port": 3128,
    "proxy_account": ACCOUNT,
    "proxy_password": PROXY_PASSWORD,
}


def failed(result: dict[str, Any]) -> bool:
    """Did the task fail? (the results callback records the status)"""
    return bool(result["_status"] == "failed")


def server_row(result: dict[str, Any], name: str) -> dict[str, Any]:
    rows = [r for r in result["servers"] if r["server"] == name]
    assert len(rows) == 1, result["servers"]
    row: dict[str, Any] = rows[0]
    return row


def proxy_of(emu: Emulator, server: str) -> tuple[int, str, int, str]:
    props = emu.state.server_props("PS1", server)
    return (
        props["UseProxy"].value,
        props["ProxyName"].value2,
        props["ProxyServerPort"].value,
        props["ProxyUserName"].value2,
    )


def test_check_then_apply_then_idempotent(runner: Runner, emulator: Emulator) -> None:
    """--check --diff plans and writes nothing; a real run changes both servers of the list
    in one task (password used, never shown, even with -vvv); the same task again is a no-op."""
    before = {s: proxy_of(emulator, s) for s in (DP1, DP2)}
    emulator.state.clear_call_log()

    check = runner.run([proxy_task("apply", **APPLY)], check=True, diff=True)
    assert check.rc == 0, check.output
    planned = check.result("apply")
    assert planned["changed"] is True
    assert [r["outcome"] for r in planned["servers"]] == ["would change", "would change"]
    assert planned["accounts_created"] == [{"name": ACCOUNT, "site_code": "PS1"}]
    assert planned["journal"] is None and planned["transaction_id"] is None
    assert written_calls(emulator) == []
    assert {s: proxy_of(emulator, s) for s in (DP1, DP2)} == before
    journal = runner.home / ".cmproxy" / "journal.sqlite3"
    assert not journal.exists(), "check mode must not create the journal"
    # The diff: before/after per server and field; the new account's password masked.
    assert "--- before" in check.stdout and "+++ after" in check.stdout
    assert '"server": "proxy-ansible.contoso.com"' in check.stdout
    assert '"password": "********"' in check.stdout
    assert PROXY_PASSWORD not in check.output
    diff = planned["diff"]
    assert diff["before"][DP1] == {"proxy": {"enabled": False}}
    assert diff["after"][DP1] == {
        "proxy": {
            "enabled": True,
            "server": "proxy-ansible.contoso.com",
            "port": 3128,
            "account": ACCOUNT,
        }
    }

    run = runner.run(
        [proxy_task("apply", **APPLY), proxy_task("apply again", **APPLY)],
        diff=True,
        verbosity=3,
    )
    assert run.rc == 0, run.output
    applied = run.result("apply")
    assert applied["changed"] is True
    assert {r["server"]: r["outcome"] for r in applied["servers"]} == {
        DP1: "changed",
        DP2: "changed",
    }
    assert applied["transaction_id"]
    for server in (DP1, DP2):
        assert proxy_of(emulator, server) == (1, "proxy-ansible.contoso.com", 3128, ACCOUNT)
        assert server_row(applied, server)["after"]["proxy"]["account"] == ACCOUNT
    assert emulator.state.check_password("PS1", ACCOUNT, PROXY_PASSWORD)
    # One transaction for the list: the account once, then one write per server.
    writes = [c.command for c in written_calls(emulator)]
    assert writes == ["New-CMAccount", "Set-CMSiteSystemServer", "Set-CMSiteSystemServer"]
    # The SDK's default journal (HOME is the test's tmp dir).
    assert Path(applied["journal"]) == runner.home / ".cmproxy" / "journal.sqlite3"
    assert Path(applied["journal"]).exists()

    again = run.result("apply again")
    assert again["changed"] is False
    assert [r["outcome"] for r in again["servers"]] == ["unchanged", "unchanged"]
    assert again["plan"] == [] and again["transaction_id"] is None
    assert len(written_calls(emulator)) == 3, "the second task wrote something"

    # Never the password, not even with -vvv and --diff; never the connection password.
    assert PROXY_PASSWORD not in run.output
    assert emulator.password not in run.output
    assert "changed: [localhost]" in run.stdout and "ok: [localhost]" in run.stdout


def assert_r11_refusals(run: PlaybookRun) -> None:
    """The two R11 refusals of test_rule_violations_and_warnings, as the user reads them."""
    # Failures speak the module's options and say what the user can do in a playbook: no SDK
    # field path (sup_flags[0]), no "in the same change" the SUP module cannot make.
    r11 = run.result("sup without proxy")
    assert failed(r11)
    assert r11["error"]["type"] == "RuleViolation"
    assert r11["error"]["rule"] == "R11"
    assert (r11["error"]["field"], r11["error"]["value"]) == ("use_proxy", True)
    assert r11["error"]["server"] == SUP2
    assert r11["error"]["sdk_field"] == "sup_flags[0]"
    assert r11["msg"].startswith(f"[R11] use_proxy=true for {SUP2}: it has no server proxy")
    assert "cmproxy.configmgr.site_system_proxy" in r11["msg"]
    assert "use_proxy=false" in r11["msg"]
    assert "sup_flags" not in r11["msg"] and "same change" not in r11["msg"]
    assert f"[R11] use_proxy=true for {SUP2}" in run.stdout

    removal = run.result("remove proxy under SUP options")
    assert failed(removal) and removal["error"]["rule"] == "R11"
    assert removal["error"]["field"] == "sup_flags_on_proxy_removal"
    assert (removal["error"]["value"], removal["error"]["server"]) == ("refuse", SUP1)
    assert removal["msg"].startswith(f"[R11] state=absent for {SUP1}:")
    assert "use_proxy=true" in removal["msg"]  # SUP1 synchronises through its proxy
    assert "sup_flags_on_proxy_removal=turn_off" in removal["msg"]
    assert "cmproxy.configmgr.software_update_point_proxy" in removal["msg"]
    assert "(sup_flags)" not in removal["msg"] and "plan with" not in removal["msg"]


def test_rule_violations_and_warnings(runner: Runner, emulator: Emulator) -> None:
    """Refusals fail the task with the rule and write nothing; R9 is a task warning."""
    ignore = {"ignore_errors": True}
    run = runner.run(
        [
            {**sup_task("sup without proxy", server=SUP2, use_proxy=True), **ignore},
            {
                **proxy_task("remove proxy under SUP options", server=SUP1, state="absent"),
                **ignore,
            },
            {
                **proxy_task(
                    "always update an existing password",
                    server=DP1,
                    proxy_server="proxy.contoso.com",
                    proxy_account="CONTOSO\\svc-proxy",
                    proxy_password=PROXY_PASSWORD,
                    update_password="always",
                ),
                **ignore,
            },
            {**proxy_task("bad proxy host", server=DP1, proxy_server="http://p:8080"), **ignore},
            {
                **proxy_task(
                    "new account without password",
                    server=DP1,
                    proxy_server="proxy.contoso.com",
                    proxy_account="CONTOSO\\svc-new",
                ),
                **ignore,
            },
            {**sup_task("not a SUP", servers=[SUP1, DP2], use_proxy=True), **ignore},
            sup_task("ADR at a secondary site", server=SS1_SUP, use_proxy_for_adr=True),
        ]
    )
    assert run.rc == 0, run.output
    assert written_calls(emulator) == []

    assert_r11_refusals(run)

    always = run.result("always update an existing password")
    assert failed(always)
    assert "cannot change the password of an existing ConfigMgr account" in always["msg"]
    assert always["error"]["field"] == "update_password"

    bad = run.result("bad proxy host")
    assert failed(bad)
    assert bad["error"]["type"] == "ValidationError"
    assert bad["error"]["field"] == "proxy_server"
    assert bad["msg"].startswith("proxy_server='http://p:8080': is a URL")
    assert "put the port in proxy_port" in bad["msg"]

    account = run.result("new account without password")
    assert failed(account)
    assert (account["error"]["field"], account["error"]["value"]) == ("proxy_password", None)
    assert account["msg"].startswith("proxy_password is not set: account CONTOSO\\svc-new ")

    not_sup = run.result("not a SUP")
    assert failed(not_sup)
    assert (not_sup["error"]["field"], not_sup["error"]["value"]) == ("servers", DP2)
    assert not_sup["msg"] == f"servers='{DP2}': does not host a software update point"

    adr = run.result("ADR at a secondary site")
    assert not failed(adr)
    assert adr["changed"] is False  # the option was already on
    # ADR at a secondary site, and sync through the proxy on a SUP that syncs from upstream.
    assert [w["rule"] for w in adr["plan_warnings"]] == ["R9", "R9"]
    assert any("secondary site SS1" in w for w in adr["warnings"])
    assert "[WARNING]: [R9] cm-ss1-sup01.contoso.com" in run.output
    assert PROXY_PASSWORD not in run.output


def test_sup_flags_and_removal_with_turn_off(runner: Runner, emulator: Emulator) -> None:
    """SUP options change idempotently; removing a proxy can turn them off first (R11)."""
    run = runner.run(
        [
            sup_task("ADR on", server=SUP1, use_proxy_for_adr=True),
            sup_task("ADR on again", server=SUP1, use_proxy_for_adr=True),
            proxy_task(
                "remove proxy, SUP options off",
                server=SUP1,
                state="absent",
                sup_flags_on_proxy_removal="turn_off",
            ),
        ],
        diff=True,
    )
    assert run.rc == 0, run.output
    on = run.result("ADR on")
    assert on["changed"] is True
    row = server_row(on, SUP1)
    assert row["before"]["sup"] == {"use_proxy": True, "use_proxy_for_adr": False}
    assert row["after"]["sup"] == {"use_proxy": True, "use_proxy_for_adr": True}
    assert row["fields"] == [
        {"field": "use_proxy_for_adr", "before": False, "after": True, "note": ""}
    ]
    assert run.result("ADR on again")["changed"] is False
    removed = run.result("remove proxy, SUP options off")
    assert removed["changed"] is True
    assert server_row(removed, SUP1)["after"] == {
        "proxy": {"enabled": False, "server": None, "port": 80, "account": None},
        "sup": {"use_proxy": False, "use_proxy_for_adr": False},
    }
    sup = emulator.state.server_props("PS1", SUP1, "SMS Software Update Point")
    assert (sup["UseProxy"].value, sup["UseProxyForADR"].value) == (0, 0)
    assert proxy_of(emulator, SUP1)[0] == 0
    assert [c.command for c in written_calls(emulator)] == [
        "Set-CMSoftwareUpdatePoint",
        "Set-CMSoftwareUpdatePoint",
        "Set-CMSiteSystemServer",
    ]


def test_failed_write_rolls_back(runner: Runner, emulator: Emulator) -> None:
    """The second server's write fails: the first is put back and the task fails."""
    assert proxy_of(emulator, DP1)[0] == 0
    faults = emulator.settings.faults
    faults.fail_cmdlet = "Set-CMSiteSystemServer"
    faults.fail_cmdlet_on_call = 2
    faults.fail_cmdlet_error_id = "UnauthorizedAccess"
    run = runner.run([proxy_task("apply", servers=[DP1, DP2], proxy_server="proxy.contoso.com")])
    assert run.rc != 0
    result = run.result("apply")
    assert failed(result)
    assert result["changed"] is False
    assert result["error"]["type"] == "TransactionError"
    assert "rolled back" in result["msg"]
    assert {r["outcome"] for r in result["servers"]} == {"rolled back"}
    # DP1 was written, then put back: no proxy again (a disabled proxy's stale fields are
    # not compared, see cmproxy.ProxySettings).
    assert proxy_of(emulator, DP1)[0] == 0
    assert proxy_of(emulator, DP2)[0] == 0
    assert [c.command for c in written_calls(emulator)] == ["Set-CMSiteSystemServer"] * 3


def test_env_connection_https_info_and_journal_option(tmp_path: Path) -> None:
    """Connection options from CMPROXY_* only (no module_defaults), HTTPS with Basic and the
    emulator's certificate verified as CA; the info module; an explicit journal_path."""
    journal = tmp_path / "journal" / "cmproxy.sqlite3"
    with Emulator(allow_basic=True, seed="demo", https=True, receive_timeout=3.0) as emu:
        assert emu.cert_path is not None
        runner = Runner(emu, tmp_path)
        env = {
            "CMPROXY_SERVER": emu.host,
            "CMPROXY_PORT": str(emu.port),
            "CMPROXY_SCHEME": "https",
            "CMPROXY_AUTH": "basic",
            "CMPROXY_USERNAME": emu.username,
            "CMPROXY_PASSWORD": emu.password,
            "CMPROXY_CA_CERT": emu.cert_path,
            "CMPROXY_CERT_VALIDATION": "true",
            "CMPROXY_SITE_CODE": "PS1",
            "CMPROXY_IGNORE_PROXY": "true",
        }
        run = runner.run(
            [
                {
                    "name": "info",
                    "cmproxy.configmgr.site_system_proxy_info": {"site_codes": ["CAS", "PS1"]},
                },
                proxy_task(
                    "set",
                    server=DP1,
                    proxy_server="proxy.contoso.com",
                    journal_path=str(journal),
                ),
                {
                    "name": "info after",
                    "cmproxy.configmgr.site_system_proxy_info": {"servers": [DP1]},
                },
            ],
            defaults={},
            env=env,
            verbosity=3,
        )
        assert run.rc == 0, run.output
        info = run.result("info")
        assert info["changed"] is False
        assert {s["code"] for s in info["sites"]} == {"CAS", "PS1", "PS2", "SS1"}
        servers = {s["name"]: s for s in info["servers"]}
        assert {s["site_code"] for s in servers.values()} == {"CAS", "PS1"}
        cas_sup = servers["cm-sup01.contoso.com"]
        assert cas_sup["proxy"] == {
            "enabled": True,
            "server": "proxy.contoso.com",
            "port": 8080,
            "account": "CONTOSO\\svc-proxy",
        }
        assert cas_sup["sup"] == {
            "use_proxy": True,
            "use_proxy_for_adr": True,
            "sync_source": "microsoft update",
            "upstream_server": None,
        }
        assert [r["role_name"] for r in cas_sup["roles"]] == ["SMS Software Update Point"]
        assert {"name": "CONTOSO\\svc-proxy", "site_code": "PS1"} in info["accounts"]

        assert run.result("set")["changed"] is True
        assert run.result("set")["journal"] == str(journal)
        assert journal.exists()
        after = run.result("info after")
        assert [s["name"] for s in after["servers"]] == [DP1]
        assert after["servers"][0]["proxy"]["server"] == "proxy.contoso.com"
        assert emu.password not in run.output


def base_python_without_cmproxy() -> str:
    """The venv's base interpreter, if it cannot import cmproxy (it is only in the venv)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}"
    if not base.exists():
        pytest.skip("no base interpreter next to the venv")
    probe = subprocess.run(
        [str(base), "-c", "import cmproxy"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        pytest.skip(f"{base} can import cmproxy")
    return str(base)


def test_fails_cleanly_without_cmproxy(runner: Runner) -> None:
    """On a python without cmproxy every module fails with missing_required_lib's message."""
    runner.interpreter = base_python_without_cmproxy()
    ignore = {"ignore_errors": True}
    run = runner.run(
        [
            {**proxy_task("proxy", server=DP1, proxy_server="proxy.contoso.com"), **ignore},
            {**sup_task("sup", server=SUP1, use_proxy=True), **ignore},
            {"name": "info", "cmproxy.configmgr.site_system_proxy_info": {}, **ignore},
        ]
    )
    for name in ("proxy", "sup", "info"):
        result = run.result(name)
        assert failed(result), result
        assert "Failed to import the required Python library (cmproxy)" in result["msg"]
        assert "Traceback" not in result["msg"]
