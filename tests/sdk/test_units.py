"""Unit tests without a network: reader mapping, WinRS codec, session bootstrap and errors."""

from __future__ import annotations

import json

import pytest

from cmproxy._exceptions import (
    ConsoleNotInstalledError,
    DotNetFrameworkError,
    ModuleBlockedError,
    PowerShellError,
    ProviderAccessDeniedError,
    SecondHopError,
    SiteDriveError,
    TransportError,
)
from cmproxy.connection import ConnectionInfo
from cmproxy.model import ProxySettings, Secret, SiteType, SupFlags
from cmproxy.reader import proxy_from_record, read_site_state, sup_flags_from_record
from cmproxy.roles import (
    CloudDistributionPoint,
    ConnectedCacheDistributionPoint,
    SoftwareUpdatePoint,
    SupSyncSource,
)
from cmproxy.session import Session
from cmproxy.transports.base import FakeTransport, Result, Step
from cmproxy.transports.psrp import _unpack
from cmproxy.transports.winrm import _parse, encode_request

SYSTEM = "SMS Site System"


def role(server: str, name: str, site: str = "PS1", **props: object) -> dict[str, object]:
    return {
        "Kind": "Role",
        "SiteCode": site,
        "ServerName": f"\\\\{server}",
        "RoleName": name,
        **props,
    }


def test_proxy_encodings() -> None:
    assert proxy_from_record({"UseProxy": 0, "ProxyName": "x"}) == ProxySettings.disabled()
    on = {
        "UseProxy": "1",
        "ProxyName": "p.contoso.com",
        "ProxyServerPort": 8080,
        "ProxyUserName": "CONTOSO\\svc",
        "AnonymousProxyAccess": 0,
    }
    assert proxy_from_record(on) == ProxySettings("p.contoso.com", 8080, "CONTOSO\\svc")
    anonymous = {**on, "AnonymousProxyAccess": 1}
    assert proxy_from_record(anonymous).account is None
    assert sup_flags_from_record({"UseProxy": 1, "UseProxyForADR": 0}) == SupFlags(True, False)


def test_read_site_state() -> None:
    records: list[dict[str, object]] = [
        {"Kind": "Site", "SiteCode": "CAS", "Type": 4, "ServerName": "cas.contoso.com"},
        {
            "Kind": "Site",
            "SiteCode": "PS1",
            "Type": 2,
            "ReportingSiteCode": "CAS",
            "ServerName": "ps1.contoso.com",
        },
        {
            "Kind": "Site",
            "SiteCode": "SS1",
            "Type": 1,
            "ReportingSiteCode": "PS1",
            "ServerName": "ss1.contoso.com",
        },
        role(
            "sup.contoso.com",
            SYSTEM,
            UseProxy=1,
            ProxyName="p.contoso.com",
            ProxyServerPort=80,
            AnonymousProxyAccess=1,
        ),
        role("sup.contoso.com", "SMS Software Update Point", UseProxy=1, UseProxyForADR=1),
        role("ss-sup.contoso.com", SYSTEM, site="SS1"),
        role("ss-sup.contoso.com", "SMS Software Update Point", site="SS1"),
        role("cdp.cloudapp.net", SYSTEM),
        role("cdp.cloudapp.net", "SMS Distribution Point", IsCloud=1),
        role("mcc.contoso.com", SYSTEM),
        role("mcc.contoso.com", "SMS Distribution Point", ConnectedCacheEnabled=1),
        role("bad.contoso.com", SYSTEM, UseProxy=1, ProxyName=""),  # enabled without a name
        {
            "Kind": "SupComponent",
            "SiteCode": "PS1",
            "DefaultUseParentWSUS": 1,
            "ParentWSUS": "up.contoso.com",
        },
        {"Kind": "Account", "SiteCode": "PS1", "UserName": "CONTOSO\\svc"},
        {"Kind": "Account", "SiteCode": "PS1", "UserName": ""},  # an empty row is skipped
        {"Kind": "Role", "SiteCode": "PS1", "ServerName": None, "RoleName": None},
    ]
    read = read_site_state(records)
    state = read.state
    assert [s.type for s in state.sites] == [SiteType.CAS, SiteType.PRIMARY, SiteType.SECONDARY]
    sup = state.server("sup.contoso.com")
    assert sup is not None and sup.proxy == ProxySettings("p.contoso.com")
    sup_role = sup.role(SoftwareUpdatePoint)
    assert isinstance(sup_role, SoftwareUpdatePoint)
    assert sup_role.sync_source is SupSyncSource.UPSTREAM
    assert sup_role.upstream_server == "up.contoso.com"
    ss_sup = state.server("ss-sup.contoso.com")
    assert ss_sup is not None
    ss_role = ss_sup.role(SoftwareUpdatePoint)
    assert isinstance(ss_role, SoftwareUpdatePoint)
    assert ss_role.sync_source is SupSyncSource.UPSTREAM
    cdp = state.server("cdp.cloudapp.net")
    assert cdp is not None
    cloud = cdp.role(CloudDistributionPoint)
    assert isinstance(cloud, CloudDistributionPoint)
    assert cloud.managing_site_server == "ps1.contoso.com"
    mcc = state.server("mcc.contoso.com")
    assert mcc is not None and mcc.has_role(ConnectedCacheDistributionPoint)
    assert state.has_account("contoso\\SVC", "PS1")
    assert len(read.issues) == 1 and "bad.contoso.com" in str(read.issues[0])


def test_winrs_request_keeps_secrets_out_of_the_json() -> None:
    password = "a%0Ab\r\nc'$(x)é"
    step = Step.of("New-ProxyAccount", SiteCode="PS1", UserName="C\\ü", Password=Secret(password))
    raw = encode_request([step])
    lines = raw.decode("utf-8").split("\r\n")
    head = json.loads(lines[0])
    assert lines[0].isascii()
    assert password not in lines[0]
    params = {p["name"]: p for p in head["steps"][0]["parameters"]}
    assert params["Password"] == {"name": "Password", "secret": True, "line": 1}
    assert params["UserName"]["value"] == "C\\ü"
    decoded = lines[1].replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
    assert decoded == password


def test_winrs_output_and_error_parsing() -> None:
    steps = [Step.of("Get-SiteState"), Step.of("Get-SiteState")]
    out = (
        b'noise\r\n{"cmproxy":"o","step":0,"value":{"A":1}}\r\n'
        b'{"cmproxy":"o","step":1,"value":2}\r\n'
    )
    results = _parse(out, b"", 0, steps)
    assert results[0].output == ({"A": 1},) and results[1].output == (2,)
    err = (
        b'{"cmproxy":"e","step":1,"id":"ItemNotFound,X","category":"ObjectNotFound",'
        b'"message":"gone"}'
    )
    with pytest.raises(PowerShellError) as exc:
        _parse(err, b"", 0, steps)
    assert exc.value.fully_qualified_error_id == "ItemNotFound,X"
    clixml = (
        b'#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/'
        b'2004/04"><S S="Error">Oops : bad thing_x000D__x000A_</S><S S="Error">    + '
        b"FullyQualifiedErrorId : Boom_x000D__x000A_</S></Objs>"
    )
    with pytest.raises(PowerShellError) as exc:
        _parse(b"", clixml, 1, steps)
    assert exc.value.fully_qualified_error_id == "Boom"
    assert "bad thing" in exc.value.message


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


def test_psrp_output_comes_unpacked_in_order_and_anything_else_is_refused() -> None:
    assert _unpack(['[{"Kind": "Site"}, 2]', '{"Kind": "Role"}']) == (
        {"Kind": "Site"},
        2,
        {"Kind": "Role"},
    )
    for bad in (["not json"], [{"Kind": "Site"}], ["null"]):
        with pytest.raises(TransportError, match="not packed JSON"):
            _unpack(bad)
