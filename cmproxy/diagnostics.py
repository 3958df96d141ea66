"""What is wrong with a site's proxies, and why — each finding cites its rule.

`diagnose_state` is pure: a `SiteState`, optionally a desired state and the text of site
server logs, in; findings out. `diagnose(session)` reads the site and each CAS/primary site
server's `ruleengine.log` through the session (`ps_templates/Get-SiteServerLog.ps1`, through the
FileSystem provider), then calls it. A log that cannot be read is a finding of its own, naming
the log, the server and why (not found, access denied — a second hop when the share is on
another machine than the session's — or another error): R13 was not checked there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, Protocol

import attrs

from cmproxy.model import SiteState, SiteType
from cmproxy.plan import DesiredState
from cmproxy.roles import CloudDistributionPoint, ManagementPoint, SoftwareUpdatePoint


class _Records(Protocol):
    def records(self) -> list[dict[str, Any]]: ...


class SiteReader(Protocol):
    """What `diagnose` needs from a session (a `Session` is one): the diagnosis stays in the
    core, which imports no session and no transport."""

    def read_state(self) -> SiteState: ...

    def run(self, template: str, **parameters: Any) -> _Records: ...


__all__ = [
    "Diagnosis",
    "Finding",
    "UnreadableLog",
    "diagnose",
    "diagnose_state",
    "ruleengine_failures",
]

Severity = Literal["error", "warning", "info"]

#: ruleengine.log lines for an ADR download that could not reach the Internet (R13), in the
#: English and French editions of the product.
_12007 = re.compile(
    r"(Failed to download the update from internet\. Error = 12007"
    r"|chec du t.l.chargement de la mise . jour sur Internet\. Erreur = 12007)",
    re.IGNORECASE,
)


@attrs.frozen
class Finding:
    """One problem, the rule behind it and what to do."""

    rule: str
    severity: Severity
    server: str
    site_code: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.severity}: {self.server} ({self.site_code}): {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Diagnosis:
    """All findings for a site, errors first."""

    findings: tuple[Finding, ...]

    def __iter__(self) -> Any:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}

    def render(self) -> str:
        if not self.findings:
            return "No proxy problems found."
        return "\n".join(f"{f}\n    fix: {f.fix}" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [f.to_dict() for f in self.findings]}


@attrs.frozen
class UnreadableLog:
    """A site-server log the session could not read, as Get-SiteServerLog reports it.

    `reason` is "NotFound", "AccessDenied" or "Error"; `second_hop` is True when the share is on
    another machine than the session's own (reaching it needs delegated credentials).
    """

    server: str
    log: str
    reason: str
    second_hop: bool = False
    error_id: str = ""
    message: str = ""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> UnreadableLog:
        return cls(
            server=str(record.get("Server") or ""),
            log=str(record.get("Log") or ""),
            reason=str(record.get("Reason") or "Error"),
            second_hop=bool(record.get("SecondHop")),
            error_id=str(record.get("ErrorId") or ""),
            message=str(record.get("Message") or ""),
        )


def ruleengine_failures(text: str) -> list[str]:
    """The ruleengine.log lines that record an ADR download failing with 12007 (R13)."""
    return [line.strip() for line in text.splitlines() if _12007.search(line)]


def diagnose_state(
    state: SiteState,
    desired: DesiredState | None = None,
    logs: Mapping[str, str] | None = None,
    unreadable: Iterable[UnreadableLog] = (),
) -> Diagnosis:
    """Find proxy problems in `state` (and conflicts in `desired`), citing the rules.

    `logs` maps a site server name to the text of its `ruleengine.log`; `unreadable` lists the
    logs that could not be read (each becomes a finding: R13 was not checked there).
    """
    findings: list[Finding] = []
    findings += _sup_without_proxy(state)
    findings += _adr_at_secondary(state)
    findings += _cloud_dp_without_primary_proxy(state)
    findings += _mp_2603(state)
    if desired is not None:
        findings += _conflicting_requests(state, desired)
    for server_name, text in (logs or {}).items():
        findings += _adr_download_failures(state, server_name, text)
    findings += [_unreadable_log(state, u) for u in unreadable]
    order = {"error": 0, "warning": 1, "info": 2}
    findings.sort(key=lambda f: (order[f.severity], f.rule, f.server))
    return Diagnosis(tuple(findings))


def _sup_without_proxy(state: SiteState) -> Iterable[Finding]:
    for server in state.servers:
        sup = server.role(SoftwareUpdatePoint)
        if isinstance(sup, SoftwareUpdatePoint) and sup.any_flag and not server.proxy.enabled:
            yield Finding(
                "R11",
                "error",
                server.name,
                server.site_code,
                "the software update point uses a proxy (sync "
                f"{'on' if sup.use_proxy else 'off'}, ADR "
                f"{'on' if sup.use_proxy_for_adr else 'off'}) but the server has none; WSUS "
                "reports 'The address of the proxy server cannot be empty' (WSUSCtrl.log)",
                "configure the site system server's proxy first, or turn the SUP options off",
            )


def _adr_at_secondary(state: SiteState) -> Iterable[Finding]:
    for server in state.servers:
        sup = server.role(SoftwareUpdatePoint)
        site = state.site(server.site_code)
        if (
            isinstance(sup, SoftwareUpdatePoint)
            and sup.use_proxy_for_adr
            and site is not None
            and site.type is SiteType.SECONDARY
        ):
            yield Finding(
                "R9",
                "warning",
                server.name,
                server.site_code,
                "the ADR proxy option is on for a SUP at a secondary site, where it is not used",
                "turn it off to avoid confusion; ADR content is downloaded at the CAS or primary",
            )


def _cloud_dp_without_primary_proxy(state: SiteState) -> Iterable[Finding]:
    for server in state.servers:
        dp = server.role(CloudDistributionPoint)
        if not isinstance(dp, CloudDistributionPoint):
            continue
        managing = dp.managing_site_server
        if managing is None:
            site = state.site(server.site_code)
            managing = site.server if site is not None else None
        primary = state.server(managing) if managing else None
        if primary is None:
            yield Finding(
                "R5",
                "warning",
                server.name,
                server.site_code,
                "the primary site server that manages this cloud distribution point is unknown",
                "check the site's server list; its proxy is configured on that primary site server",
            )
        elif not primary.proxy.enabled:
            yield Finding(
                "R5",
                "warning",
                server.name,
                server.site_code,
                f"its managing primary site server {primary.name} has no proxy; if that server "
                "cannot reach Azure directly, the cloud DP cannot be configured or monitored",
                f"configure a proxy on {primary.name} (not on the cloud DP)",
            )


def _mp_2603(state: SiteState) -> Iterable[Finding]:
    for server in state.servers:
        if server.has_role(ManagementPoint) and server.proxy.enabled:
            yield Finding(
                "MP-2603",
                "info",
                server.name,
                server.site_code,
                "from version 2603 the management point ignores the site system proxy for "
                "Microsoft Entra token validation",
                "set a WinINET proxy for SYSTEM (HKEY_USERS\\S-1-5-18 Internet Settings) and "
                "restart SMS_EXECUTIVE if clients report 0x87d00231",
            )


def _conflicting_requests(state: SiteState, desired: DesiredState) -> Iterable[Finding]:
    wanted: dict[str, list[tuple[str, str]]] = {}
    for request in desired.proxies:
        server = state.server(request.server)
        key = server.name if server else request.server
        wanted.setdefault(key, []).append(
            (request.proxy.normalized().describe(), request.role or "the server")
        )
    for name, asks in wanted.items():
        distinct = {proxy for proxy, _ in asks}
        if len(distinct) > 1:
            server = state.server(name)
            detail = "; ".join(f"{proxy} for {role}" for proxy, role in asks)
            yield Finding(
                "R1",
                "error",
                name,
                server.site_code if server else "?",
                f"different proxies are wanted on one server: {detail}",
                "a server has one proxy shared by all its roles; put the roles that need "
                "different proxies on separate site system servers",
            )


def _adr_download_failures(state: SiteState, server_name: str, text: str) -> Iterable[Finding]:
    lines = ruleengine_failures(text)
    if not lines:
        return
    server = state.server(server_name)
    site_code = server.site_code if server else "?"
    site = next((s for s in state.sites if (s.server or "").lower() == server_name.lower()), None)
    if site is not None:
        site_code = site.code
    # ADR downloads use the proxy when the site's SUP has the ADR option on and its server has
    # a proxy (R9, R11); otherwise the site server's System account goes out directly (R12).
    sups = [
        (s, r)
        for s in state.servers
        if s.site_code == site_code
        for r in [s.role(SoftwareUpdatePoint)]
        if isinstance(r, SoftwareUpdatePoint)
    ]
    adr_on = [s for s, r in sups if r.use_proxy_for_adr]
    adr_with_proxy = [s for s in adr_on if s.proxy.enabled]
    if not adr_on:
        fix = (
            f"turn on the ADR proxy option (use_proxy_for_adr) of site {site_code}'s software "
            "update point, on a server that has a proxy; or give "
            f"{server_name}'s System account direct Internet access"
        )
    elif not adr_with_proxy:
        fix = (
            f"the ADR proxy option is on for {', '.join(s.name for s in adr_on)}, but that "
            "server has no proxy: configure its site system proxy (R11)"
        )
    else:
        fix = (
            "the proxy is configured and the ADR option is on: check that the proxy lets "
            f"{server_name}'s System account (or the proxy account) out to Microsoft Update, "
            "and that these failures are not older than the change"
        )
    yield Finding(
        "R13",
        "error",
        server_name,
        site_code,
        f"{len(lines)} ADR download failure(s) with error 12007 in ruleengine.log: automatic "
        "deployment rules download as the System account of this site server (R12), and that "
        "account has no Internet access. Last: " + lines[-1][:160],
        fix,
    )


def _unreadable_log(state: SiteState, u: UnreadableLog) -> Finding:
    site = next((s for s in state.sites if (s.server or "").lower() == u.server.lower()), None)
    site_code = site.code if site is not None else "?"
    share = f"\\\\{u.server}\\SMS_{site_code}\\Logs"
    unchecked = "so ADR download failures (12007, R13) there were not checked"
    if u.reason == "AccessDenied" and u.second_hop:
        return Finding(
            "R13",
            "warning",
            u.server,
            site_code,
            f"{u.log} on {u.server} could not be read (access denied): {share} is on another "
            "machine than the one cmproxy's session runs on — a second hop, which NTLM and "
            f"Kerberos without delegation cannot make; {unchecked}",
            f"run the diagnosis with a session on {u.server} itself (--server {u.server}), or "
            "allow the second hop (CredSSP, or Kerberos constrained delegation to "
            f"{u.server}), or read {u.log} on {u.server} by hand",
        )
    if u.reason == "AccessDenied":
        return Finding(
            "R13",
            "warning",
            u.server,
            site_code,
            f"{u.log} on {u.server} could not be read (access denied: {u.message}); {unchecked}",
            f"give the account read access to {share}",
        )
    if u.reason == "NotFound":
        return Finding(
            "R13",
            "info",
            u.server,
            site_code,
            f"{u.log} on {u.server} could not be read (not found at {share}); {unchecked}",
            f"check that {u.server} is site {site_code}'s site server; {u.log} appears once an "
            "automatic deployment rule has run there",
        )
    return Finding(
        "R13",
        "warning",
        u.server,
        site_code,
        f"{u.log} on {u.server} could not be read ({u.error_id or 'error'}: {u.message}); "
        f"{unchecked}",
        f"read {share}\\{u.log} by hand and fix what the error names",
    )


def diagnose(
    session: SiteReader, desired: DesiredState | None = None, *, log_lines: int = 2000
) -> Diagnosis:
    """Read the site and the ruleengine.log of each CAS/primary site server, then diagnose."""
    state = session.read_state()
    logs: dict[str, str] = {}
    unreadable: list[UnreadableLog] = []
    for site in state.sites:
        if site.type is SiteType.SECONDARY or site.server is None:
            continue
        result = session.run(
            "Get-SiteServerLog",
            ServerName=site.server,
            SiteCode=site.code,
            LogName="ruleengine.log",
            Tail=log_lines,
        )
        records = result.records()
        unreadable += [UnreadableLog.from_record(r) for r in records if r.get("Unreadable")]
        lines = [str(r.get("Line", "")) for r in records if not r.get("Unreadable")]
        if lines:
            logs[site.server] = "\n".join(lines)
    return diagnose_state(state, desired, logs, unreadable)
