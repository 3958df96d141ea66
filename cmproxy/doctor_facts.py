"""The read-only facts `cmproxy doctor` gathers with `ps_templates/Get-DoctorFacts.ps1`, and
the shape checker: where each proxy setting lives on the live objects (configmgr-cmdlets.md
§2.2-§2.4) compared with where cmproxy reads it.

The template projects every embedded property of the objects into flat records (nested
`Props` do not survive remoting, §1.2); `check_shapes` is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from cmproxy.session import Session

__all__ = [
    "DOCTOR_TEMPLATE",
    "DOCTOR_TEMPLATE_PARAMETERS",
    "EXPECTED_SHAPES",
    "FIELDS",
    "SITE_SYSTEM",
    "SUP",
    "WCM",
    "ExpectedField",
    "Facts",
    "FieldShape",
    "Status",
    "check_shapes",
    "read_facts",
]

DOCTOR_TEMPLATE = "Get-DoctorFacts"
#: Parameter names the Python side binds (checked against the template's param() block).
DOCTOR_TEMPLATE_PARAMETERS: dict[str, frozenset[str]] = {
    DOCTOR_TEMPLATE: frozenset({"SiteCode", "ProxyServerName", "SupServerName"}),
}

Status = Literal["ok", "warn", "fail", "skipped"]
FIELDS = ("Value", "Value1", "Value2")

SITE_SYSTEM = "SMS Site System"
SUP = "SMS Software Update Point"
WCM = "SMS_WSUS_CONFIGURATION_MANAGER"


@attrs.frozen
class ExpectedField:
    """Where cmproxy reads one setting: object (role or component), property, field."""

    setting: str
    object: str
    property: str
    field: Literal["Value", "Value1", "Value2"]
    source: str


#: What `ps_templates/Get-SiteState.ps1` reads, with the reference section that says so.
EXPECTED_SHAPES: tuple[ExpectedField, ...] = (
    ExpectedField("server proxy on", SITE_SYSTEM, "UseProxy", "Value", "§2.2"),
    ExpectedField("server proxy host", SITE_SYSTEM, "ProxyName", "Value2", "§2.2"),
    ExpectedField("server proxy port", SITE_SYSTEM, "ProxyServerPort", "Value", "§2.2"),
    ExpectedField("server proxy account", SITE_SYSTEM, "ProxyUserName", "Value2", "§2.2"),
    ExpectedField(
        "server proxy as System account", SITE_SYSTEM, "AnonymousProxyAccess", "Value", "§2.2"
    ),
    ExpectedField("SUP sync uses the proxy", SUP, "UseProxy", "Value", "§2.3"),
    ExpectedField("SUP ADR downloads use the proxy", SUP, "UseProxyForADR", "Value", "§2.3"),
    ExpectedField("SUP sync source", WCM, "DefaultUseParentWSUS", "Value", "§2.4"),
    ExpectedField("SUP upstream server", WCM, "ParentWSUS", "Value2", "§2.4"),
)


@attrs.frozen
class FieldShape:
    """How one expected setting looks on the live object."""

    expected: ExpectedField
    status: Status
    #: The field that holds a value ("" when the property is missing or every field is empty).
    found_in: str
    value: Any
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "setting": self.expected.setting,
            "object": self.expected.object,
            "list": "Props",
            "property": self.expected.property,
            "expected_field": self.expected.field,
            "found_in": self.found_in,
            "value": self.value,
            "status": self.status,
            "detail": self.detail,
            "source": "configmgr-cmdlets.md " + self.expected.source,
        }


# -- shapes -------------------------------------------------------------------------------------


def _filled(prop: Mapping[str, Any], field: str) -> bool:
    value = prop.get(field)
    if field == "Value":
        return value not in (None, "", 0, "0")
    return value not in (None, "")


def check_shapes(
    props: Mapping[str, Sequence[Mapping[str, Any]]],
    found: Mapping[str, bool],
    expected: Iterable[ExpectedField] = EXPECTED_SHAPES,
) -> list[FieldShape]:
    """Compare the live embedded properties with where cmproxy reads each setting. Pure.

    `props`: per object (role or component name), its `Props` records (`PropertyName`,
    `Value`, `Value1`, `Value2`) as the facts template returns them. `found`: per object,
    whether it was read at all. A missing property, or a value sitting in another field than
    the one cmproxy reads, fails; an object not read is skipped.
    """
    out: list[FieldShape] = []
    for e in expected:
        if not found.get(e.object):
            out.append(FieldShape(e, "skipped", "", None, "object not read on this site"))
            continue
        by_name = {str(p.get("PropertyName")): p for p in props.get(e.object, ())}
        prop = by_name.get(e.property)
        if prop is None:
            near = [n for n in by_name if n.lower() == e.property.lower()]
            hint = (
                f"; a property named {near[0]!r} exists (names are case-sensitive)" if near else ""
            )
            out.append(
                FieldShape(
                    e,
                    "fail",
                    "",
                    None,
                    f"MISSING: the object has no embedded property {e.property!r}{hint}; "
                    "cmproxy would read this setting as not set",
                )
            )
            continue
        filled = [f for f in FIELDS if _filled(prop, f)]
        if e.field == "Value" and prop.get("Value") is None:
            out.append(
                FieldShape(
                    e, "fail", ",".join(filled), None, "the property has no numeric Value field"
                )
            )
        elif e.field in filled:
            out.append(FieldShape(e, "ok", e.field, prop.get(e.field), ""))
        elif not filled:
            # 0 is a value of a numeric field; an empty string field is simply not set.
            numeric = e.field == "Value"
            out.append(
                FieldShape(
                    e,
                    "ok",
                    e.field if numeric else "",
                    prop.get(e.field),
                    "" if numeric else "(empty on this object: not set)",
                )
            )
        else:
            out.append(
                FieldShape(
                    e,
                    "fail",
                    ",".join(filled),
                    prop.get(filled[0]),
                    f"the value is in {', '.join(filled)}, but cmproxy reads {e.field}",
                )
            )
    return out


# -- the facts template -------------------------------------------------------------------------


@attrs.frozen
class Facts:
    host: dict[str, Any]
    drives: tuple[dict[str, Any], ...]
    objects: tuple[dict[str, Any], ...]
    props: dict[str, list[dict[str, Any]]]
    errors: tuple[str, ...]


def read_facts(
    session: Session,
    site_code: str | None,
    proxy_server: str | None,
    sup_server: str | None,
) -> Facts:
    result = session.run(
        DOCTOR_TEMPLATE,
        SiteCode=site_code,
        ProxyServerName=proxy_server,
        SupServerName=sup_server,
    )
    host: dict[str, Any] = {}
    drives: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    props: dict[str, list[dict[str, Any]]] = {}
    errors: list[str] = []
    for r in result.records():
        kind = r.get("Kind")
        if kind == "Host":
            host = {k: v for k, v in r.items() if k != "Kind"}
        elif kind == "Drive":
            drives.append({k: v for k, v in r.items() if k != "Kind"})
        elif kind == "Object":
            objects.append(
                {
                    "object": str(r.get("Object")),
                    "read": str(r.get("Read")),
                    "count": int(r.get("Count") or 0),
                    "reason": str(r.get("Reason") or ""),
                    "properties": [],
                    "property_lists": [],
                }
            )
        elif kind in ("Prop", "PropList"):
            owner = str(r.get("Object"))
            obj = next((o for o in reversed(objects) if o["object"] == owner), None)
            if kind == "Prop":
                props.setdefault(owner, []).append(dict(r))
                if obj is not None:
                    obj["properties"].append(str(r.get("PropertyName")))
            elif obj is not None:
                obj["property_lists"].append(str(r.get("PropertyName")))
        elif kind == "Error":
            errors.append(f"{r.get('Read')}: {r.get('Reason')}")
    return Facts(host, tuple(drives), tuple(objects), props, tuple(errors))
