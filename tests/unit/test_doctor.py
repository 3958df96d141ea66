"""The doctor's pure parts: the shape checker (where each proxy setting lives, configmgr-cmdlets.md
§2.2-§2.4), the connection facts (never a secret) and the report's verdict."""

from __future__ import annotations

import json
import re
from typing import Any

from cmproxy import ConnectionInfo
from cmproxy.doctor import Check, DoctorReport, connection_facts
from cmproxy.doctor_facts import (
    EXPECTED_SHAPES,
    SITE_SYSTEM,
    SUP,
    WCM,
    check_shapes,
)
from cmproxy.templates import load_prelude, load_template

PASSWORD = "S3cret-Doctor-Pw!"


def _prop(name: str, value: int = 0, value1: str = "", value2: str = "") -> dict[str, Any]:
    return {"PropertyName": name, "Value": value, "Value1": value1, "Value2": value2}


def _site_system(**drop_or_replace: dict[str, Any] | None) -> list[dict[str, Any]]:
    """An `SMS Site System` object's Props as the reference (§2.2) describes them."""
    props = {
        "UseProxy": _prop("UseProxy", 1),
        "ProxyName": _prop("ProxyName", value2="proxy.contoso.com"),
        "ProxyServerPort": _prop("ProxyServerPort", 8080),
        "ProxyUserName": _prop("ProxyUserName", value2="CONTOSO\\svc-proxy"),
        "AnonymousProxyAccess": _prop("AnonymousProxyAccess", 0),
        "ForestFQDN": _prop("ForestFQDN", value1="contoso.com"),
    }
    for name, replacement in drop_or_replace.items():
        if replacement is None:
            del props[name]
        else:
            props[name] = replacement
    return list(props.values())


SUP_PROPS = [_prop("UseProxy", 1), _prop("UseProxyForADR", 0)]
WCM_PROPS = [_prop("DefaultUseParentWSUS", 1), _prop("ParentWSUS", value2="cm-sup01.contoso.com")]
FOUND = {SITE_SYSTEM: True, SUP: True, WCM: True}


def _by_property(shapes: list[Any], obj: str = SITE_SYSTEM) -> dict[str, Any]:
    return {s.expected.property: s for s in shapes if s.expected.object == obj}


def test_the_reference_shape_passes_every_check() -> None:
    shapes = check_shapes({SITE_SYSTEM: _site_system(), SUP: SUP_PROPS, WCM: WCM_PROPS}, FOUND)
    assert [s.status for s in shapes] == ["ok"] * len(EXPECTED_SHAPES)
    site = _by_property(shapes)
    assert site["ProxyName"].found_in == "Value2"
    assert site["ProxyName"].value == "proxy.contoso.com"
    assert site["ProxyServerPort"].value == 8080
    # 0 is a value of a numeric field, not a missing one.
    assert site["AnonymousProxyAccess"].found_in == "Value"
    assert _by_property(shapes, SUP)["UseProxyForADR"].status == "ok"


def test_a_missing_property_fails_and_names_it() -> None:
    shapes = check_shapes(
        {SITE_SYSTEM: _site_system(ProxyUserName=None), SUP: SUP_PROPS, WCM: WCM_PROPS}, FOUND
    )
    failed = [s for s in shapes if s.status == "fail"]
    assert [s.expected.property for s in failed] == ["ProxyUserName"]
    assert "MISSING" in failed[0].detail
    assert "'ProxyUserName'" in failed[0].detail
    assert failed[0].to_dict()["source"] == "configmgr-cmdlets.md §2.2"


def test_a_value_in_another_field_fails() -> None:
    moved = _prop("ProxyName", value1="proxy.contoso.com")
    shapes = check_shapes({SITE_SYSTEM: _site_system(ProxyName=moved)}, {SITE_SYSTEM: True})
    name = _by_property(shapes)["ProxyName"]
    assert name.status == "fail"
    assert name.found_in == "Value1"
    assert "cmproxy reads Value2" in name.detail


def test_a_numeric_setting_without_a_value_field_fails() -> None:
    broken = {"PropertyName": "ProxyServerPort", "Value": None, "Value1": "", "Value2": "8080"}
    shapes = check_shapes({SITE_SYSTEM: _site_system(ProxyServerPort=broken)}, {SITE_SYSTEM: True})
    port = _by_property(shapes)["ProxyServerPort"]
    assert port.status == "fail"
    assert port.found_in == "Value2"


def test_a_name_that_differs_in_case_is_missing_with_a_hint() -> None:
    other_case = _prop("ProxyUsername", value2="CONTOSO\\svc-proxy")
    props = [*_site_system(ProxyUserName=None), other_case]
    shapes = check_shapes({SITE_SYSTEM: props}, {SITE_SYSTEM: True})
    account = _by_property(shapes)["ProxyUserName"]
    assert account.status == "fail"
    assert "'ProxyUsername' exists" in account.detail


def test_an_empty_string_setting_is_not_set_not_missing() -> None:
    shapes = check_shapes(
        {SITE_SYSTEM: _site_system(ProxyUserName=_prop("ProxyUserName"))}, {SITE_SYSTEM: True}
    )
    account = _by_property(shapes)["ProxyUserName"]
    assert account.status == "ok"
    assert account.found_in == ""


def test_objects_not_read_are_skipped_not_failed() -> None:
    shapes = check_shapes({SITE_SYSTEM: _site_system()}, {SITE_SYSTEM: True, SUP: False})
    assert {s.status for s in shapes if s.expected.object != SITE_SYSTEM} == {"skipped"}


def test_connection_facts_hold_no_secret() -> None:
    info = ConnectionInfo(
        server="cm01.contoso.com",
        username="CONTOSO\\cmadmin",
        password=PASSWORD,
        proxy=f"http://jump:{PASSWORD}@proxy.contoso.com:3128",
        ca_cert="/etc/lab-ca.pem",
    )
    facts = connection_facts(info)
    text = json.dumps(facts)
    assert PASSWORD not in text
    assert facts["http_proxy"] == "http://proxy.contoso.com:3128"
    assert facts["password_set"] is True
    assert facts["tls"] is True
    assert facts["cert_validation"] is True
    assert facts["endpoint"] == "https://cm01.contoso.com:5986/wsman"


def test_the_report_fails_only_on_a_failed_check() -> None:
    def report(*checks: Check) -> DoctorReport:
        return DoctorReport({}, {}, {}, (), (), (), (), checks)

    assert report(Check("a", "ok", ""), Check("b", "warn", ""), Check("c", "skipped", "")).ok
    failing = report(Check("a", "ok", ""), Check("shape", "fail", "MISSING"))
    assert not failing.ok
    assert [c.name for c in failing.failed()] == ["shape"]
    assert failing.to_dict()["ok"] is False
    assert "SOME CHECKS FAILED" in failing.render()


def test_the_expected_shapes_are_what_the_read_template_reads() -> None:
    """The doctor checks the fields Get-SiteState.ps1 really reads (its roles through the
    prelude's ConvertTo-CMProxyRow): change one, change both."""
    text = load_template("Get-SiteState") + load_prelude()
    read = set(re.findall(r"\$props\['([^']+)'\]\.(Value\d?)\b", text))
    assert {(e.property, e.field) for e in EXPECTED_SHAPES} <= read
