"""Desired-state YAML: valid files resolve over a site; every error names its line."""

from __future__ import annotations

import pytest

from cmproxy import ProxySettings, SiteState
from cmproxy.desired import DesiredStateError, parse_desired

GOOD = """\
version: 1
options:
  sup_flags_on_proxy_removal: turn_off
sites:
  PS1:
    proxy: {server: proxy.contoso.com, port: 3128, account: CONTOSO\\svc-proxy}
    sup: {use_proxy: true, use_proxy_for_adr: true}
servers:
  cm-scp01.contoso.com:
    proxy: {server: dmz-proxy.contoso.com, port: 8080}
accounts:
  - name: CONTOSO\\svc-proxy
    password_env: TEST_CMPROXY_PW
"""


def test_good_file_resolves_over_the_site(
    state: SiteState, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_CMPROXY_PW", "pw-from-env")
    spec = parse_desired(GOOD)
    desired = spec.resolve(state)
    by_server = {r.server: r.proxy for r in desired.proxies}
    # Site default on every PS1 server except cloud DPs (R5), override for the SCP server.
    assert by_server["cm-scp01.contoso.com"] == ProxySettings(
        server="dmz-proxy.contoso.com", port=8080
    )
    assert by_server["cm-sup01.contoso.com"].server == "proxy.contoso.com"
    assert "cdp01.cloudapp.net" not in by_server
    assert "cm-cas.contoso.com" not in by_server
    assert {r.server for r in desired.sup_flags} == {
        "cm-ps1.contoso.com",
        "cm-sup01.contoso.com",
        "cm-scp01.contoso.com",
        "cm-sup-up.contoso.com",
    }
    (account,) = desired.accounts
    assert account.password is not None and account.password.reveal() == "pw-from-env"
    assert spec.options.sup_flags_on_proxy_removal == "turn_off"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("sites:\n  PS1:\n    proxy: {server: p, port: 70000}\n", 3, "proxy.port"),
        ("sites:\n  PS1:\n    proxy: {server: 'http://p'}\n", 3, "URL"),
        ("sites:\n  PS1:\n    proxy: {server: p, account: svc@contoso.com}\n", 3, "UPN"),
        ("servers:\n  x:\n    proxy:\n      server: p\n      portt: 3\n", 5, "unknown key"),
        ("accounts:\n  - name: A\\b\n    password: hunter2\n", 3, "never go in the file"),
        ("accounts:\n  - name: A\\b\n    password_env: NOPE_NOT_SET_X\n", 3, "not set"),
        ("sites: [1\n", 2, "expected"),
        ("sites:\n  PS:\n    proxy: none\n", 2, "three letters"),
        ("version: 2\n", 1, "must be 1"),
        ("sites:\n  PS1:\n    sup: {use_proxy: 'yes please'}\n", 3, "true or false"),
        ("options:\n  sup_flags_on_proxy_removal: maybe\n", 2, "R11"),
    ],
)
def test_errors_point_at_the_line(text: str, line: int, needle: str) -> None:
    with pytest.raises(DesiredStateError) as err:
        parse_desired(text, source="desired.yaml")
    assert err.value.line == line, str(err.value)
    assert needle in str(err.value)
    assert str(err.value).startswith(f"desired.yaml:{line}:")
    assert "hunter2" not in str(err.value)


def test_unknown_site_or_server_is_refused_on_resolve(state: SiteState) -> None:
    with pytest.raises(ValueError, match="XYZ"):
        parse_desired("sites:\n  XYZ:\n    proxy: none\n").resolve(state)
    with pytest.raises(ValueError, match="nowhere"):
        parse_desired("servers:\n  nowhere.contoso.com:\n    proxy: none\n").resolve(state)


def test_prompt_is_used_when_asked() -> None:
    spec = parse_desired("accounts:\n  - name: A\\b\n    prompt: true\n", prompt=lambda _q: "typed")
    assert spec.accounts[0].password is not None
    with pytest.raises(DesiredStateError, match="no prompt"):
        parse_desired("accounts:\n  - name: A\\b\n    prompt: true\n")
