"""Execute a planned `Change` through its template and read back what the site now holds.

A change's `Invocation` names a cmdlet and its parameters (`cmproxy.invocation`); each cmdlet
has one template that calls it with bound values and then reads the object back in the same
pipeline. `AccountLookup` values become an account name that the template resolves remotely
with `Get-CMAccount` (`-ProxyAccessAccount` takes the account object, not a string);
`Secret` values go to the transport untouched, which sends them as SecureStrings.

`step_for_invocation` is pure and is what the template test checks against each param() block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from cmproxy._exceptions import PlanError, ValidationError
from cmproxy.invocation import AccountLookup, Invocation
from cmproxy.model import ProxySettings, Secret, SupFlags
from cmproxy.plan import Change, ChangeKind
from cmproxy.reader import proxy_from_record, sup_flags_from_record
from cmproxy.transports.base import Result, Step

if TYPE_CHECKING:
    from cmproxy.session import Session

__all__ = [
    "WRITE_TEMPLATES",
    "WRITE_TEMPLATE_PARAMETERS",
    "WriteResult",
    "apply_change",
    "read_back",
    "step_for_invocation",
]

#: Cmdlet → template that runs it.
WRITE_TEMPLATES: dict[str, str] = {
    "Set-CMSiteSystemServer": "Set-ServerProxy",
    "Set-CMSoftwareUpdatePoint": "Set-SupProxyFlags",
    "New-CMAccount": "New-ProxyAccount",
}

#: Per cmdlet: invocation parameter → template parameter.
_PARAMETER_MAP: dict[str, dict[str, str]] = {
    "Set-CMSiteSystemServer": {
        "SiteCode": "SiteCode",
        "SiteSystemServerName": "SiteSystemServerName",
        "EnableProxy": "EnableProxy",
        "ProxyServerName": "ProxyServerName",
        "ProxyServerPort": "ProxyServerPort",
        "ProxyAccessAccount": "ProxyAccessAccountName",
    },
    "Set-CMSoftwareUpdatePoint": {
        "SiteCode": "SiteCode",
        "SiteSystemServerName": "SiteSystemServerName",
        "UseProxy": "UseProxy",
        "UseProxyForAutoDeploymentRule": "UseProxyForAutoDeploymentRule",
    },
    "New-CMAccount": {"SiteCode": "SiteCode", "UserName": "UserName", "Password": "Password"},
}

#: Template → the parameter names the Python side may bind (checked against param() blocks).
WRITE_TEMPLATE_PARAMETERS: dict[str, frozenset[str]] = {
    WRITE_TEMPLATES[cmdlet]: frozenset(mapping.values())
    for cmdlet, mapping in _PARAMETER_MAP.items()
}


@attrs.frozen
class WriteResult:
    """A change as written and the value read back right after, in the same pipeline."""

    change: Change
    #: ProxySettings for a server proxy, SupFlags for SUP options, the account name otherwise.
    read_back: ProxySettings | SupFlags | str
    #: True when the read-back value is what the change asked for.
    matches: bool

    def describe(self) -> str:
        verdict = "as planned" if self.matches else "DIFFERENT from the plan"
        return f"{self.change.describe()} → read back {self.read_back!r} ({verdict})"


def step_for_invocation(invocation: Invocation) -> Step:
    """The template step that performs `invocation`; refuses anything it does not know."""
    template = WRITE_TEMPLATES.get(invocation.command)
    mapping = _PARAMETER_MAP.get(invocation.command)
    if template is None or mapping is None:
        raise PlanError(
            f"cmproxy cannot execute {invocation.command}; it runs "
            f"{', '.join(sorted(WRITE_TEMPLATES))}"
        )
    site_code = invocation.get("SiteCode")
    bound: dict[str, Any] = {}
    for name, given in invocation.parameters:
        value = given
        target = mapping.get(name)
        if target is None:
            raise PlanError(f"{invocation.command}: parameter -{name} is not supported")
        if isinstance(value, AccountLookup):
            if site_code is not None and value.site_code.upper() != str(site_code).upper():
                raise ValidationError(
                    name,
                    value.name,
                    f"the account is looked up at site {value.site_code} but the server is at "
                    f"site {site_code}; an account is registered per site",
                )
            value = value.name
        elif name == "Password" and not isinstance(value, Secret):
            raise ValidationError("Password", "********", "must be a Secret")
        bound[target] = value
    return Step.of(template, **bound)


def read_back(change: Change, result: Result) -> tuple[ProxySettings | SupFlags | str, bool]:
    """The value the template read back after writing, and whether it matches the change."""
    records = result.records()
    if not records:
        raise PlanError(f"{change.invocation.command} on {change.target}: nothing was read back")
    record = records[-1]
    if change.kind is ChangeKind.SET_SERVER_PROXY:
        proxy = proxy_from_record(record)
        wanted = change.after
        return proxy, isinstance(wanted, ProxySettings) and proxy.same_as(wanted)
    if change.kind is ChangeKind.SET_SUP_FLAGS:
        flags = sup_flags_from_record(record)
        return flags, flags == change.after
    name = str(record.get("UserName") or "")
    return name, name.lower() == str(change.after).lower()


def apply_change(session: Session, change: Change) -> WriteResult:
    """Run one change through `session` and read back the result."""
    result = session.run_step(step_for_invocation(change.invocation))
    value, matches = read_back(change, result)
    return WriteResult(change=change, read_back=value, matches=matches)
