"""The CLI as admins expect it from terraform / kubectl (issue 17 point 2): saved plans and
drift, terraform's detailed exit code, --output json|yaml, -v/-q, shell completion, unknown
sites, errors in the command line's own words, site-code selection, a read-only plan without
account passwords. Real `cmproxy` processes against the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cmproxy.emulator.api import Emulator

from .conftest import MIGRATION, Site, cli_env

pytestmark = pytest.mark.e2e

DP01 = "cm-ps1-dp01.contoso.com"
OTHER_PROXY = f"""\
version: 1
servers:
  {DP01}:
    proxy: {{server: proxy9.contoso.com, port: 8080}}
"""


# -- saved plans, drift, detailed exit code -----------------------------------------------------


def test_a_saved_plan_is_applied_as_planned(site: Site) -> None:
    saved = site.tmp / "migration.plan"
    planned = site.run("plan", "-f", MIGRATION, "--out", str(saved))
    assert planned.returncode == 0, planned.stderr
    assert f"cmproxy apply {saved}" in planned.stdout
    assert not site.writes()
    text = saved.read_text()
    assert site.env["CMPROXY_NEW_PROXY_PASSWORD"] not in text  # the value the CLI was given
    assert site.env["CMPROXY_PASSWORD"] not in text
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    applied = site.run("apply", str(saved), "--yes")
    assert applied.returncode == 0, applied.stderr
    assert "Results: 15 server(s): 1 unchanged, 14 changed" in applied.stdout


def test_a_saved_plan_is_refused_with_the_differences_when_the_site_drifted(
    site: Site,
) -> None:
    saved = site.tmp / "migration.plan"
    assert site.run("plan", "-f", MIGRATION, "--out", str(saved)).returncode == 0
    # Someone changes one server of the plan meanwhile.
    drift = site.run("apply", "-f", site.file("other.yaml", OTHER_PROXY), "--yes")
    assert drift.returncode == 0, drift.stderr
    writes = len(site.writes())
    refused = site.run("apply", str(saved), "--yes")
    assert refused.returncode == 1
    assert "the site has changed since the plan was made; nothing was written" in refused.stderr
    assert f"set server proxy on {DP01}" in refused.stderr
    assert "proxy9.contoso.com" in refused.stderr
    assert len(site.writes()) == writes  # nothing written


def test_apply_takes_a_file_or_a_plan_not_both_and_not_a_stranger(site: Site) -> None:
    neither = site.run("apply", "--yes")
    stranger = site.run("apply", site.file("x.plan", '{"a": 1}'), "--yes")
    assert neither.returncode == 2
    assert "-f FILE" in neither.stderr
    assert stranger.returncode == 2
    assert "is not a cmproxy plan file" in stranger.stderr
    assert not site.writes()


def test_detailed_exitcode_is_terraforms(site: Site) -> None:
    changes = site.run("plan", "-f", MIGRATION, "--detailed-exitcode")
    assert changes.returncode == 2, changes.stderr
    r11 = site.file(
        "r11.yaml",
        "version: 1\nservers:\n  cm-ps2-sup01.contoso.com:\n    sup: {use_proxy: true}\n",
    )
    error = site.run("plan", "-f", r11, "--detailed-exitcode")
    assert error.returncode == 1
    assert "refused by rule R11" in error.stderr
    assert site.run("apply", "-f", MIGRATION, "--yes").returncode == 0
    nothing = site.run("plan", "-f", MIGRATION, "--detailed-exitcode")
    assert nothing.returncode == 0, nothing.stderr
    plain = site.run("plan", "-f", r11)
    assert plain.returncode == 2  # without the flag, a refusal stays a usage error


# -- output, logging, completion ----------------------------------------------------------------


def test_output_yaml_is_the_json_as_yaml(site: Site) -> None:
    as_yaml, as_json = site.run_many(
        ["show", "--site", "PS1", "--output", "yaml"], ["show", "--site", "PS1", "-o", "json"]
    )
    assert as_yaml.returncode == as_json.returncode == 0
    assert yaml.safe_load(as_yaml.stdout) == json.loads(as_json.stdout)
    assert {s["site"] for s in json.loads(as_json.stdout)["servers"]} == {"PS1"}


def test_verbose_logs_and_quiet_does_not(site: Site) -> None:
    loud, normal, quiet = site.run_many(
        ["show", "--site", "PS1", "-v"], ["show", "--site", "PS1"], ["show", "--site", "PS1", "-q"]
    )
    assert loud.returncode == normal.returncode == quiet.returncode == 0
    assert "INFO cmproxy.session: session to https://127.0.0.1" in loud.stderr
    assert "INFO" not in normal.stderr
    assert quiet.stderr == ""


def test_shell_completion_completes_commands_and_options(site: Site) -> None:
    def complete(words: str, index: int) -> str:
        env = {
            **site.env,
            "_CMPROXY_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(index),
        }
        return subprocess.run(
            [sys.executable, "-m", "cmproxy.cli"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        ).stdout

    assert complete("cmproxy pl", 1).split() == ["plan"]
    assert "--ca-cert" in complete("cmproxy show --ca", 2).split()
    assert "--install-completion" in site.run("--help").stdout


# -- sites ------------------------------------------------------------------------------------


def test_an_unknown_site_is_an_error_naming_the_sites(site: Site) -> None:
    result = site.run("show", "--site", "XYZ")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "--site XYZ: no such site in the hierarchy (sites: CAS, PS1, PS2, SS1)" in result.stderr


def test_a_multi_site_provider_needs_a_site_code_and_lists_them(site: Site) -> None:
    no_code = site.run("show", drop=["CMPROXY_SITE_CODE"])
    assert no_code.returncode == 2
    assert "serves 3 sites (CAS, PS1, PS2): choose one with --site-code CODE" in no_code.stderr
    one_site = site.run("show", "--site", "PS2", drop=["CMPROXY_SITE_CODE"])
    assert one_site.returncode == 0, one_site.stderr
    assert "cm-ps2-sup01.contoso.com" in one_site.stdout


def test_a_read_only_plan_needs_no_account_password(site: Site) -> None:
    result = site.run("plan", "-f", MIGRATION, drop=["CMPROXY_NEW_PROXY_PASSWORD"])
    assert result.returncode == 0, result.stderr
    assert "create account" in result.stdout
    assert "$CMPROXY_NEW_PROXY_PASSWORD is not set: `apply` needs it" in result.stdout
    assert "not-read" not in result.stdout  # the stand-in never shows
    assert not site.writes()


# -- errors in the command line's words --------------------------------------------------------


def test_errors_name_the_option_and_show_values_as_typed(site: Site) -> None:
    port, user, env_port = site.run_many(
        ["show", "--port", "99999"],
        ["show", "--username", "CONTOSO\\nobody"],
        ["show"],
    )
    assert port.returncode == 2
    assert "invalid --port (CMPROXY_PORT): must be from 1 to 65535 (got 99999)" in port.stderr
    assert user.returncode == 1
    assert "refused the credentials of 'CONTOSO\\nobody' (--auth basic)" in user.stderr
    assert "\\\\" not in user.stderr
    assert "auth=" not in user.stderr
    assert env_port.returncode == 0
    bad_env = site.run("show", env={"CMPROXY_PORT": "0"})
    assert "invalid --port (CMPROXY_PORT)" in bad_env.stderr
    certificate = site.run("show", "--auth", "certificate")
    assert certificate.returncode == 2
    assert "needs --certificate-pem and --certificate-key-pem (not set)" in certificate.stderr


def test_https_to_a_plain_http_endpoint_says_so(tmp_path: Path) -> None:
    with Emulator(seed="demo", https=False) as emu:
        env = cli_env(emu, tmp_path, auth="ntlm")
        env.update(CMPROXY_SCHEME="https")
        env.pop("CMPROXY_MESSAGE_ENCRYPTION", None)
        result = Site(emu, env, tmp_path).run("show")
    assert result.returncode == 1
    assert f"https://127.0.0.1:{emu.port}/wsman answered in plain HTTP, not TLS" in result.stderr
    assert "--scheme http" in result.stderr
    assert "not trusted" not in result.stderr
