"""The session bootstrap over a strict fake transport: it runs once, then reads; each marker
the bootstrap template raises becomes its own precise error."""

from __future__ import annotations

import pytest

from cmproxy._exceptions import (
    ConsoleNotInstalledError,
    DotNetFrameworkError,
    ModuleBlockedError,
    PowerShellError,
    ProviderAccessDeniedError,
    SecondHopError,
    SiteDriveError,
)
from cmproxy.connection import ConnectionInfo
from cmproxy.session import Session
from cmproxy.transports.base import FakeTransport, Result, Step

INFO = ConnectionInfo(server="cm01.contoso.com", auth="kerberos")


def _boot(marker: str | None) -> FakeTransport:
    def handler(step: Step) -> Result:
        if step.script.name == "Initialize-CMSession":
            if marker:
                raise PowerShellError(f"cmproxy:{marker}: detail", fully_qualified_error_id="x")
            return Result(output=({"SiteCode": "PS1", "ModuleVersion": "5.2403"},))
        return Result(output=({"Kind": "Site", "SiteCode": "PS1", "Type": 2},))

    return FakeTransport(handler, INFO)


def test_session_bootstraps_once_and_reads() -> None:
    fake = _boot(None)
    with Session(INFO, transport=fake) as session:
        assert session.site_code == "PS1" and session.module_version == "5.2403"
        # An older template without the path fields: the info says "unknown", not a guess.
        assert session.bootstrap is not None
        assert session.bootstrap.module_source == "" and session.bootstrap.drive_source == ""
        assert session.bootstrap.provider_is_local is None
        session.read_state()
        session.read_state(["x.contoso.com"])
    names = [s.script.name for s in fake.steps]
    assert names == ["Initialize-CMSession", "Get-SiteState", "Get-SiteState"]
    assert dict(fake.steps[-1].parameters)["SiteSystemServerName"] == ("x.contoso.com",)
    assert fake.closed


@pytest.mark.parametrize(
    ("marker", "error"),
    [
        ("ConsoleNotInstalled", ConsoleNotInstalledError),
        ("DriveClash", SiteDriveError),
        ("SiteDriveMissing", SiteDriveError),
        ("SiteCodeUnknown", SiteDriveError),
        ("ModuleBlocked", ModuleBlockedError),
        ("DotNetTooOld", DotNetFrameworkError),
        ("AccessDenied", ProviderAccessDeniedError),
        ("ProviderElsewhere", SecondHopError),
    ],
)
def test_bootstrap_errors_are_precise(marker: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        Session(INFO, transport=_boot(marker)).open()
