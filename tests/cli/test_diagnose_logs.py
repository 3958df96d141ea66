"""`cmproxy diagnose` reads site-server logs through the FileSystem provider and says which log
it could not read, and why (issue: a UNC path after `Set-Location PS1:` went to the CMSite
provider and the failure was swallowed, so R13 silently found nothing on a real site).

The emulator answers as Windows does (tests/emulator/conformance/providers.yaml): from the site
drive a bare UNC path is not found; a share on another machine is a second hop that NTLM / Basic
credentials cannot make unless delegation is on (`HostFacts.credentials_delegated`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cmproxy.emulator.api import Emulator
from cmproxy.emulator.settings import EmulatorSettings, HostFacts

from .conftest import Site, cli_env


def _findings(site: Site) -> tuple[int, dict[str, Any]]:
    result = site.run("diagnose", "--json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def _unreadable(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["server"]: f for f in data["findings"] if "could not be read" in f["message"]}


def test_r13_is_found_through_the_filesystem_provider(site: Site) -> None:
    code, data = _findings(site)
    assert code == 1
    r13 = [f for f in data["findings"] if f["rule"] == "R13" and f["severity"] == "error"]
    assert [f["server"] for f in r13] == ["cm-ps1.contoso.com"], data
    assert "12007" in r13[0]["message"]
    reads = site.emu.state.call_log("Get-Content")
    assert reads and all(c.params["Path"][0].startswith("FileSystem::\\\\") for c in reads)


def test_a_log_behind_a_second_hop_is_named_with_its_server_and_cause(site: Site) -> None:
    _, data = _findings(site)
    unreadable = _unreadable(data)
    # The session runs on CM-PS1: the CAS's and PS2's site servers are a second hop away.
    assert set(unreadable) == {"cm-cas01.contoso.com", "cm-ps2.contoso.com"}, data
    cas = unreadable["cm-cas01.contoso.com"]
    assert cas["rule"] == "R13" and cas["severity"] == "warning"
    assert cas["site_code"] == "CAS"
    for text in ("ruleengine.log", "cm-cas01.contoso.com", "access denied", "second hop"):
        assert text in cas["message"], cas
    for text in ("CredSSP", "delegation", "cm-cas01.contoso.com"):
        assert text in cas["fix"], cas
    table = site.run("diagnose")
    assert "second hop" in table.stdout and "cm-ps2.contoso.com" in table.stdout


def test_with_delegation_a_missing_log_is_reported_as_not_found(tmp_path: Path) -> None:
    settings = EmulatorSettings(host=HostFacts(credentials_delegated=True))
    with Emulator(
        allow_basic=True, seed="demo", https=True, receive_timeout=3.0, settings=settings
    ) as emu:
        site = Site(emu, cli_env(emu, tmp_path), tmp_path)
        _, data = _findings(site)
    unreadable = _unreadable(data)
    # Only PS1's site server has a ruleengine.log in the demo seed.
    assert set(unreadable) == {"cm-cas01.contoso.com", "cm-ps2.contoso.com"}, data
    ps2 = unreadable["cm-ps2.contoso.com"]
    assert "not found" in ps2["message"] and "second hop" not in ps2["message"]
    assert ps2["severity"] == "info"
    assert any(f["rule"] == "R13" and f["severity"] == "error" for f in data["findings"])
