"""An auth protocol whose libraries are not installed fails before connecting, in one line
naming the extra that brings them (issue 17, point 1). The check is tested with a module
finder that pretends the modules are absent, not by uninstalling them."""

from __future__ import annotations

from typing import Any

import pytest

from cmproxy import ConnectionInfo, ValidationError
from cmproxy._extras import missing_auth_modules, require_auth_support
from cmproxy.transports import create_transport


def _without(*absent: str) -> Any:
    def find_spec(name: str) -> object | None:
        return None if name in absent else object()

    return find_spec


@pytest.mark.parametrize(
    ("auth", "transport", "absent", "extra"),
    [
        ("kerberos", "psrp", ("gssapi",), "kerberos"),
        ("kerberos", "psrp", ("krb5",), "kerberos"),
        ("kerberos", "winrm", ("kerberos",), "kerberos"),  # pykerberos, pywinrm's library
        ("credssp", "psrp", ("requests_credssp",), "credssp"),
        ("credssp", "winrm", ("requests_credssp",), "credssp"),
    ],
)
def test_a_missing_library_is_one_line_naming_the_extra(
    auth: str, transport: str, absent: tuple[str, ...], extra: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        require_auth_support(auth, transport, find_spec=_without(*absent), platform="linux")
    message = str(caught.value)
    assert "\n" not in message
    assert f"pip install 'cmproxy[{extra}]'" in message
    assert absent[0] in message
    assert caught.value.field == "auth"


@pytest.mark.parametrize("auth", ["negotiate", "ntlm", "basic", "certificate"])
def test_auths_of_the_base_install_need_no_extra(auth: str) -> None:
    everything_absent = _without("gssapi", "krb5", "kerberos", "requests_credssp")
    assert missing_auth_modules(auth, "psrp", find_spec=everything_absent) is None
    assert missing_auth_modules(auth, "winrm", find_spec=everything_absent) is None


def test_kerberos_on_windows_uses_sspi_for_psrp_and_winkerberos_for_winrs() -> None:
    absent = _without("gssapi", "krb5", "kerberos", "winkerberos")
    assert missing_auth_modules("kerberos", "psrp", find_spec=absent, platform="win32") is None
    assert missing_auth_modules("kerberos", "winrm", find_spec=absent, platform="win32") == (
        "kerberos",
        ["winkerberos"],
    )


def test_installed_libraries_pass() -> None:
    require_auth_support("kerberos", "psrp", find_spec=_without(), platform="linux")


def test_create_transport_checks_before_it_connects(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's one entry to a transport runs the check (here: gssapi reported absent)."""
    import cmproxy._extras as extras

    real = extras.require_auth_support

    def check(auth: str, transport: str) -> None:
        real(auth, transport, find_spec=_without("gssapi"), platform="linux")

    monkeypatch.setattr("cmproxy.transports.require_auth_support", check)
    info = ConnectionInfo(server="cm01.contoso.com", auth="kerberos", username="u@CONTOSO.COM")
    with pytest.raises(ValidationError, match=r"pip install 'cmproxy\[kerberos\]'"):
        create_transport(info)


def test_winrs_kerberos_refuses_a_password_it_would_ignore() -> None:
    """pywinrm's Kerberos only uses the ticket cache; a password would be silently dropped."""
    with pytest.raises(ValidationError) as caught:
        ConnectionInfo(
            server="cm01.contoso.com",
            auth="kerberos",
            transport="winrm",
            username="cmadmin@CONTOSO.COM",
            password="S3cret-Value",
        )
    assert "kinit" in str(caught.value)
    assert "S3cret-Value" not in str(caught.value)


def test_the_spn_host_name_reaches_both_clients() -> None:
    info = ConnectionInfo(
        server="10.0.0.5", auth="kerberos", negotiate_hostname_override="cm01.contoso.com"
    )
    assert info.to_pypsrp_kwargs()["negotiate_hostname_override"] == "cm01.contoso.com"
    from_ansible = ConnectionInfo.from_ansible(
        {
            "ansible_host": "10.0.0.5",
            "ansible_psrp_auth": "kerberos",
            "ansible_psrp_negotiate_hostname_override": "cm01",
        }
    )
    assert from_ansible.negotiate_hostname_override == "cm01"
