"""End to end through the real pypsrp and pywinrm clients, every auth mode, real cmdlets.

Nothing is patched: the clients speak HTTP(S) to the emulator on 127.0.0.1, authenticate
(Basic, NTLM, Negotiate with message encryption, TLS verified against the generated cert) and
run ConfigMgr cmdlets on the emulated demo site.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any, cast

import pytest
import requests
import winrm
from pypsrp.complex_objects import ObjectMeta
from pypsrp.exceptions import AuthenticationError
from pypsrp.powershell import PowerShell, RunspacePool
from pypsrp.wsman import WSMan
from winrm.exceptions import InvalidCredentialsError

from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER, Emulator

pytestmark = pytest.mark.e2e

SERVER = "cm-ps1.contoso.com"
PRELUDE = "Import-Module ConfigurationManager\nSet-Location PS1:\n"

PSRP_MODES = ["basic-http", "basic-https", "ntlm-http", "negotiate-http", "ntlm-https"]
WINRM_MODES = ["basic-http", "basic-https", "ntlm-http", "ntlm-https"]


@pytest.fixture(scope="module")
def emu_http() -> Iterator[Emulator]:
    with Emulator(allow_basic=True, allow_unencrypted=True, receive_timeout=3) as emu:
        yield emu


@pytest.fixture(scope="module")
def emu_https() -> Iterator[Emulator]:
    with Emulator(allow_basic=True, allow_unencrypted=True, https=True, receive_timeout=3) as emu:
        yield emu


def pick(mode: str, emu_http: Emulator, emu_https: Emulator) -> Emulator:
    return emu_https if mode.endswith("https") else emu_http


def wsman_for(emu: Emulator, auth: str, password: str = DEFAULT_PASSWORD) -> WSMan:
    return WSMan(
        emu.host,
        port=emu.port,
        username=DEFAULT_USER,
        password=password,
        ssl=emu.https,
        auth=auth,
        encryption="never" if auth == "basic" else "auto",
        cert_validation=cast(Any, emu.cert_path if emu.https else True),
        operation_timeout=5,
        read_timeout=10,
        no_proxy=True,
    )


def winrm_session(emu: Emulator, transport: str, password: str = DEFAULT_PASSWORD) -> winrm.Session:
    kwargs: dict[str, Any] = {}
    if emu.https:
        kwargs = {"server_cert_validation": "validate", "ca_trust_path": emu.cert_path}
    return winrm.Session(
        emu.endpoint,
        auth=(DEFAULT_USER, password),
        transport=transport,
        operation_timeout_sec=5,
        read_timeout_sec=10,
        **kwargs,
    )


def prelude(ps: PowerShell) -> PowerShell:
    ps.add_cmdlet("Import-Module").add_parameter("Name", "ConfigurationManager").add_statement()
    ps.add_cmdlet("Set-Location").add_parameter("Path", "PS1:").add_statement()
    return ps


def type_names(obj: Any) -> list[str]:
    return list(getattr(obj, "types", []) or [])


def props(obj: Any) -> dict[str, Any]:
    out = dict(getattr(obj, "adapted_properties", {}) or {})
    out.update(getattr(obj, "extended_properties", {}) or {})
    return out


def fqids(ps: PowerShell) -> list[str]:
    return [str(e.fq_error) for e in ps.streams.error]


# -- pypsrp ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", PSRP_MODES)
def test_psrp_get_site_system_server(mode: str, emu_http: Emulator, emu_https: Emulator) -> None:
    emu = pick(mode, emu_http, emu_https)
    with RunspacePool(wsman_for(emu, mode.split("-", maxsplit=1)[0])) as pool:
        ps = prelude(PowerShell(pool))
        ps.add_cmdlet("Get-CMSiteSystemServer")
        ps.add_parameter("SiteSystemServerName", SERVER).add_parameter("SiteCode", "PS1")
        out = ps.invoke()
        assert not ps.had_errors, [str(e) for e in ps.streams.error]
        assert len(out) == 1
        obj = out[0]
        assert any("SMS_SCI_SysResUse" in t for t in type_names(obj)), type_names(obj)
        values = props(obj)
        assert SERVER.lower() in " ".join(str(v) for v in values.values()).lower()
        # A live IResultObject arrives at depth 1: nested parts are strings, not objects.
        assert all(not hasattr(v, "adapted_properties") for v in values.values())


@pytest.mark.parametrize("mode", PSRP_MODES)
def test_psrp_errors_are_powershell_faithful(
    mode: str, emu_http: Emulator, emu_https: Emulator
) -> None:
    emu = pick(mode, emu_http, emu_https)
    with RunspacePool(wsman_for(emu, mode.split("-", maxsplit=1)[0])) as pool:
        cases: list[tuple[str, dict[str, Any]]] = [
            ("Get-CMSiteSystemServer", {"Bogus": "x"}),
            (
                "Set-CMSiteSystemServer",
                {"SiteSystemServerName": SERVER, "SiteCode": "PS1", "ProxyServerPort": 70000},
            ),
            ("New-CMSiteSystemServer", {"SiteCode": "PS1"}),
            ("Get-CMBogusThing", {}),
        ]
        expected = [
            "NamedParameterNotFound,",
            "ParameterArgumentValidationError,",
            "MissingMandatoryParameter,",
            "CommandNotFoundException",
        ]
        for (cmdlet, params), prefix in zip(cases, expected, strict=True):
            ps = prelude(PowerShell(pool))
            ps.add_cmdlet(cmdlet)
            for name, value in params.items():
                ps.add_parameter(name, value)
            ps.invoke()
            assert ps.had_errors, cmdlet
            assert any(f.startswith(prefix) for f in fqids(ps)), (cmdlet, fqids(ps))

        ps = PowerShell(pool)
        ps.add_script(
            PRELUDE
            + f"$s = Get-CMSiteSystemServer -SiteSystemServerName {SERVER} -SiteCode PS1\n"
            + f"Set-CMSiteSystemServer -InputObject $s -SiteSystemServerName {SERVER} "
            + "-EnableProxy $true"
        )
        ps.invoke()
        assert any(f.startswith("AmbiguousParameterSet,") for f in fqids(ps)), fqids(ps)


def test_psrp_error_record_carries_dotnet_details(emu_http: Emulator) -> None:
    with RunspacePool(wsman_for(emu_http, "ntlm")) as pool:
        ps = prelude(PowerShell(pool))
        ps.add_cmdlet("Get-CMSiteSystemServer").add_parameter("Bogus", "x")
        ps.invoke()
        err: Any = ps.streams.error[-1]
        assert "System.Management.Automation.ParameterBindingException" in err.exception.types
        assert err.exception.types[-1] == "System.Object"
        assert "Bogus" in err.exception.adapted_properties["Message"]
        assert err.activity == "Get-CMSiteSystemServer"


def test_psrp_wrong_password_is_refused_before_any_shell(emu_http: Emulator) -> None:
    before = len(emu_http.state.call_log())
    for auth in ("basic", "ntlm", "negotiate"):
        with pytest.raises(AuthenticationError):
            RunspacePool(wsman_for(emu_http, auth, password="wrong")).open()
    assert len(emu_http.state.call_log()) == before
    assert emu_http.service is not None
    assert emu_http.service.shells == {}


def test_psrp_secure_string_reaches_engine(emu_http: Emulator) -> None:
    with RunspacePool(wsman_for(emu_http, "negotiate")) as pool:
        pool.exchange_keys()
        ps = prelude(PowerShell(pool))
        ps.add_cmdlet("New-CMAccount")
        ps.add_parameter("UserName", "CONTOSO\\svc-new")
        # pypsrp's SecureString: <SS> encrypted with the exchanged session key.
        ps.add_parameter("Password", pool.serialize("S3cret!pw", ObjectMeta("SS")))
        ps.add_parameter("SiteCode", "PS1")
        ps.invoke()
        assert not ps.had_errors, [str(e) for e in ps.streams.error]
    assert emu_http.state.check_password("PS1", "CONTOSO\\svc-new", "S3cret!pw")
    calls = emu_http.state.call_log("New-CMAccount")
    assert calls
    assert "S3cret!pw" not in repr(calls[-1].params)


def test_psrp_restart_loses_no_committed_write(tmp_path: Any) -> None:
    state = str(tmp_path / "site.sqlite")
    with Emulator(state_path=state, receive_timeout=3) as emu:
        with RunspacePool(wsman_for(emu, "ntlm")) as pool:
            ps = prelude(PowerShell(pool))
            ps.add_cmdlet("Set-CMSiteSystemServer")
            ps.add_parameter("SiteSystemServerName", SERVER).add_parameter("SiteCode", "PS1")
            ps.add_parameter("EnableProxy", True)
            ps.add_parameter("ProxyServerName", "proxy-restart.contoso.com")
            ps.add_parameter("ProxyServerPort", 3128)
            ps.invoke()
            assert not ps.had_errors, [str(e) for e in ps.streams.error]
        port = emu.port
        emu.restart()
        assert emu.port == port
        with RunspacePool(wsman_for(emu, "ntlm")) as pool:
            ps = prelude(PowerShell(pool))
            ps.add_script(
                f"(Get-CMSiteSystemServer -SiteSystemServerName {SERVER} -SiteCode PS1).Props |"
                " Where-Object PropertyName -eq 'ProxyName' | ForEach-Object { $_.Value2 }"
            )
            out = ps.invoke()
            assert [str(o) for o in out] == ["proxy-restart.contoso.com"], [
                str(e) for e in ps.streams.error
            ]


# -- pywinrm -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", WINRM_MODES)
def test_winrm_run_ps(mode: str, emu_http: Emulator, emu_https: Emulator) -> None:
    emu = pick(mode, emu_http, emu_https)
    session = winrm_session(emu, mode.split("-", maxsplit=1)[0])
    r = session.run_ps(
        PRELUDE
        + f"Get-CMSiteSystemServer -SiteSystemServerName {SERVER} -SiteCode PS1 | "
        + "Select-Object -ExpandProperty NetworkOSPath"
    )
    assert r.status_code == 0, r.std_err
    assert r.std_out.decode().strip().lower() == f"\\\\{SERVER}".lower()


@pytest.mark.parametrize("mode", WINRM_MODES)
def test_winrm_errors(mode: str, emu_http: Emulator, emu_https: Emulator) -> None:
    emu = pick(mode, emu_http, emu_https)
    session = winrm_session(emu, mode.split("-", maxsplit=1)[0])
    r = session.run_ps(PRELUDE + "Get-CMSiteSystemServer -Bogus x")
    assert r.status_code == 1
    assert b"FullyQualifiedErrorId : NamedParameterNotFound," in r.std_err
    r = session.run_ps(PRELUDE + "Get-CMBogusThing")
    assert r.status_code == 1
    assert b"CommandNotFoundException" in r.std_err


def test_winrm_stdin_becomes_input(emu_http: Emulator) -> None:
    p = winrm_session(emu_http, "ntlm").protocol
    shell = p.open_shell()
    try:
        script = '$input | ForEach-Object { "got $_" }'
        enc = base64.b64encode(script.encode("utf-16-le")).decode()
        cid = p.run_command(
            shell, "powershell", ["-NoProfile", "-NonInteractive", "-EncodedCommand", enc]
        )
        p.send_command_input(shell, cid, "a\r\nb\r\n", end=True)
        out, err, code = p.get_command_output(shell, cid)
        p.cleanup_command(shell, cid)
    finally:
        p.close_shell(shell)
    assert code == 0, err
    assert out.decode().split() == ["got", "a", "got", "b"]


def test_winrm_command_line_too_long(emu_http: Emulator) -> None:
    session = winrm_session(emu_http, "basic")
    r = session.run_ps("'" + "x" * 6000 + "'")  # base64 of UTF-16 → > 8,191 characters
    assert r.status_code == 1
    assert b"The command line is too long." in r.std_err


def test_winrm_wrong_password(emu_http: Emulator) -> None:
    before = len(emu_http.state.call_log())
    for transport in ("basic", "ntlm"):
        with pytest.raises(InvalidCredentialsError):
            winrm_session(emu_http, transport, password="wrong").run_ps("1")
    assert len(emu_http.state.call_log()) == before


def test_fixtures(cm_emulator: Emulator, cm_emulator_https: Emulator) -> None:
    assert cm_emulator.endpoint.startswith("http://127.0.0.1:")
    assert cm_emulator_https.cert_path is not None
    for emu in (cm_emulator, cm_emulator_https):
        r = winrm_session(emu, "ntlm").run_ps(PRELUDE + "(Get-CMSite -SiteCode PS1).SiteCode")
        assert r.std_out.strip() == b"PS1", r.std_err


def test_basic_is_off_until_the_site_turns_it_on(
    cm_emulator: Emulator, cm_emulator_https: Emulator
) -> None:
    """WinRM's service defaults ("Installation and configuration for Windows Remote
    Management": Auth/Basic and AllowUnencrypted false): a client asking for Basic gets a 401
    offering Negotiate and Kerberos only, over HTTP and HTTPS alike; the lab emulators of this
    module ran `winrm set winrm/config/service/auth @{Basic="true"}` (`allow_basic=True`)."""
    for emu in (cm_emulator, cm_emulator_https):
        response = requests.post(
            f"{emu.endpoint}",
            headers={"Authorization": "Basic " + base64.b64encode(b"x:y").decode()},
            verify=emu.cert_path if emu.https else True,
            timeout=10,
        )
        assert response.status_code == 401
        assert "Basic" not in response.headers.get("WWW-Authenticate", "")
        with pytest.raises(AuthenticationError):
            RunspacePool(wsman_for(emu, "basic")).open()
        with pytest.raises(InvalidCredentialsError):
            winrm_session(emu, "basic").run_ps("1")


def test_lost_answer_is_committed_but_never_answered(cm_emulator: Emulator) -> None:
    emu = cm_emulator
    with emu.settings.lock:
        emu.settings.faults.lose_answer_cmdlet = "Set-CMSiteSystemServer"
        emu.settings.faults.lose_answer_on_call = 1
    pool = RunspacePool(wsman_for(emu, "ntlm"))
    pool.open()
    ps = prelude(PowerShell(pool))
    ps.add_cmdlet("Set-CMSiteSystemServer")
    ps.add_parameter("SiteSystemServerName", SERVER).add_parameter("SiteCode", "PS1")
    ps.add_parameter("EnableProxy", True).add_parameter("ProxyServerName", "lost.contoso.com")
    ps.add_parameter("ProxyServerPort", 8081)
    with pytest.raises(requests.exceptions.ConnectionError):
        ps.invoke()
    emu.settings.reset_faults()
    r = winrm_session(emu, "ntlm").run_ps(
        PRELUDE
        + f"(Get-CMSiteSystemServer -SiteSystemServerName {SERVER} -SiteCode PS1).Props | "
        + "Where-Object PropertyName -eq 'ProxyName' | ForEach-Object { $_.Value2 }"
    )
    assert r.std_out.strip() == b"lost.contoso.com", r.std_err
