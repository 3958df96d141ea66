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
end state compared with the start, raw embedded properties included (`cmproxy.doctor_write`).

Nothing here ever holds a password: the report is built from `ConnectionInfo` fields that are
not secret and from what the site returns (embedded properties hold no passwords).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from cmproxy._exceptions import CMProxyError
from cmproxy.doctor_facts import (
    DOCTOR_TEMPLATE,
    DOCTOR_TEMPLATE_PARAMETERS,
    EXPECTED_SHAPES,
    SITE_SYSTEM,
    ExpectedField,
    Facts,
    FieldShape,
    Status,
    check_shapes,
    read_facts,
)
from cmproxy.doctor_write import WriteTest
from cmproxy.doctor_write import write_test as run_write_test
from cmproxy.journal import Journal
from cmproxy.model import SiteState
from cmproxy.quotas import read_quotas
from cmproxy.settings import SUP_OPTIONS

if TYPE_CHECKING:
    from cmproxy.connection import ConnectionInfo
    from cmproxy.session import Session

__all__ = [
    "DOCTOR_TEMPLATE",
    "DOCTOR_TEMPLATE_PARAMETERS",
    "EXPECTED_SHAPES",
    "SITE_SYSTEM",
    "Check",
    "DoctorReport",
    "ExpectedField",
    "FieldShape",
    "WriteTest",
    "check_shapes",
    "connection_facts",
    "doctor",
]


@attrs.frozen
class Check:
    """One verdict of the report: what was checked, how it went, and the evidence."""

    name: str
    status: Status
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


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
            lines += [f"  {line}" for line in w.detail_lines()]
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
    source = str(boot.get("ModuleSource") or "")
    if source:
        checks.append(
            Check(
                "bootstrap path",
                "ok",
                f"module from {source}, drive {str(boot.get('DriveSource') or '?').lower()}",
            )
        )
    provider = str(boot.get("ProviderMachine") or "")
    if boot.get("ProviderIsLocal") is False:
        # The bootstrap got through, so the second hop works here (delegation or CredSSP); a
        # log read or a later session without it will not.
        checks.append(
            Check(
                "SMS Provider",
                "warn",
                f"on {provider}, not the WinRM target: "
                "every cmdlet makes a second hop (works only with delegation)",
            )
        )
    elif provider:
        checks.append(Check("SMS Provider", "ok", f"{provider} (the WinRM target)"))
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
        (s for s in servers if SUP_OPTIONS.carried(s)),
        key=lambda s: (not SUP_OPTIONS.read(s).any, not s.proxy.enabled, s.name),
    )
    proxy = with_proxy[0].name if with_proxy else (servers[0].name if servers else None)
    return proxy, sups[0].name if sups else None


def _endpoint_quotas(info: ConnectionInfo) -> tuple[tuple[dict[str, Any], ...], list[Check]]:
    """The endpoint's shell quotas (WSMan Get of winrm/config/winrs and of the session
    configuration, `cmproxy.quotas`) as report rows, and whether cmproxy's per-account cap
    (`account_max_shells`) leaves the admin room below MaxShellsPerUser."""
    try:
        found = read_quotas(info)
    except CMProxyError as error:
        row = {"path": "winrm/config", "readable": False, "value": "", "reason": str(error)}
        return (row,), [Check("WinRM quotas", "skipped", f"not readable: {error}")]
    rows: list[dict[str, Any]] = []
    for where, values in (
        ("winrm/config/winrs", found.winrs),
        (f"winrm/config/plugin?Name={info.configuration_name}", found.plugin),
    ):
        if values is None:
            rows.append(
                {
                    "path": where,
                    "readable": False,
                    "value": "",
                    "reason": "the endpoint refused the WSMan Get (it needs an administrator)",
                }
            )
            continue
        rows += [
            {"path": f"{where} {name}", "readable": True, "value": str(v), "reason": ""}
            for name, v in sorted(values.items())
        ]
    limit, cap = found.max_shells_per_user, found.account_max_shells
    held = f"; {found.shells_held_here} held by cmproxy here now"
    if found.cap_fits is None:
        detail = f"MaxShellsPerUser {limit if limit is not None else 'not readable'}, "
        detail += f"cmproxy's account cap {cap or 'off'}{held}"
        checks = [Check("WinRM quotas", "skipped" if limit is None else "ok", detail)]
    elif found.cap_fits:
        detail = f"cmproxy's account cap {cap} is below MaxShellsPerUser {limit}{held}"
        checks = [Check("WinRM quotas", "ok", detail)]
    else:
        detail = (
            f"cmproxy's account cap {cap} is not below the endpoint's MaxShellsPerUser {limit}: "
            f"set account_max_shells (CMPROXY_ACCOUNT_MAX_SHELLS) below {limit}{held}"
        )
        checks = [Check("WinRM quotas", "warn", detail)]
    return tuple(rows), checks


# -- the whole ----------------------------------------------------------------------------------


def _shape_checks(facts: Facts) -> tuple[list[FieldShape], list[Check]]:
    """The objects cmproxy reads found, and their proxy settings where cmproxy reads them."""
    checks = [
        Check(f"object {o['object']}", "fail", f"`{o['read']}` found nothing {o['reason']}")
        for o in facts.objects
        if o["count"] < 1
    ]
    found = {o["object"]: o["count"] > 0 for o in facts.objects}
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
    return shapes, checks


def _write_test(session: Session, server: str, journal: Journal | None) -> WriteTest:
    """The write test on `server`, with the caller's journal or one of its own (closed)."""
    own = journal if journal is not None else Journal()
    try:
        return run_write_test(session, server, own)
    except CMProxyError as error:
        return WriteTest(server, "fail", f"the write test stopped: {error}")
    finally:
        if journal is None:
            own.close()


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
    boot = dict(session.bootstrap_record) or {
        "SiteCode": site_code,
        "ModuleVersion": session.module_version,
    }
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
    try:
        facts = read_facts(session, site_code, proxy_server, sup_server)
    except CMProxyError as error:  # each read in the template has its own catch: rare
        facts = Facts({}, (), (), {}, (f"{DOCTOR_TEMPLATE}: {error}",))
        checks.append(Check("facts", "fail", f"{DOCTOR_TEMPLATE} failed: {error}"))
    checks += _host_checks(facts.host)
    checks += _drive_checks(facts.drives, site_code)
    checks += [Check("facts", "warn", e) for e in facts.errors]
    shapes, shape_checks = _shape_checks(facts)
    checks += shape_checks
    quotas, quota_checks = _endpoint_quotas(info)
    checks += quota_checks
    result: WriteTest | None = None
    if write_test is not None:
        result = _write_test(session, write_test, journal)
        checks.append(Check("write test", result.status, f"{result.server}: {result.detail}"))
    return DoctorReport(
        connection=connection_facts(info),
        bootstrap=boot,
        host=facts.host,
        drives=facts.drives,
        objects=facts.objects,
        shapes=tuple(shapes),
        quotas=quotas,
        checks=tuple(checks),
        write_test=result,
    )
