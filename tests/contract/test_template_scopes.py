"""Each template, run in a local scope as the SDK runs it (PSRP UseLocalScope), is indifferent
to what the runspace's global scope already holds: a template never relies on a variable being
unset, and a same-named variable left in the global scope (even type-constrained) neither
changes what it reads nor constrains what it assigns (about_Scopes: an assignment creates the
variable in the local scope).

The emulator's engine is the PowerShell here (no network): the same pipelines on a clean
runspace and on one whose global scope holds an [int]-constrained variable for every name the
template uses must give the same output and the same writes.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from cmproxy.emulator.engine import SiteEngine, SiteRunspace
from cmproxy.emulator.engine.values import CommandSpec, InvocationResult, PSObj, SecureValue
from cmproxy.emulator.seeds import apply_seed
from cmproxy.emulator.state import SiteState
from cmproxy.templates import load_prelude, load_template

DP = "cm-ps1-dp01.contoso.com"
SUP = "cm-ps1-sup01.contoso.com"
_BATCH = {
    "Kind": ["Proxy", "Sup"],
    "SiteSystemServerName": [DP, SUP],
    "EnableProxy": [True, False],
    "ProxyServerName": ["proxy-c.contoso.com", ""],
    "ProxyServerPort": [8084, 0],
    "ProxyAccessAccountName": ["", ""],
    "UseProxy": [False, True],
    "UseProxyForAutoDeploymentRule": [False, True],
}
#: (template, parameters) as the SDK binds them.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("Get-SiteState", {}),
    ("Get-SiteState", {"SiteSystemServerName": [DP, SUP]}),
    (
        "Set-ServerProxy",
        {
            "SiteCode": "PS1",
            "SiteSystemServerName": DP,
            "EnableProxy": True,
            "ProxyServerName": "proxy-c.contoso.com",
            "ProxyServerPort": 8084,
        },
    ),
    (
        "Set-SupProxyFlags",
        {
            "SiteCode": "PS1",
            "SiteSystemServerName": SUP,
            "UseProxy": True,
            "UseProxyForAutoDeploymentRule": True,
        },
    ),
    ("Set-ProxyBatch", {"SiteCode": "PS1", "Items": json.dumps(_BATCH)}),
    ("Set-ProxyBatch", {"SiteCode": "PS1", "Items": json.dumps(_BATCH), "ReadBackBySite": True}),
    (
        "New-ProxyAccount",
        {"SiteCode": "PS1", "UserName": "CONTOSO\\svc-x", "Password": SecureValue("p@ss")},
    ),
]
_AUTOMATIC = {"_", "true", "false", "null", "input", "psitem", "args", "matches", "env"}


def _names(text: str) -> list[str]:
    """Every variable name the template (or the session set-up) uses."""
    found = {m.lower() for m in re.findall(r"\$(?:script:|global:)?(\w+)", text)}
    return sorted(found - _AUTOMATIC - {"erroractionpreference"})


def _plain(value: Any) -> Any:
    if isinstance(value, PSObj):
        return {k: _plain(v) for k, v in value.properties.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _run(template: str, params: dict[str, Any], polluted: list[str]) -> tuple[Any, list[Any]]:
    state = SiteState()
    apply_seed(state, "demo")
    try:
        engine = SiteEngine(state, sleep=lambda _s: None)
        rs = engine.open_runspace("CONTOSO\\admin")
        if polluted:
            # Left in the global scope by earlier pipelines that ran dot-sourced.
            seed = "\n".join(f"[int]${name} = 7" for name in polluted)
            assert not _errors(rs.run_script(seed)), seed
        setup = _invoke(rs, load_template("Initialize-CMSession"), {"SiteCode": "PS1"})
        assert not _errors(setup), _errors(setup)
        res = _invoke(rs, load_template(template), params)
        written = [(c.command, c.params) for c in state.call_log() if c.wrote]
        return (_plain(res.output), _errors(res)), written
    finally:
        state.close()


def _invoke(rs: SiteRunspace, text: str, params: dict[str, Any]) -> InvocationResult:
    """As the PSRP transport sends a step: the prelude dot-sourced, then the template."""
    prelude = CommandSpec(name=load_prelude(), is_script=True, use_local_scope=False)
    spec = CommandSpec(
        name=text, is_script=True, parameters=tuple(params.items()), use_local_scope=True
    )
    return rs.invoke([prelude, spec])


def _errors(res: InvocationResult) -> list[tuple[str, str]]:
    records = ([res.terminating] if res.terminating else []) + list(res.errors)
    return [(r.fully_qualified_error_id, r.message) for r in records]


@pytest.mark.parametrize(
    ("template", "params"), CASES, ids=[f"{t}-{i}" for i, (t, _) in enumerate(CASES)]
)
def test_template_ignores_what_the_global_scope_holds(
    template: str, params: dict[str, Any]
) -> None:
    names = _names(load_template(template) + load_template("Initialize-CMSession") + load_prelude())
    clean = _run(template, params, [])
    assert not clean[0][1], clean[0][1]
    assert clean[0][0], "the template wrote nothing: the comparison would prove nothing"
    assert _run(template, params, names) == clean
