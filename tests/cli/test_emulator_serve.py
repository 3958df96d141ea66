"""`cmproxy emulator serve`: a typer command with full help whose options arm the emulator's
faults, so a failure can be rehearsed from a shell, a notebook or a playbook (issue 17)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from cmproxy.cli import emulator as serve_command
from cmproxy.emulator import api
from cmproxy.emulator.settings import EmulatorSettings, Faults

from .conftest import MIGRATION, NEW_PROXY_PASSWORD, REPO

pytestmark = pytest.mark.e2e

DP01 = "cm-ps1-dp01.contoso.com"


def test_help_lists_every_fault_the_emulator_has() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cmproxy.cli", "emulator", "serve", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300", "PYTHONPATH": str(REPO)},
        check=True,
        timeout=60,
    ).stdout
    for field in attrs.fields(Faults):
        option = "--" + field.name.replace("_", "-")
        if field.name == "fail_servers":
            option = "--fail-server"
        assert option in out, option


def test_the_help_defaults_are_the_emulators() -> None:
    faults, quotas = Faults(), EmulatorSettings().quotas
    assert serve_command.DEFAULT_USER == api.DEFAULT_USER
    assert serve_command.DEFAULT_PASSWORD == api.DEFAULT_PASSWORD
    assert faults.wsman_fault_code == serve_command.DEFAULT_WSMAN_FAULT_CODE
    assert faults.fail_cmdlet_error_id == serve_command.DEFAULT_FAIL_CMDLET_ERROR_ID
    assert quotas.winrs_max_shells_per_user == serve_command.DEFAULT_MAX_SHELLS_PER_USER
    assert quotas.plugin_max_shells_per_user == serve_command.DEFAULT_PLUGIN_MAX_SHELLS_PER_USER


@attrs.frozen
class Served:
    proc: subprocess.Popen[str]
    endpoint: str
    port: int
    ca: str
    banner: list[str]


SERVE = (sys.executable, "-m", "cmproxy.cli", "emulator", "serve")


@contextlib.contextmanager
def _serve(tmp_path: Path, *args: str, until: str = "users:") -> Iterator[Served]:
    """`cmproxy emulator serve --https --port 0 ARGS`, its banner read up to the first line
    starting with `until`; SIGTERMed on exit."""
    proc = subprocess.Popen(
        [*SERVE, "--https", "--port", "0", "--state", str(tmp_path / "site.sqlite"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    banner: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            banner.append(line.rstrip())
            if line.startswith(until):
                break
        text = "\n".join(banner)
        endpoint = re.search(r"listening on (https://127\.0\.0\.1:(\d+)/wsman)", text)
        ca = re.search(r"trust this CA\): (\S+)", text)
        assert endpoint and ca, text + (proc.stderr.read() if proc.stderr else "")
        yield Served(proc, endpoint.group(1), int(endpoint.group(2)), ca.group(1), banner)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _cli(served: Served, auth: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`cmproxy ARGS` against `served` with `auth` as the emulator's default user, connection
    options from `CMPROXY_*` variables (none inherited), `env` added."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("CMPROXY_")}
    full.update(
        PYTHONPATH=str(REPO),
        CMPROXY_SERVER="127.0.0.1",
        CMPROXY_PORT=str(served.port),
        CMPROXY_AUTH=auth,
        CMPROXY_USERNAME=api.DEFAULT_USER,
        CMPROXY_PASSWORD=api.DEFAULT_PASSWORD,
        CMPROXY_CA_CERT=served.ca,
        CMPROXY_IGNORE_PROXY="true",
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "cmproxy.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """`cmproxy emulator serve --https --port 0` with a write to DP01 armed to fail."""
    with _serve(
        tmp_path, "--fail-server", f"{DP01}=Set-CMSiteSystemServer", until="fault armed"
    ) as serving:
        yield serving


def test_a_fault_armed_at_serve_rolls_back_that_server(served: Served, tmp_path: Path) -> None:
    assert f"fault armed: Set-CMSiteSystemServer on {DP01} fails" in served.banner
    result = _cli(
        served,
        "ntlm",
        *("apply", "-f", MIGRATION, "--yes"),
        CMPROXY_SITE_CODE="PS1",
        CMPROXY_JOURNAL=str(tmp_path / "journal.sqlite3"),
        CMPROXY_NEW_PROXY_PASSWORD=NEW_PROXY_PASSWORD,
        COLUMNS="250",
    )
    assert result.returncode == 1, result.stderr
    results = result.stdout[result.stdout.index("Results:") :]
    row = next(line for line in results.splitlines() if DP01 in line)
    assert "rolled back" in row or "failed" in row, row
    assert "ProviderBusy" in result.stdout
    assert "13 changed" in result.stdout


def test_bad_fault_options_are_refused_before_serving() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cmproxy.cli", "emulator", "serve", "--fail-server", "nope"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"},
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "SERVER=CMDLET" in result.stderr


@pytest.mark.parametrize("allowed", [True, False], ids=["allow-credssp", "default"])
def test_serve_accepts_credssp_only_when_asked(allowed: bool, tmp_path: Path) -> None:
    """`--allow-credssp` turns CredSSP on, as WinRM's Auth/CredSSP (off by default; MS-WSMV
    2.2.9.1.3, `Enable-WSManCredSSP -Role Server`): `cmproxy show --auth credssp` is answered
    only then, and refused as an authentication failure otherwise."""
    pytest.importorskip("requests_credssp", reason="the credssp extra is not installed")
    args = ["--allow-credssp"] if allowed else []
    with _serve(tmp_path, *args) as served:
        shown = _cli(served, "credssp", "show", "--site", "PS1", "-o", "json")
    if allowed:
        assert shown.returncode == 0, shown.stderr
        assert "cm-ps1-dp01.contoso.com" in shown.stdout
    else:
        assert shown.returncode != 0
        assert "CredSSP" in shown.stderr, shown.stderr
