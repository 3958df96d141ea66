"""`cmproxy.doctor(session)`: the self-check an administrator runs against a live site before
trusting cmproxy with it, and attaches to a bug report.

Read-only by default. It reports how the session was made (transport, auth, TLS, the
bootstrap's own answer, field by field), the PowerShell host, the CMSite drives, the WinRM
quotas where the account may read them, and — the point of it — the *shape* of the objects
cmproxy reads proxies from: which embedded property of which object, and which of its fields
(`Value`, `Value1`, `Value2`), holds each setting (configmgr-cmdlets.md §2.2-§2.4). An
expected property that is missing, or whose value sits in another field, is a failed check:
a site whose shapes differ from the reference must say so before cmproxy writes to it.

`write_test=SERVER` adds one reversible write: the server's own proxy (and SUP options) are
written back as they are, under a journal claim, read back, re-read until visible, and the
end state compared with the start, raw embedded properties included (see `_write_test`).

Nothing here ever holds a password: the report is built from `ConnectionInfo` fields that are
not secret and from what the site returns (embedded properties hold no passwords).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from cmproxy._exceptions import CMProxyError
from cmproxy.invocation import AccountLookup, Invocation
from cmproxy.journal import Journal, JournalEntry
from cmproxy.model import SiteState, SiteSystemServer, SupFlags
from cmproxy.plan import Change, ChangeKind, FieldChange
from cmproxy.roles import SoftwareUpdatePoint
from cmproxy.transaction import RESTORE_OPTIONS, ServerSnapshot, restore_desired, run_transaction

if TYPE_CHECKING:
    from cmproxy.connection import ConnectionInfo
    from cmproxy.session import Session

__all__ = [
    "DOCTOR_TEMPLATE",
    "DOCTOR_TEMPLATE_PARAMETERS",
    "EXPECTED_SHAPES",
    "Check",
    "DoctorReport",
    "ExpectedField",
    "FieldShape",
    "WriteTest",
    "check_shapes",
    "doctor",
    "quota_paths",
]

DOCTOR_TEMPLATE = "Get-DoctorFacts"
#: Parameter names the Python side binds (checked against the template's param() block).
DOCTOR_TEMPLATE_PARAMETERS: dict[str, frozenset[str]] = {
    DOCTOR_TEMPLATE: frozenset({"SiteCode", "ProxyServerName", "SupServerName", "QuotaPath"}),
}

Status = Literal["ok", "warn", "fail", "skipped"]
_FIELDS = ("Value", "Value1", "Value2")

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
class Check:
    """One verdict of the report: what was checked, how it went, and the evidence."""

    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


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


@attrs.frozen
class WriteTest:
    """The reversible write on one server and what it showed."""

    server: str
    status: Status
    detail: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    writes: tuple[str, ...] = ()
    transaction_id: str | None = None
    #: Seconds from the write's answer to a separate read that showed the written values.
    read_after_write_seconds: float | None = None
    reads_until_visible: int = 0
    #: The end state equals the start (model snapshot and raw embedded properties).
    unchanged: bool | None = None
    #: What the delay means: the values written equal the old ones, so a separate read shows
    #: them at once; it bounds how soon such a read answers, not how long a real change takes.
    note: str = (
        "the values written equal the old ones: the read-after-write delay bounds how soon a "
        "separate read answers, not how long a real change takes to show"
    )

    def to_dict(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "status": self.status,
            "detail": self.detail,
            "before": self.before,
            "after": self.after,
            "writes": list(self.writes),
            "transaction_id": self.transaction_id,
            "read_after_write_seconds": self.read_after_write_seconds,
            "reads_until_visible": self.reads_until_visible,
            "site_as_it_was": self.unchanged,
            "note": self.note,
        }


@attrs.frozen
class DoctorReport:
    """Everything `doctor` found, as data; `render()` for people, `to_dict()` for JSON."""

    connection: dict[str, Any]
    bootstrap: dict[str, Any]
    host: dict[str, Any]
    drives: tuple[dict[str, Any], ...]
    objects: tuple[dict[str, Any], ...]
    shapes: tuple[FieldShape, ...]
    quotas: tuple[dict[str, Any], ...]
    checks: tuple[Check, ...]
    write_test: WriteTest | None = None

    @property
    def ok(self) -> bool:
        """No check failed (warnings and skipped checks do not fail the report)."""
        return all(c.status != "fail" for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "connection": dict(self.connection),
            "bootstrap": dict(self.bootstrap),
            "host": dict(self.host),
            "drives": [dict(d) for d in self.drives],
            "objects": [dict(o) for o in self.objects],
            "shapes": [s.to_dict() for s in self.shapes],
            "quotas": [dict(q) for q in self.quotas],
            "checks": [c.to_dict() for c in self.checks],
            "write_test": self.write_test.to_dict() if self.write_test else None,
        }

    def render(self) -> str:
        """Plain text for a terminal or a bug report."""
        lines = ["cmproxy doctor: " + ("all checks passed" if self.ok else "SOME CHECKS FAILED")]
        lines.append("")
        lines.append("Connection")
        lines += [f"  {k}: {_show(v)}" for k, v in self.connection.items()]
        lines.append("Bootstrap (Initialize-CMSession answer)")
        lines += [f"  {k}: {_show(v)}" for k, v in self.bootstrap.items()]
        lines.append("PowerShell host")
        lines += [f"  {k}: {_show(v)}" for k, v in self.host.items()]
        lines.append("CMSite drives")
        lines += [
            f"  {d.get('Name')}: root {d.get('Root')} ({d.get('Provider')})" for d in self.drives
        ]
        lines.append("Objects read")
        for o in self.objects:
            why = f" — {o['reason']}" if o.get("reason") else ""
            lines.append(f"  {o['object']}: {o['count']} found by `{o['read']}`{why}")
        lines.append("Proxy settings: where they live")
        for s in self.shapes:
            e = s.expected
            lines.append(
                f"  [{s.status}] {e.setting}: {e.object} Props[{e.property}].{e.field}"
                f" (found in {s.found_in or '-'}) {s.detail}".rstrip()
            )
        lines.append("WinRM quotas")
        reasons = list(dict.fromkeys(q["reason"] for q in self.quotas if not q["readable"]))
        for q in self.quotas:
            shown = (
                q["value"] if q["readable"] else f"not readable [{reasons.index(q['reason']) + 1}]"
            )
            lines.append(f"  {q['path']}: {shown}")
        lines += [f"  [{n}] {reason}" for n, reason in enumerate(reasons, 1)]
        if self.write_test is not None:
            w = self.write_test
            lines.append(f"Write test on {w.server}: {w.status}")
            lines.append(f"  {w.detail}")
            lines += [f"  wrote: {x}" for x in w.writes]
            if w.read_after_write_seconds is not None:
                lines.append(
                    f"  read after write: {w.read_after_write_seconds:.3f}s "
                    f"({w.reads_until_visible} read(s)); {w.note}"
                )
            if w.unchanged is not None:
                lines.append(f"  site as it was: {'yes' if w.unchanged else 'NO'}")
        lines.append("Checks")
        lines += [f"  [{c.status}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _show(value: Any) -> str:
    return "" if value is None else str(value)


# -- connection ---------------------------------------------------------------------------------


def _proxy_url(url: str | None) -> str | None:
    """An HTTP proxy URL without any user:password part."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}" if parts.scheme else host + port


def connection_facts(info: ConnectionInfo) -> dict[str, Any]:
    """What the connection uses; never the password or a key (only whether one is set)."""
    return {
        "endpoint": info.endpoint,
        "transport": info.transport,
        "auth": info.auth,
        "username": info.username,
        "password_set": info.password is not None,
        "tls": info.scheme == "https",
        "cert_validation": info.cert_validation if info.scheme == "https" else None,
        "ca_cert": info.ca_cert,
        "message_encryption": info.message_encryption,
        "encrypted": info.encrypts,
        "configuration_name": info.configuration_name,
        "http_proxy": _proxy_url(info.proxy),
        "ignore_proxy": info.ignore_proxy,
        "connection_timeout": info.connection_timeout,
        "read_timeout": info.read_timeout,
        "operation_timeout": info.operation_timeout,
        "module_path_setting": info.module_path,
        "provider_machine_name": info.provider_machine_name,
    }


def _connection_checks(info: ConnectionInfo) -> list[Check]:
    if info.scheme == "https" and info.cert_validation:
        how = "a CA bundle" if info.ca_cert else "the system trust store"
        return [Check("transport security", "ok", f"TLS, certificate verified against {how}")]
    if info.scheme == "https":
        return [
            Check(
                "transport security",
                "warn",
                "TLS without certificate verification: anyone in the path can pose as the server",
            )
        ]
    if info.encrypts:
        return [
            Check(
                "transport security",
                "warn",
                f"no TLS; WinRM messages are encrypted by {info.auth} (message_encryption="
                f"{info.message_encryption}), the HTTP headers are not",
            )
        ]
    return [Check("transport security", "warn", "no TLS and no message encryption")]


# -- bootstrap, host, drives --------------------------------------------------------------------

#: `Set-CMSiteSystemServer` proxy properties were fixed in module 1910 (configmgr-cmdlets.md
#: §3.5, release notes 1910).
MIN_MODULE = (5, 1910)


def _version(text: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(p) for p in text.strip().split("."))
    except ValueError:
        return None


def _bootstrap_checks(boot: Mapping[str, Any], site_code: str | None) -> list[Check]:
    checks = [Check("site code", "ok" if site_code else "fail", site_code or "unknown")]
    text = str(boot.get("ModuleVersion") or "")
    version = _version(text) if text else None
    if version is None:
        checks.append(
            Check("ConfigurationManager module", "warn", f"version not readable ({text!r})")
        )
    elif version[:2] < MIN_MODULE:
        checks.append(
            Check(
                "ConfigurationManager module",
                "warn",
                f"{text}: older than 5.1910, whose Set-CMSiteSystemServer fixed a "
                "proxy-related properties issue (release notes 1910)",
            )
        )
    else:
        checks.append(Check("ConfigurationManager module", "ok", text))
    return checks


def _host_checks(host: Mapping[str, Any]) -> list[Check]:
    version, edition = str(host.get("PSVersion") or ""), str(host.get("PSEdition") or "")
    if version.startswith("5.1") and edition == "Desktop":
        return [Check("PowerShell", "ok", f"Windows PowerShell {version} ({edition})")]
    return [
        Check(
            "PowerShell",
            "warn",
            f"{version or 'unknown'} ({edition or 'unknown edition'}): cmproxy's templates are "
            "written for Windows PowerShell 5.1 Desktop, the module's supported host "
            "(configmgr-cmdlets.md §1.1)",
        )
    ]


def _drive_checks(drives: Sequence[Mapping[str, Any]], site_code: str | None) -> list[Check]:
    names = [str(d.get("Name") or "") for d in drives]
    if site_code and site_code.upper() in (n.upper() for n in names):
        return [Check("site drive", "ok", f"{site_code}: among the CMSite drives {names}")]
    return [
        Check(
            "site drive",
            "fail",
            f"no CMSite drive named {site_code!r} in this session (drives: {names or 'none'})",
        )
    ]


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
        filled = [f for f in _FIELDS if _filled(prop, f)]
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


# -- choosing what to inspect -------------------------------------------------------------------


def _pick_servers(state: SiteState | None, site_code: str | None) -> tuple[str | None, str | None]:
    """A server of the session's site with a proxy (one with an account first), and a SUP
    (one with its options on first)."""
    if state is None:
        return None, None
    servers = [s for s in state.servers if site_code is None or s.site_code == site_code]
    with_proxy = sorted(
        (s for s in servers if s.proxy.enabled),
        key=lambda s: (s.proxy.account is None, s.name),
    )
    sups = sorted(
        (s for s in servers if isinstance(s.role(SoftwareUpdatePoint), SoftwareUpdatePoint)),
        key=lambda s: (not _flags(s).any, not s.proxy.enabled, s.name),
    )
    proxy = with_proxy[0].name if with_proxy else (servers[0].name if servers else None)
    return proxy, sups[0].name if sups else None


def _flags(server: SiteSystemServer) -> SupFlags:
    sup = server.role(SoftwareUpdatePoint)
    assert isinstance(sup, SoftwareUpdatePoint)
    return SupFlags(sup.use_proxy, sup.use_proxy_for_adr)


# -- quotas -------------------------------------------------------------------------------------


def quota_paths(configuration_name: str = "Microsoft.PowerShell") -> tuple[str, ...]:
    r"""WinRM quotas that bound a session's shells and commands, as WSMan: provider paths.

    The service-wide ones (`WSMan:\localhost\Shell\…`) and the session configuration's plugin
    quotas (`WSMan:\localhost\Plugin\<configuration>\Quotas\…`); reading them needs an
    administrator on the server ("Configuring WSMAN Limits", PowerShell team blog, 2010;
    learn.microsoft.com/windows/win32/winrm/quotas).
    """
    plugin = f"WSMan:\\localhost\\Plugin\\{configuration_name}\\Quotas\\"
    return (
        r"WSMan:\localhost\MaxEnvelopeSizekb",
        r"WSMan:\localhost\Shell\MaxShellsPerUser",
        r"WSMan:\localhost\Shell\MaxConcurrentUsers",
        r"WSMan:\localhost\Shell\MaxMemoryPerShellMB",
        r"WSMan:\localhost\Shell\IdleTimeout",
        r"WSMan:\localhost\Service\MaxConcurrentOperationsPerUser",
        plugin + "MaxShellsPerUser",
        plugin + "MaxShells",
        plugin + "MaxConcurrentCommandsPerShell",
        plugin + "MaxMemoryPerShellMB",
        plugin + "MaxIdleTimeoutms",
    )


def _quota_checks(quotas: Sequence[Mapping[str, Any]]) -> list[Check]:
    readable = [q for q in quotas if q["readable"]]
    if not quotas:
        return []
    if len(readable) == len(quotas):
        return [Check("WinRM quotas", "ok", f"{len(quotas)} read")]
    reasons = sorted({str(q["reason"]) for q in quotas if not q["readable"]})
    return [
        Check(
            "WinRM quotas",
            "skipped",
            f"{len(quotas) - len(readable)} of {len(quotas)} not readable: " + " | ".join(reasons),
        )
    ]


# -- the facts template -------------------------------------------------------------------------


@attrs.frozen
class _Facts:
    host: dict[str, Any]
    drives: tuple[dict[str, Any], ...]
    objects: tuple[dict[str, Any], ...]
    props: dict[str, list[dict[str, Any]]]
    quotas: tuple[dict[str, Any], ...]
    errors: tuple[str, ...]


def _read_facts(
    session: Session,
    site_code: str | None,
    proxy_server: str | None,
    sup_server: str | None,
    quotas: Sequence[str] = (),
) -> _Facts:
    result = session.run(
        DOCTOR_TEMPLATE,
        SiteCode=site_code,
        ProxyServerName=proxy_server,
        SupServerName=sup_server,
        QuotaPath=list(quotas) or None,
    )
    host: dict[str, Any] = {}
    drives: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    props: dict[str, list[dict[str, Any]]] = {}
    found_quotas: list[dict[str, Any]] = []
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
        elif kind == "Quota":
            found_quotas.append(
                {
                    "path": str(r.get("Path")),
                    "readable": bool(r.get("Readable")),
                    "value": str(r.get("Value") or ""),
                    "reason": str(r.get("Reason") or ""),
                }
            )
        elif kind == "Error":
            errors.append(f"{r.get('Read')}: {r.get('Reason')}")
    return _Facts(host, tuple(drives), tuple(objects), props, tuple(found_quotas), tuple(errors))


# -- the write test ------------------------------------------------------------------------------

#: Raw embedded properties compared before and after the write test (what a write touches).
_RAW = {
    SITE_SYSTEM: (
        "UseProxy",
        "ProxyName",
        "ProxyServerPort",
        "ProxyUserName",
        "AnonymousProxyAccess",
    ),
    SUP: ("UseProxy", "UseProxyForADR"),
}
#: How long (and how often) a separate read is retried until it shows the written values.
VISIBLE_WITHIN = 30.0
VISIBLE_POLL = 0.5


def _raw(facts: _Facts) -> dict[str, dict[str, list[Any]]]:
    """Per object, per watched property: [Value, Value1, Value2] (absent properties left out)."""
    out: dict[str, dict[str, list[Any]]] = {}
    for obj, names in _RAW.items():
        by_name = {str(p.get("PropertyName")): p for p in facts.props.get(obj, ())}
        out[obj] = {n: [by_name[n].get(f) for f in _FIELDS] for n in names if n in by_name}
    return out


def _refusal(
    server: SiteSystemServer, raw: Mapping[str, Mapping[str, list[Any]]], state: SiteState
) -> str | None:
    """Why writing this server's values back could change something, or None.

    The write-back sends every proxy field (name, port and the account, looked up by name
    with Get-CMAccount: no password is needed, the account is already registered), because
    a Set that enables the proxy without -ProxyServerPort / -ProxyAccessAccount resets them
    to 80 / the System account (configmgr-cmdlets.md §3.5, §9: [INFERRED]/[UNCONFIRMED]).
    What it cannot send back is refused rather than guessed.
    """
    site = raw.get(SITE_SYSTEM, {})
    missing = [n for n in _RAW[SITE_SYSTEM] if n not in site]
    if missing:
        return (
            f"the SMS Site System object lacks {missing}: its shape is not the one cmproxy writes"
        )
    name, port = str(site["ProxyName"][2] or ""), site["ProxyServerPort"][0]
    account, anonymous = str(site["ProxyUserName"][2] or ""), site["AnonymousProxyAccess"][0]
    proxy = server.proxy
    if not proxy.enabled:
        stale = name or account or str(port) not in ("80", "0", "") or str(anonymous) != "1"
        if stale:
            return (
                "the proxy is off but its fields still hold values (ProxyName "
                f"{name!r}, port {port}, ProxyUserName {account!r}, AnonymousProxyAccess "
                f"{anonymous}); whether -EnableProxy $false clears them is [UNCONFIRMED] "
                "(configmgr-cmdlets.md §9), so writing it back could change them"
            )
    else:
        if str(anonymous) == "1" and account:
            return (
                f"ProxyUserName holds {account!r} while AnonymousProxyAccess is 1; writing "
                "the proxy back with the System account could clear that name"
            )
        if proxy.account and not state.has_account(proxy.account, server.site_code):
            return (
                f"the proxy account {proxy.account} is not registered at site "
                f"{server.site_code} (Get-CMAccount finds nothing), so it cannot be written back"
            )
        if str(port) in ("0", "", "None"):
            return "ProxyServerPort is empty; a write would set the default port 80"
    sup = server.role(SoftwareUpdatePoint)
    if isinstance(sup, SoftwareUpdatePoint):
        flags = _flags(server)
        if len(raw.get(SUP, {})) < len(_RAW[SUP]):
            return (
                "the SUP object lacks UseProxy/UseProxyForADR: its shape is not the one "
                "cmproxy writes"
            )
        if flags.any and not proxy.enabled:
            return (
                "the SUP options are on but the server has no proxy (R11); writing them back "
                "would make WSUS fail to configure its proxy (configmgr-cmdlets.md §7, issue #33)"
            )
    return None


def _rewrites(server: SiteSystemServer) -> list[Change]:
    """The changes that write the server's own values back (the planner drops such no-op
    changes, so they are built here, exactly as the planner would build a real one)."""
    proxy = server.proxy
    if proxy.enabled:
        invocation = Invocation.of(
            "Set-CMSiteSystemServer",
            SiteSystemServerName=server.name,
            SiteCode=server.site_code,
            EnableProxy=True,
            ProxyServerName=proxy.server,
            ProxyServerPort=proxy.port,
            ProxyAccessAccount=(
                AccountLookup(proxy.account, server.site_code) if proxy.account else None
            ),
        )
    else:
        invocation = Invocation.of(
            "Set-CMSiteSystemServer",
            SiteSystemServerName=server.name,
            SiteCode=server.site_code,
            EnableProxy=False,
        )
    changes = [
        Change(
            kind=ChangeKind.SET_SERVER_PROXY,
            site_code=server.site_code,
            target=server.name,
            before=proxy,
            after=proxy,
            fields=(FieldChange("proxy", proxy.describe(), proxy.describe(), "written back"),),
            invocation=invocation,
            reasons=("cmproxy doctor --write-test: the server's own values written back",),
        )
    ]
    if isinstance(server.role(SoftwareUpdatePoint), SoftwareUpdatePoint):
        flags = _flags(server)
        changes.append(
            Change(
                kind=ChangeKind.SET_SUP_FLAGS,
                site_code=server.site_code,
                target=server.name,
                before=flags,
                after=flags,
                fields=(FieldChange("sup", flags.describe(), flags.describe(), "written back"),),
                invocation=Invocation.of(
                    "Set-CMSoftwareUpdatePoint",
                    SiteSystemServerName=server.name,
                    SiteCode=server.site_code,
                    UseProxy=flags.use_proxy,
                    UseProxyForAutoDeploymentRule=flags.use_proxy_for_adr,
                ),
                reasons=("cmproxy doctor --write-test: the server's own values written back",),
            )
        )
    return changes


def _write_test(
    session: Session,
    name: str,
    journal: Journal,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WriteTest:
    """Write one server's proxy (and SUP options) back as they are, and prove nothing changed.

    Claims the server in the journal (a killed run is finished by `cmproxy recover`: its
    after equals its before), re-reads under the claim (someone else's change → nothing
    written), writes through `Session.apply` (each write read back in its own pipeline), then
    re-reads separately until the values are visible (bounded: VISIBLE_WITHIN) and compares
    the end with the start, the raw embedded properties included. Should the end differ, the
    start is put back with `run_transaction` (a normal, journaled restore) and the test fails.
    """
    state = session.read_state([name])
    server = state.server(name)
    if server is None:
        return WriteTest(name, "fail", f"{name} is not a site system server (nothing written)")
    name = server.name
    sup_name = name if isinstance(server.role(SoftwareUpdatePoint), SoftwareUpdatePoint) else None
    facts = _read_facts(session, server.site_code, name, sup_name)
    raw_before = _raw(facts)
    before = ServerSnapshot.of(state, name)
    assert before is not None
    refusal = _refusal(server, raw_before, state)
    if refusal is not None:
        return WriteTest(
            name, "fail", f"refused, nothing written: {refusal}", before.to_dict(), None
        )
    changes = _rewrites(server)
    entry = JournalEntry(name.lower(), server.site_code, before.to_dict(), before.to_dict())
    tx_id = journal.begin(
        session.endpoint, [entry], [(c.target, c.kind.name, c.to_dict()) for c in changes]
    )
    fresh = ServerSnapshot.of(session.read_state([name]), name)
    if not before.same_as(fresh):
        journal.finish(tx_id, "rolled_back", "nothing written: changed meanwhile")
        return WriteTest(
            name,
            "fail",
            f"nothing written: the server changed meanwhile (now "
            f"{fresh.describe() if fresh else 'gone'})",
            before.to_dict(),
            fresh.to_dict() if fresh else None,
            transaction_id=tx_id,
        )
    written: list[str] = []
    problem = ""
    answered = clock()
    for seq, change in enumerate(changes):
        journal.mark_change(tx_id, seq, "applying")
        try:
            result = session.apply(change)
        except CMProxyError as error:
            journal.mark_change(tx_id, seq, "failed")
            problem = f"{change.invocation.render()} failed: {error}"
            break
        answered = clock()
        written.append(change.invocation.render())
        if not bool(getattr(result, "matches", False)):
            journal.mark_change(tx_id, seq, "failed")
            problem = f"the read-back after {change.invocation.render()} differs"
            break
        journal.mark_change(tx_id, seq, "applied")
    reads, delay, now = 0, None, None
    if not problem:
        while True:
            reads += 1
            now = ServerSnapshot.of(session.read_state([name]), name)
            if before.same_as(now):
                delay = clock() - answered
                break
            if clock() - answered > VISIBLE_WITHIN:
                problem = (
                    f"a separate read did not show the written values within {VISIBLE_WITHIN:g}s"
                )
                break
            sleep(VISIBLE_POLL)
    raw_after = _raw(_read_facts(session, server.site_code, name, sup_name))
    final_state = session.read_state([name])
    after = ServerSnapshot.of(final_state, name)
    same = before.same_as(after) and raw_after == raw_before
    if not same and not problem:
        problem = "the end state differs from the start: " + _diff(raw_before, raw_after)
    if problem and not before.same_as(after):
        try:
            run_transaction(
                session,
                restore_desired({name.lower(): before}),
                journal=journal,
                base=final_state,
                options=RESTORE_OPTIONS,
            )
            problem += "; the start was put back with a restore transaction"
        except CMProxyError as error:
            problem += f"; restoring the start failed too: {error}. Check the server."
        after = ServerSnapshot.of(session.read_state([name]), name)
        raw_after = _raw(_read_facts(session, server.site_code, name, sup_name))
        same = before.same_as(after) and raw_after == raw_before
    # The journal says what a person must know: done, nothing left changed, or look at it.
    status = "committed" if not problem else "rolled_back" if same else "failed"
    journal.finish(tx_id, status, problem)
    if problem:
        return WriteTest(
            name,
            "fail",
            problem,
            before.to_dict(),
            after.to_dict() if after else None,
            tuple(written),
            tx_id,
            delay,
            reads,
            same,
        )
    return WriteTest(
        name,
        "ok",
        f"{len(written)} write(s) made and read back; the end state equals the start, raw "
        "embedded properties included",
        before.to_dict(),
        after.to_dict() if after else None,
        tuple(written),
        tx_id,
        delay,
        reads,
        True,
    )


def _diff(a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]]) -> str:
    parts = []
    for obj in sorted(set(a) | set(b)):
        for prop in sorted(set(a.get(obj, {})) | set(b.get(obj, {}))):
            x, y = a.get(obj, {}).get(prop), b.get(obj, {}).get(prop)
            if x != y:
                parts.append(f"{obj}.{prop} {x} → {y}")
    return "; ".join(parts) or "(model snapshot only)"


# -- the whole ----------------------------------------------------------------------------------


def doctor(
    session: Session,
    write_test: str | None = None,
    *,
    proxy_server: str | None = None,
    sup_server: str | None = None,
    journal: Journal | None = None,
) -> DoctorReport:
    """Check a live site for cmproxy; read-only unless `write_test` names a server.

    `proxy_server` / `sup_server` choose the objects whose shapes are checked (default: a
    server of the session's site with a proxy, and a software update point). `journal` is for
    the write test (default `CMPROXY_JOURNAL` or `~/.cmproxy/journal.sqlite3`).
    """
    if not session.is_open:
        session.open()
    info = session.info
    site_code = session.site_code
    checks = _connection_checks(info)
    boot = dict(getattr(session, "bootstrap", {}) or {})
    if not boot:
        boot = {"SiteCode": site_code, "ModuleVersion": session.module_version}
    checks += _bootstrap_checks(boot, site_code)
    state: SiteState | None = None
    try:
        read = session.read(site_codes=[site_code] if site_code else None)
        state = read.state
        checks.append(
            Check("read", "ok", f"{len(state.servers)} site system server(s) read at {site_code}")
        )
        checks += [Check("read issue", "warn", str(i)) for i in read.issues]
    except CMProxyError as error:
        checks.append(Check("read", "fail", f"the SDK's read failed: {error}"))
    picked_proxy, picked_sup = _pick_servers(state, site_code)
    proxy_server = proxy_server or picked_proxy
    sup_server = sup_server or picked_sup
    facts = _read_facts(
        session, site_code, proxy_server, sup_server, quota_paths(info.configuration_name)
    )
    checks += _host_checks(facts.host)
    checks += _drive_checks(facts.drives, site_code)
    checks += [Check("facts", "warn", e) for e in facts.errors]
    found = {o["object"]: o["count"] > 0 for o in facts.objects}
    for o in facts.objects:
        if o["count"] < 1:
            checks.append(
                Check(f"object {o['object']}", "fail", f"`{o['read']}` found nothing {o['reason']}")
            )
    shapes = check_shapes(facts.props, found)
    bad = [s for s in shapes if s.status == "fail"]
    read_shapes = [s for s in shapes if s.status != "skipped"]
    if bad:
        checks += [
            Check(f"shape {s.expected.object} {s.expected.property}", "fail", s.detail) for s in bad
        ]
    elif read_shapes:
        checks.append(
            Check(
                "object shapes", "ok", f"{len(read_shapes)} proxy settings where cmproxy reads them"
            )
        )
    skipped = [s.expected.setting for s in shapes if s.status == "skipped"]
    if skipped:
        checks.append(Check("object shapes", "skipped", f"not checked (no such object): {skipped}"))
    checks += _quota_checks(facts.quotas)
    result: WriteTest | None = None
    if write_test is not None:
        own = journal if journal is not None else Journal()
        try:
            result = _write_test(session, write_test, own)
        except CMProxyError as error:
            result = WriteTest(write_test, "fail", f"the write test stopped: {error}")
        finally:
            if journal is None:
                own.close()
        checks.append(Check("write test", result.status, f"{result.server}: {result.detail}"))
    return DoctorReport(
        connection=connection_facts(info),
        bootstrap=boot,
        host=facts.host,
        drives=facts.drives,
        objects=facts.objects,
        shapes=tuple(shapes),
        quotas=facts.quotas,
        checks=tuple(checks),
        write_test=result,
    )
