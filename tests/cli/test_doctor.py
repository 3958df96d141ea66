"""`cmproxy doctor` as a subprocess against an emulated site: the report in text and JSON, no
password anywhere, a write test that really writes and leaves the site as it was, refusals
that write nothing, and a shape that differs from the reference shown as a failed check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cmproxy.emulator.state import SITE_SYSTEM
from cmproxy.journal import Journal

from .conftest import Site

pytestmark = pytest.mark.e2e

SITE_SERVER = "cm-ps1.contoso.com"  # proxy with an account (CONTOSO\svc-proxy)
SUP_WITH_PROXY = "cm-ps1-sup01.contoso.com"  # proxy as System account, SUP sync option on
SUP_WITHOUT_PROXY = "cm-ps1-sup02.contoso.com"  # SUP options on, no server proxy (R11)


def _no_secret(site: Site, *outputs: str) -> None:
    for text in outputs:
        assert site.emu.password not in text


def test_doctor_text_and_json(site: Site) -> None:
    text, data_run = site.run_many(["doctor"], ["doctor", "--json"])
    assert text.returncode == 0, text.stderr
    assert data_run.returncode == 0, data_run.stderr
    _no_secret(site, text.stdout, text.stderr, data_run.stdout, data_run.stderr)
    for expected in (
        "Proxy settings: where they live",
        "ProxyUserName",
        "Value2",
        "ModuleVersion",
        "5.1.17763.5576",
        "winrm/config/winrs MaxShellsPerUser",
        "all checks passed",
    ):
        assert expected in text.stdout, expected

    data = json.loads(data_run.stdout)
    assert data["ok"] is True
    conn = data["connection"]
    assert conn["transport"] == "psrp"
    assert conn["auth"] == "basic"
    assert conn["tls"] is True
    assert conn["cert_validation"] is True
    assert conn["password_set"] is True
    assert "password" not in conn
    # Every field of the bootstrap's answer, whatever fields it has.
    assert data["bootstrap"]["SiteCode"] == "PS1"
    assert data["bootstrap"]["ModuleVersion"]
    assert {"ModulePath", "DriveCreated", "DriveRoot"} <= set(data["bootstrap"])
    assert data["host"]["PSEdition"] == "Desktop"
    assert "PS1" in [d["Name"] for d in data["drives"]]
    shapes = {(s["object"], s["property"]): s for s in data["shapes"]}
    account = shapes[("SMS Site System", "ProxyUserName")]
    assert account["status"] == "ok"
    assert account["found_in"] == "Value2"
    assert account["value"]  # the server picked has a proxy account
    assert shapes[("SMS Software Update Point", "UseProxyForADR")]["status"] == "ok"
    assert shapes[("SMS_WSUS_CONFIGURATION_MANAGER", "ParentWSUS")]["expected_field"] == "Value2"
    # The quotas come from WSMan Gets of the endpoint's configuration (Windows' defaults).
    quotas = {q["path"]: q for q in data["quotas"]}
    assert quotas["winrm/config/winrs MaxShellsPerUser"]["value"] == "30"
    plugin = "winrm/config/plugin?Name=Microsoft.PowerShell MaxShellsPerUser"
    assert quotas[plugin]["value"] == "25"
    [quota_check] = [c for c in data["checks"] if c["name"] == "WinRM quotas"]
    assert quota_check["status"] == "ok"
    assert "below MaxShellsPerUser 25" in quota_check["detail"]
    assert data["write_test"] is None
    assert not site.writes()  # read-only by default


def _site_state(site: Site) -> dict[str, Any]:
    return site.emu.state.snapshot()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("server", "cmdlets"),
    [
        (SITE_SERVER, ["Set-CMSiteSystemServer"]),
        (SUP_WITH_PROXY, ["Set-CMSiteSystemServer", "Set-CMSoftwareUpdatePoint"]),
    ],
)
def test_write_test_writes_and_leaves_the_site_as_it_was(
    site: Site, server: str, cmdlets: list[str]
) -> None:
    before = _site_state(site)
    result = site.run("doctor", "--write-test", server, "--json")
    assert result.returncode == 0, result.stderr + result.stdout
    _no_secret(site, result.stdout, result.stderr)
    data = json.loads(result.stdout)
    test = data["write_test"]
    assert test["status"] == "ok", test
    assert test["site_as_it_was"] is True
    assert test["reads_until_visible"] >= 1
    assert test["read_after_write_seconds"] is not None
    assert test["before"] == test["after"]
    # It really wrote: the emulator saw each write, on that server, and committed it.
    writes = site.writes()
    assert [w.command for w in writes] == cmdlets
    assert {w.params["SiteSystemServerName"] for w in writes} == {server}
    assert all(w.outcome == "ok" for w in writes)
    if server == SITE_SERVER:
        # The account went back by lookup (no password needed), not dropped to System.
        assert writes[0].params["ProxyAccessAccount"]["UserName"] == "CONTOSO\\svc-proxy"
    assert _site_state(site) == before
    with Journal(Path(site.env["CMPROXY_JOURNAL"])) as journal:
        assert journal.open_transactions() == []
        assert journal.status(test["transaction_id"]) == "committed"


def test_write_test_over_winrs_in_text(site: Site) -> None:
    before = _site_state(site)
    result = site.run("doctor", "--write-test", SITE_SERVER, "--transport", "winrm")
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"Write test on {SITE_SERVER}: ok" in result.stdout
    assert "site as it was: yes" in result.stdout
    _no_secret(site, result.stdout, result.stderr)
    assert [w.command for w in site.writes()] == ["Set-CMSiteSystemServer"]
    assert _site_state(site) == before


def test_write_test_refuses_what_it_could_change(site: Site) -> None:
    """SUP options on without a server proxy (R11): writing them back would make WSUS fail
    (reference §7 issue #33), so nothing is written and the check fails."""
    before = _site_state(site)
    code, data = site.run_json("doctor", "--write-test", SUP_WITHOUT_PROXY)
    assert code == 1
    test = data["write_test"]
    assert test["status"] == "fail"
    assert test["detail"].startswith("refused, nothing written")
    assert "R11" in test["detail"]
    assert not site.writes()
    assert _site_state(site) == before


def test_write_test_refuses_stale_fields_of_a_disabled_proxy(site: Site) -> None:
    """A proxy that is off but still holds a port: whether -EnableProxy $false clears it is
    [UNCONFIRMED] (reference §9), so the write-back could change it."""
    code, data = site.run_json("doctor", "--write-test", "cm-ps1-dp01.contoso.com")
    assert code == 1
    assert "[UNCONFIRMED]" in data["write_test"]["detail"]
    assert not site.writes()


def test_a_shape_that_differs_fails_the_check(site: Site) -> None:
    """A site whose `SMS Site System` object lacks ProxyUserName (arranged in the site's data:
    the reference has no official list of property names, §2.1) is shown, not read as
    "no account"."""
    state = site.emu.state
    row = state.get_sysres("PS1", SITE_SERVER, SITE_SYSTEM)
    kept = [p for p in row.props if p.name != "ProxyUserName"]
    assert len(kept) == len(row.props) - 1
    state.put_sysres("PS1", SITE_SERVER, SITE_SYSTEM, kept, row.ssl_state)
    code, data = site.run_json("doctor", "--proxy-server", SITE_SERVER)
    assert code == 1
    shapes = {(s["object"], s["property"]): s for s in data["shapes"]}
    missing = shapes[("SMS Site System", "ProxyUserName")]
    assert missing["status"] == "fail"
    assert "MISSING" in missing["detail"]
    assert any(c["status"] == "fail" and "ProxyUserName" in c["name"] for c in data["checks"])
    text = site.run("doctor", "--proxy-server", SITE_SERVER)
    assert text.returncode == 1
    assert "MISSING" in text.stdout
    assert "FAILED" in text.stdout
    # The write test refuses a server whose shape is not the one cmproxy writes.
    code, data = site.run_json("doctor", "--write-test", SITE_SERVER)
    assert code == 1
    assert "lacks ['ProxyUserName']" in data["write_test"]["detail"]
    assert not site.writes()


@pytest.mark.parametrize("fault", ["fails", "answer lost"])
def test_write_test_that_fails_says_so_and_leaves_the_site_as_it_was(
    site: Site, fault: str
) -> None:
    """A write refused by the provider, or made but its answer lost (the ambiguous case): the
    test fails (exit 1), says the site is as it was, and the journal closes it rolled back."""
    before = _site_state(site)
    faults = site.emu.settings.faults
    with site.emu.settings.lock:
        if fault == "fails":
            faults.fail_servers = {SITE_SERVER: "Set-CMSiteSystemServer"}
            faults.fail_cmdlet_error_id = "SmsInvalidProperty"
        else:
            faults.lose_answer_cmdlet = "Set-CMSiteSystemServer"
            faults.lose_answer_on_call = 1
    code, data = site.run_json("doctor", "--write-test", SITE_SERVER)
    assert code == 1
    test = data["write_test"]
    assert test["status"] == "fail"
    assert "failed" in test["detail"]
    assert test["site_as_it_was"] is True
    calls = site.emu.state.call_log("Set-CMSiteSystemServer")
    assert len(calls) == 1
    assert calls[0].wrote is (fault == "answer lost")
    assert _site_state(site) == before
    with Journal(Path(site.env["CMPROXY_JOURNAL"])) as journal:
        assert journal.status(test["transaction_id"]) == "rolled_back"
