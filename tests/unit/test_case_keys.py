"""Server names compare case-insensitively everywhere (issue 15, point 4; R1 in proxy-rules.md):
`cm-scp01.contoso.com` and `CM-SCP01.contoso.com` are one server, so two different proxies
for them in one desired state break R1, whichever path the desired state takes."""

from __future__ import annotations

import pytest

from cmproxy import DesiredState, ProxyRequest, ProxySettings, RuleViolation, SiteState, plan
from cmproxy.bulk import plan_bulk
from cmproxy.desired import parse_desired

A = ProxySettings(server="proxy-a.contoso.com", port=8080)
B = ProxySettings(server="proxy-b.contoso.com", port=3128)

TWO_CASES = """\
version: 1
servers:
  cm-scp01.contoso.com:
    proxy: {server: proxy-a.contoso.com, port: 8080}
  CM-SCP01.contoso.com:
    proxy: {server: proxy-b.contoso.com, port: 3128}
"""


def test_yaml_overrides_differing_only_by_case_with_different_proxies_break_r1(
    state: SiteState,
) -> None:
    spec = parse_desired(TWO_CASES)
    with pytest.raises(RuleViolation) as err:
        spec.resolve(state)
    assert err.value.rule == "R1"
    assert "proxy-a.contoso.com" in str(err.value) and "proxy-b.contoso.com" in str(err.value)


def test_yaml_overrides_differing_only_by_case_with_the_same_proxy_are_one_request(
    state: SiteState,
) -> None:
    same = TWO_CASES.replace("proxy-b.contoso.com, port: 3128", "proxy-a.contoso.com, port: 8080")
    desired = parse_desired(same).resolve(state)
    assert [r.proxy for r in desired.proxies if r.server.lower() == "cm-scp01.contoso.com"] == [A]


def test_planner_refuses_two_cases_of_one_server_with_different_proxies(state: SiteState) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest("cm-scp01.contoso.com", A), ProxyRequest("CM-SCP01.CONTOSO.COM", B)]
    )
    with pytest.raises(RuleViolation) as err:
        plan(state, desired)
    assert err.value.rule == "R1"


class _Reader:
    endpoint = "https://cm-ps1.contoso.com:5986/wsman"

    def __init__(self, state: SiteState) -> None:
        self.state = state

    def read_state(self, servers: object = None, site_codes: object = None) -> SiteState:
        return self.state

    def apply(self, change: object) -> object:  # pragma: no cover - planning only
        raise AssertionError("plan_bulk never writes")


def test_bulk_plan_refuses_two_cases_of_one_server_with_different_proxies(
    state: SiteState,
) -> None:
    desired = DesiredState(
        proxies=[ProxyRequest("CM-SCP01.contoso.com", A), ProxyRequest("cm-scp01.contoso.com", B)]
    )
    with pytest.raises(RuleViolation) as err:
        plan_bulk([_Reader(state)], desired)
    assert err.value.rule == "R1"
    with pytest.raises(RuleViolation):
        plan_bulk([_Reader(state)], parse_desired(TWO_CASES))
