"""ConnectionInfo: safe defaults, refusals, env and Ansible names, secrets never shown."""

from __future__ import annotations

import pytest

from cmproxy._exceptions import ValidationError
from cmproxy.connection import ANSIBLE_OPTION_NAMES, ENV_VARS, ConnectionInfo
from cmproxy.model import Secret

PASSWORD = "S3cr3t-'$(x)`;pw"


def test_defaults_are_safe() -> None:
    info = ConnectionInfo(server="cm01.contoso.com", username="CONTOSO\\admin", password="pw")
    assert info.scheme == "https"
    assert info.effective_port == 5986
    assert info.auth == "negotiate"
    assert info.cert_validation is True
    assert info.message_encryption == "auto"
    assert info.transport == "psrp"
    assert info.encrypts
    assert info.endpoint == "https://cm01.contoso.com:5986/wsman"


def test_http_port_default_and_ipv6_endpoint() -> None:
    info = ConnectionInfo(server="::1", scheme="http", username="u", password="p")
    assert info.endpoint == "http://[::1]:5985/wsman"
    assert info.encrypts  # negotiate encrypts messages over http


def test_password_never_in_repr_or_str() -> None:
    info = ConnectionInfo(server="h", username="u", password=PASSWORD)
    assert isinstance(info.password, Secret)
    for text in (repr(info), str(info), repr(info.to_pypsrp_kwargs().keys())):
        assert PASSWORD not in text
    assert info.to_pypsrp_kwargs()["password"] == PASSWORD


def test_basic_over_http_refused_unless_allowed() -> None:
    with pytest.raises(ValidationError, match="unencrypted"):
        ConnectionInfo(server="h", scheme="http", auth="basic", username="u", password="p")
    info = ConnectionInfo(
        server="h",
        scheme="http",
        auth="basic",
        username="u",
        password="p",
        allow_basic_over_http=True,
    )
    assert not info.encrypts


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"auth": "digest"}, "auth"),
        ({"scheme": "ftp"}, "scheme"),
        ({"port": 0}, "port"),
        ({"port": "x"}, "port"),
        ({"transport": "ssh"}, "transport"),
        ({"auth": "basic", "message_encryption": "always"}, "message_encryption"),
        ({"auth": "certificate"}, "certificate_pem"),
        ({"ca_cert": "/ca.pem", "cert_validation": False}, "ca_cert"),
        ({"read_timeout": 10, "operation_timeout": 20}, "operation_timeout"),
        ({"site_code": "TOOLONG"}, "site_code"),
        ({"server": "https://h/wsman"}, "server"),
    ],
)
def test_invalid_values_name_the_field(kwargs: dict[str, object], field: str) -> None:
    base: dict[str, object] = {"server": "h", "username": "u", "password": "p"}
    with pytest.raises(ValidationError) as err:
        ConnectionInfo(**{**base, **kwargs})  # type: ignore[arg-type]
    assert err.value.field == field


def test_password_auth_needs_a_user() -> None:
    with pytest.raises(ValidationError, match="username"):
        ConnectionInfo(server="h", auth="ntlm")
    ConnectionInfo(server="h", auth="kerberos")  # a ticket is enough


def test_from_env() -> None:
    env = {
        "CMPROXY_SERVER": "cm01",
        "CMPROXY_USERNAME": "CONTOSO\\a",
        "CMPROXY_PASSWORD": PASSWORD,
        "CMPROXY_PORT": "15986",
        "CMPROXY_AUTH": "NTLM",
        "CMPROXY_CERT_VALIDATION": "false",
        "CMPROXY_SITE_CODE": "ps1",
        "CMPROXY_TRANSPORT": "winrm",
        "CMPROXY_READ_TIMEOUT": "90",
        "UNRELATED": "x",
    }
    info = ConnectionInfo.from_env(environ=env)
    assert (info.server, info.port, info.auth, info.site_code) == ("cm01", 15986, "ntlm", "PS1")
    assert info.cert_validation is False
    assert info.transport == "winrm"
    assert info.read_timeout == 90
    assert info.password is not None and info.password.reveal() == PASSWORD
    live = ConnectionInfo.from_env(
        "CMPROXY_LIVE_", environ={"CMPROXY_LIVE_SERVER": "lab", "CMPROXY_LIVE_AUTH": "kerberos"}
    )
    assert live.server == "lab"
    with pytest.raises(ValidationError, match="CMPROXY_SERVER"):
        ConnectionInfo.from_env(environ={})


def test_env_var_names_are_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "sessions.md").read_text(encoding="utf-8")
    for var in ENV_VARS.values():
        assert var in doc, var


def test_from_ansible_option_names() -> None:
    info = ConnectionInfo.from_ansible(
        {
            "remote_addr": "cm01",
            "remote_user": "CONTOSO\\a",
            "remote_password": "pw",
            "port": 5985,
            "auth": "ntlm",
            "cert_validation": "ignore",
            "ca_cert": "/etc/ca.pem",
            "connection_timeout": 5,
            "read_timeout": 40,
            "operation_timeout": 30,
            "message_encryption": "always",
            "path": "wsman",
        },
        site_code="PS1",
    )
    assert info.scheme == "http"  # port 5985 and no protocol → http, like the plugin
    assert info.cert_validation is False and info.ca_cert is None
    assert info.message_encryption == "always"
    assert info.site_code == "PS1"


def test_from_ansible_host_variables() -> None:
    hostvars = {
        "ansible_host": "cm02",
        "ansible_user": "u",
        "ansible_password": "pw",
        "ansible_psrp_protocol": "https",
        "ansible_psrp_port": 15986,
        "ansible_psrp_cert_trust_path": "/ca.pem",
        "ansible_psrp_auth": "basic",
        "inventory_hostname": "ignored",
    }
    info = ConnectionInfo.from_ansible(hostvars)
    assert (info.server, info.port, info.scheme, info.auth) == ("cm02", 15986, "https", "basic")
    assert info.ca_cert == "/ca.pem"
    assert info.to_pypsrp_kwargs()["cert_validation"] == "/ca.pem"


def test_ansible_names_cover_the_plugin_options() -> None:
    for option in (
        "remote_addr",
        "remote_user",
        "remote_password",
        "port",
        "protocol",
        "path",
        "auth",
        "cert_validation",
        "ca_cert",
        "connection_timeout",
        "read_timeout",
        "message_encryption",
    ):
        assert option in ANSIBLE_OPTION_NAMES
        assert f"ansible_psrp_{option}" in ANSIBLE_OPTION_NAMES or option.startswith("remote_")


def test_evolve_revalidates() -> None:
    info = ConnectionInfo(server="h", username="u", password="p")
    assert info.evolve(port=1234).effective_port == 1234
    with pytest.raises(ValidationError):
        info.evolve(scheme="http", auth="basic")
