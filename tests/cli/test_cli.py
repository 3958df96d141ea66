"""`cmproxy` as a subprocess against an emulated site: output, JSON, exit codes, no secrets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cmproxy.emulator.api import Emulator

from .conftest import (
    EXAMPLES,
    MIGRATION,
    NEW_PROXY_PASSWORD,
    PS2_SUPS,
    R11_YAML,
    Site,
    cli_env,
    proxy_view,
)

pytestmark = pytest.mark.e2e

COMMANDS = [
    [],
    ["show"],
    ["plan"],
    ["apply"],
    ["recover"],
    ["diagnose"],
    ["doctor"],
    ["demo"],
    ["emulator"],
    ["emulator", "serve"],
]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cmproxy.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
        check=False,
    )


def test_help_works_for_every_command() -> None:
    with ThreadPoolExecutor(max_workers=len(COMMANDS)) as pool:
        results = list(pool.map(lambda c: _cli(*c, "--help"), COMMANDS))
    for command, result in zip(COMMANDS, results, strict=True):
        assert result.returncode == 0, (command, result.stderr)
        assert "usage" in result.stdout.lower(), command
        if command[:1] in (["show"], ["plan"], ["apply"], ["recover"], ["diagnose"], ["doctor"]):
            assert "--server" in result.stdout
            assert "CMPROXY_PASSWORD" in result.stdout
            assert "--json" in result.stdout
    version = _cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("cmproxy ")


# -- show -------------------------------------------------------------------------------------


def test_show_table_and_json(site: Site) -> None:
    table, full, ps2 = site.run_many(
        ["show"], ["show", "--json"], ["show", "--site", "ps2", "--json"]
    )
    assert table.returncode == 0, table.stderr
    assert "Site system servers (39)" in table.stdout
    assert "cm-ps1-sup02.contoso.com" in table.stdout
    assert "proxy-dmz.contoso.com:3128" in table.stdout
    assert "CONTOSO\\svc-proxy-dmz" in table.stdout

    assert full.returncode == 0
    data = json.loads(full.stdout)
    assert {s["code"] for s in data["sites"]} == {"CAS", "PS1", "PS2", "SS1"}
    assert len(data["servers"]) == 39
    servers = {s["name"]: s for s in data["servers"]}
    sup02 = servers["cm-ps1-sup02.contoso.com"]
    assert sup02["proxy"]["enabled"] is False
    assert sup02["sup"] == {"use_proxy": True, "use_proxy_for_adr": True}
    assert servers["cm-ps1.contoso.com"]["proxy"] == {
        "enabled": True,
        "server": "proxy.contoso.com",
        "port": 8080,
        "account": "CONTOSO\\svc-proxy",
    }
    assert ps2.returncode == 0
    only = json.loads(ps2.stdout)
    assert {s["site"] for s in only["servers"]} == {"PS2"}
    assert [s["code"] for s in only["sites"]] == ["PS2"]
    assert not site.writes()


def test_show_with_ntlm_and_message_encryption_over_http(tmp_path: Path) -> None:
    with Emulator(seed="demo", https=False, receive_timeout=3.0) as emu:
        clean = Site(emu, cli_env(emu, tmp_path), tmp_path)
        assert clean.env["CMPROXY_AUTH"] == "ntlm"
        result = clean.run("show", "--site", "SS1", "--transport", "winrm")
        assert result.returncode == 0, result.stderr
        assert "cm-ss1-sup01.contoso.com" in result.stdout


def test_connection_flags_override_the_environment(site: Site) -> None:
    result = site.run(
        "show",
        "--site",
        "SS1",
        "--server",
        site.emu.host,
        "--port",
        str(site.emu.port),
        "--auth",
        "ntlm",
        env={"CMPROXY_PORT": "1", "CMPROXY_AUTH": "kerberos"},
    )
    assert result.returncode == 0, result.stderr
    assert "cm-ss1-sup01.contoso.com" in result.stdout


# -- plan -------------------------------------------------------------------------------------


def test_plan_table_and_json_write_nothing(site: Site) -> None:
    table, as_json, *examples = site.run_many(
        ["plan", "-f", MIGRATION],
        ["plan", "-f", MIGRATION, "--json"],
        *(["plan", "-f", str(p), "--json"] for p in sorted(EXAMPLES.glob("*.yaml"))),
    )
    assert table.returncode == 0, table.stderr
    assert "16 change(s)" in table.stdout
    assert "create account" in table.stdout
    assert "proxy2.contoso.com" in table.stdout
    assert as_json.returncode == 0
    data = json.loads(as_json.stdout)
    assert data["changes"] == 16
    (provider,) = data["providers"]
    kinds = [c["kind"] for c in provider["plan"]["changes"]]
    assert kinds[0] == "CREATE_ACCOUNT"
    assert kinds.count("SET_SERVER_PROXY") == 14
    assert NEW_PROXY_PASSWORD not in table.stdout + as_json.stdout + as_json.stderr
    for example in examples:
        assert example.returncode == 0, example.stderr
        assert json.loads(example.stdout)["changes"] > 0
    assert not site.writes()


def test_rule_violation_exits_2_names_rule_and_field_and_writes_nothing(site: Site) -> None:
    bad = site.file("r11.yaml", R11_YAML)
    plain, as_json = site.run_many(["apply", "-f", bad, "--yes"], ["plan", "-f", bad, "--json"])
    assert plain.returncode == 2, plain.stderr
    assert "refused by rule R11" in plain.stderr
    assert "sup_flags[0]" in plain.stderr
    assert "Nothing was written" in plain.stderr
    assert "Traceback" not in plain.stderr
    assert as_json.returncode == 2
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    assert data["error"]["rule"] == "R11"
    assert data["error"]["field"] == "sup_flags[0]"
    assert not site.writes()


def test_invalid_input_is_a_usage_error(site: Site) -> None:
    bad = site.file(
        "bad.yaml",
        "version: 1\nsites:\n  PS1:\n    proxy: {server: proxy2.contoso.com, port: 99999}\n",
    )
    line, as_json, missing, unknown, no_env, no_yes = site.run_many(
        ["apply", "-f", bad, "--yes"],
        ["plan", "-f", bad, "--json"],
        ["plan", "-f", str(site.tmp / "nope.yaml")],
        ["show", "--no-such-option"],
        ["plan", "-f", MIGRATION],
        ["apply", "-f", PS2_SUPS],
    )
    assert line.returncode == 2
    assert "bad.yaml:4:" in line.stderr
    assert "sites.PS1.proxy.port" in line.stderr
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout)["error"]["line"] == 4
    assert missing.returncode == 2
    assert unknown.returncode == 2
    assert no_yes.returncode == 2
    assert "--yes" in no_yes.stderr
    assert no_env.returncode == 0  # the variable is set in the fixture; now without it,
    # apply needs it (a plan does not: tests/cli/test_ux.py)
    result = site.run("apply", "-f", MIGRATION, "--yes", drop=["CMPROXY_NEW_PROXY_PASSWORD"])
    assert result.returncode == 2
    assert "CMPROXY_NEW_PROXY_PASSWORD" in result.stderr
    assert "environment variable is not set" in result.stderr
    assert not site.writes()


# -- apply ------------------------------------------------------------------------------------


def test_apply_yes_changes_the_site(site: Site) -> None:
    result = site.run("apply", "-f", MIGRATION, "--yes")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Results: 15 server(s): 1 unchanged, 14 changed" in out
    view = proxy_view(site.emu)
    assert view["cm-ps1-mp01.contoso.com|proxy"] == (
        "proxy2.contoso.com",
        3128,
        "CONTOSO\\svc-proxy2",
    )
    assert view["cm-ps1-dp03.contoso.com|proxy"] == ("proxy2.contoso.com", 3128, "")
    assert view["cm-ps1-sup01.contoso.com|sup"] == (1, 1)
    assert view["cm-ps2-dp01.contoso.com|proxy"] == ("none",)  # other sites untouched
    assert NEW_PROXY_PASSWORD not in out + result.stderr
    code, data = site.run_json("apply", "-f", MIGRATION, "--yes")
    assert code == 0
    assert data["ok"] is True
    assert data["results"]["servers"] == []  # nothing left to do


def test_apply_json(site: Site) -> None:
    code, data = site.run_json("apply", "-f", PS2_SUPS, "--yes")
    assert code == 0
    assert data["ok"] is True
    assert data["results"]["counts"] == {
        "unchanged": 0,
        "changed": 5,
        "rolled back": 0,
        "failed": 0,
    }
    servers = {s["server"]: s for s in data["results"]["servers"]}
    assert servers["cm-ps2-sup01.contoso.com"]["after"]["sup"] == {
        "use_proxy": True,
        "use_proxy_for_adr": True,
    }
    assert proxy_view(site.emu)["cm-ps2-sup02.contoso.com|sup"] == (1, 1)


def _fail_first_sup_write(site: Site) -> None:
    faults = site.emu.settings.faults
    faults.fail_cmdlet = "Set-CMSoftwareUpdatePoint"
    faults.fail_cmdlet_on_call = 1
    faults.fail_cmdlet_error_id = "SmsInvalidProperty"  # not transient: no retry


def test_apply_failure_rolls_back_that_server_and_exits_1(site: Site) -> None:
    before = proxy_view(site.emu)
    _fail_first_sup_write(site)
    code, data = site.run_json("apply", "-f", PS2_SUPS, "--yes")
    assert code == 1
    assert data["ok"] is False
    failed = [s for s in data["results"]["servers"] if s["outcome"] == "rolled back"]
    assert len(failed) == 1
    assert "SmsInvalidProperty" in failed[0]["reason"]
    assert data["results"]["counts"]["changed"] == 4
    view = proxy_view(site.emu)
    name = failed[0]["server"]
    # The failed SUP is as it was (its proxy was written, then put back) ...
    assert view[f"{name}|proxy"] == before[f"{name}|proxy"] == ("none",)
    assert view[f"{name}|sup"] == before[f"{name}|sup"]
    # ... the others keep their change.
    assert view["cm-ps2-dp01.contoso.com|proxy"] == ("proxy.contoso.com", 8080, "")


def test_apply_failure_table_is_coloured_by_outcome(site: Site) -> None:
    _fail_first_sup_write(site)
    result = site.run("apply", "-f", PS2_SUPS, "--yes", env={"FORCE_COLOR": "1"})
    assert result.returncode == 1
    assert "1 rolled back" in result.stdout
    assert "\x1b[1;33mrolled back" in result.stdout  # bold yellow
    assert "\x1b[1;32mchanged" in result.stdout  # bold green
    assert "cmproxy recover" in result.stdout


def test_apply_all_or_nothing_puts_every_server_back(site: Site) -> None:
    before = proxy_view(site.emu)
    _fail_first_sup_write(site)
    code, data = site.run_json("apply", "-f", PS2_SUPS, "--yes", "--all-or-nothing")
    assert code == 1
    assert data["results"]["counts"] == {
        "unchanged": 0,
        "changed": 0,
        "rolled back": 5,
        "failed": 0,
    }
    assert proxy_view(site.emu) == before


def test_apply_all_or_nothing_restores_a_server_that_broke_r11_before(site: Site) -> None:
    desired = site.file(
        "sup02.yaml",
        "version: 1\nservers:\n"
        "  cm-ps1-sup02.contoso.com:\n    proxy: {server: proxy.contoso.com, port: 8080}\n"
        "  cm-ps1-sup01.contoso.com:\n    sup: {use_proxy_for_adr: true}\n",
    )
    before = proxy_view(site.emu)
    _fail_first_sup_write(site)
    code, _data = site.run_json("apply", "-f", desired, "--yes", "--all-or-nothing")
    assert code == 1
    assert proxy_view(site.emu) == before


# -- connection errors ------------------------------------------------------------------------


def test_connection_errors_exit_1_without_tracebacks_or_passwords(site: Site) -> None:
    secret = "Wr0ng-Secret-Value"
    unreachable, unchecked = site.run_many(
        ["show", "--port", "1"],
        ["show", "--site", "SS1", "--no-cert-validation"],
    )
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("error:")
    assert "Traceback" not in unreachable.stderr
    assert unchecked.returncode == 0, unchecked.stderr

    result = site.run("show", env={"CMPROXY_PASSWORD": secret})
    assert result.returncode == 1
    assert "authentication failed" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    debug = site.run("show", "--password", secret, "--debug", drop=["CMPROXY_PASSWORD"])
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert secret not in debug.stdout + debug.stderr
    missing = site.run("show", drop=["CMPROXY_PASSWORD"])
    assert missing.returncode == 2
    assert "CMPROXY_PASSWORD" in missing.stderr
    untrusted_ca = site.run("show", drop=["CMPROXY_CA_CERT"])
    assert untrusted_ca.returncode == 1
    assert "Traceback" not in untrusted_ca.stderr


# -- recover ----------------------------------------------------------------------------------


def test_recover_with_nothing_to_do(site: Site) -> None:
    plain, as_json = site.run_many(["recover"], ["recover", "--json"])
    assert plain.returncode == 0
    assert "No unfinished transactions" in plain.stdout
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) == {
        "ok": True,
        "endpoint": site.emu.endpoint,
        "transactions": [],
    }


def test_recover_finishes_what_a_killed_apply_left(site: Site) -> None:
    site.emu.settings.costs.set_cmdlet = 0.3  # slow writes, so the kill lands mid-change
    site.kill_apply_after(writes=2)
    site.emu.settings.costs.set_cmdlet = 0.0
    code, data = site.run_json("recover")
    assert code == 0, data
    assert data["ok"] is True
    assert data["transactions"], "a killed apply leaves open transactions"
    for tx in data["transactions"]:
        assert tx["status"] in ("committed", "rolled_back")
        for server in tx["servers"]:
            assert server["outcome"] in ("changed", "rolled back")
    again = site.run("recover")
    assert again.returncode == 0
    assert "No unfinished transactions" in again.stdout


# -- diagnose ---------------------------------------------------------------------------------


def test_diagnose_finds_12007_and_exits_1(site: Site) -> None:
    table, as_json, with_file = site.run_many(
        ["diagnose"], ["diagnose", "--json"], ["diagnose", "-f", MIGRATION, "--json"]
    )
    assert table.returncode == 1
    for text in ("R13", "12007", "R11", "cm-ps1-sup02.contoso.com"):
        assert text in table.stdout
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    rules = {f["rule"]: f for f in data["findings"]}
    assert {"R11", "R13", "R5", "R9"} <= set(rules)
    (r13,) = [f for f in data["findings"] if f["rule"] == "R13" and f["severity"] == "error"]
    assert r13["server"] == "cm-ps1.contoso.com"
    assert "12007" in r13["message"]
    assert with_file.returncode == 1
    assert json.loads(with_file.stdout)["findings"]
    assert not site.writes()


def test_diagnose_clean_site_exits_0(tmp_path: Path) -> None:
    with Emulator(allow_basic=True, seed="empty", https=True, receive_timeout=3.0) as emu:
        clean = Site(emu, cli_env(emu, tmp_path), tmp_path)
        plain, as_json = clean.run_many(["diagnose"], ["diagnose", "--json"])
        assert plain.returncode == 0, plain.stdout + plain.stderr
        assert as_json.returncode == 0
        data = json.loads(as_json.stdout)
        # No problem; only the note that the site server has no ruleengine.log to check yet.
        assert data["ok"] is True
        assert [(f["rule"], f["severity"], f["server"]) for f in data["findings"]] == [
            ("R13", "info", "cm-ps1.contoso.com")
        ]
        assert "ruleengine.log" in plain.stdout and "not found" in plain.stdout
