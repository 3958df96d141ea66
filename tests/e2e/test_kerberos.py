"""Kerberos end to end against a real MIT KDC (issue 17, point 1), over PSRP and WinRS.

The realm (tests/e2e/kerberos_realm.py) runs krb5kdc on 127.0.0.1; the emulator accepts
Kerberos with pyspnego's GSSAPI acceptor and the realm's keytab, as a domain-joined Windows
endpoint does with its computer account's keys. The clients connect to 127.0.0.1 and name the
computer `cm01.contoso.com` for the SPN (`negotiate_hostname_override`, pypsrp's and the
Ansible psrp plugin's option; pywinrm's `kerberos_hostname_override`).

The emulator's NTLM password for CONTOSO\\cmadmin differs from the Kerberos one, so a run that
succeeds cannot have fallen back to NTLM. Messages are encrypted (message_encryption="always"),
MS-WSMV 2.2.9.1.

WinRM (winrm get winrm/config/service/auth: Kerberos = true, Negotiate = true by default) offers
both schemes in its 401: "Negotiate" carries SPNEGO or a raw Kerberos token, "Kerberos" a raw
Kerberos token, and encrypted bodies of a "Kerberos" context use the protocol
application/HTTP-Kerberos-session-encrypted (MS-WSMV 2.2.9.1.2); a WinRM endpoint answering
"WWW-Authenticate: Kerberos" and "Negotiate" is shown in rapid7/metasploit-framework pull
request 20490.
"""

from __future__ import annotations

import base64
import re
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cmproxy import (
    AuthenticationError,
    ConnectionInfo,
    ProxySettings,
    Session,
)
from cmproxy.emulator import wsman
from cmproxy.emulator.api import Emulator

from .conftest import SERVER, change_one_proxy, info_for
from .kerberos_realm import (
    PASSWORD,
    PRINCIPAL,
    REALM,
    SPN_HOST,
    Realm,
    missing,
    running_realm,
)

pytestmark = pytest.mark.e2e

#: The emulator's NTLM password for the same user: never the Kerberos one.
NTLM_PASSWORD = "Ntlm-Only-Passw0rd!"
NEW = ProxySettings(server="proxy-krb.contoso.com", port=8080)


@pytest.fixture(scope="session")
def realm() -> Iterator[Realm]:
    why = missing()
    if why:
        pytest.skip(why)
    with running_realm() as started:
        yield started


@pytest.fixture
def kerberos_env(realm: Realm) -> Iterator[Realm]:
    """krb5.conf, keytab and ccache of the realm for the client and the emulator (both read the
    environment of this process); an empty ccache at the start of each test."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in realm.env.items():
            mp.setenv(name, value)
        realm.kdestroy()
        yield realm
        realm.kdestroy()


def _emulator(realm: Realm, **kwargs: Any) -> Emulator:
    return Emulator(
        seed="demo",
        users={"CONTOSO\\cmadmin": NTLM_PASSWORD},
        keytab=realm.keytab,
        receive_timeout=5.0,
        **kwargs,
    )


def _info(emu: Emulator, transport: str, **extra: Any) -> ConnectionInfo:
    # PSRP gets its ticket from the password (pyspnego, krb5); WinRS uses the ticket cache.
    kerberos: dict[str, Any] = {
        "auth": "kerberos",
        "username": PRINCIPAL,
        "password": PASSWORD if transport == "psrp" else None,
        "negotiate_hostname_override": SPN_HOST,
    }
    return info_for(emu, transport).evolve(**{**kerberos, **extra})


@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_a_transaction_over_kerberos_changes_the_proxy(
    kerberos_env: Realm, transport: str, tmp_path: Path
) -> None:
    """Read the site and change one server's proxy, authenticated by the KDC's tickets.

    PSRP gets its ticket from the password; WinRS (pywinrm, pykerberos) uses the ticket cache,
    as after `kinit`.
    """
    if transport == "winrm":
        kerberos_env.kinit()
    with _emulator(kerberos_env) as emu, Session(_info(emu, transport)) as session:
        change_one_proxy(emu, session, tmp_path / "journal.sqlite3", NEW)
        users = {call.user for call in emu.state.call_log()}
        assert users == {"CONTOSO\\cmadmin"}, users


def test_psrp_over_the_plain_kerberos_scheme(kerberos_env: Realm) -> None:
    """With Negotiate off (Auth/Negotiate = false) WinRM offers only "Kerberos"; pypsrp then
    sends "Kerberos <token>" and encrypts under HTTP-Kerberos-session-encrypted."""
    with (
        _emulator(kerberos_env, allow_negotiate=False) as emu,
        Session(_info(emu, "psrp")) as session,
    ):
        assert SERVER.lower() in {s.name.lower() for s in session.read_state().servers}


def _soap_get_config() -> bytes:
    ns = wsman.NS
    return (
        f'<s:Envelope xmlns:s="{ns["s"]}" xmlns:a="{ns["wsa"]}" xmlns:w="{ns["wsman"]}">'
        f"<s:Header><a:Action>{wsman.ACTION_GET}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        f"<w:ResourceURI>{wsman.RESOURCE_CONFIG}</w:ResourceURI>"
        "<w:OperationTimeout>PT5S</w:OperationTimeout>"
        "<w:MaxEnvelopeSize>153600</w:MaxEnvelopeSize></s:Header><s:Body/></s:Envelope>"
    ).encode()


def test_the_kerberos_scheme_answers_in_the_kerberos_encryption_protocol(
    kerberos_env: Realm,
) -> None:
    """MS-WSMV 2.2.9.1.2, on the wire: the 401 offers Kerberos, the bare Kerberos token
    authenticates the connection (its AP-REP comes back under "Kerberos"), and the encrypted
    answer carries protocol="application/HTTP-Kerberos-session-encrypted"."""
    import spnego

    protocol = "application/HTTP-Kerberos-session-encrypted"
    with _emulator(kerberos_env) as emu, requests.Session() as http:
        http.trust_env = False
        first = http.post(emu.endpoint, data=b"", timeout=10)
        assert first.status_code == 401
        offers = [o.strip() for o in first.headers["WWW-Authenticate"].split(",")]
        assert {"Negotiate", "Kerberos"} <= set(offers)
        ctx = spnego.client(
            PRINCIPAL, PASSWORD, hostname=SPN_HOST, service="WSMAN", protocol="kerberos"
        )
        token = ctx.step()
        assert token is not None
        auth = http.post(
            emu.endpoint,
            data=b"",
            headers={"Authorization": "Kerberos " + base64.b64encode(token).decode()},
            timeout=10,
        )
        assert auth.status_code == 200
        reply = re.match(r"Kerberos (\S+)", auth.headers["WWW-Authenticate"])
        assert reply is not None
        ctx.step(base64.b64decode(reply.group(1)))
        assert ctx.complete

        plain = _soap_get_config()
        header, enc, _ = ctx.wrap_winrm(plain)
        body = (
            b"--Encrypted Boundary\r\n"
            b"\tContent-Type: " + protocol.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(plain)).encode()
            + b"\r\n--Encrypted Boundary\r\n"
            b"\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(header))
            + header
            + enc
            + b"--Encrypted Boundary--\r\n"
        )
        answer = http.post(
            emu.endpoint,
            data=body,
            headers={
                "Content-Type": f'multipart/encrypted;protocol="{protocol}";'
                'boundary="Encrypted Boundary"'
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.status_code
        assert f'protocol="{protocol}"' in answer.headers["Content-Type"]
        parts = answer.content.split(b"--Encrypted Boundary\r\n")
        assert f"Content-Type: {protocol}".encode() in parts[1]
        data = parts[2].split(b"\tContent-Type: application/octet-stream\r\n", 1)[1]
        data = data.removesuffix(b"--Encrypted Boundary--\r\n")
        (hlen,) = struct.unpack("<i", data[:4])
        xml = ctx.unwrap_winrm(data[4 : 4 + hlen], data[4 + hlen :])
        assert b"MaxEnvelopeSizekb" in xml


def test_a_wrong_password_is_an_authentication_error_that_says_so(kerberos_env: Realm) -> None:
    with _emulator(kerberos_env) as emu:
        info = _info(emu, "psrp", password="Not-The-Passw0rd")
        with pytest.raises(AuthenticationError) as caught:
            Session(info).open()
    message = str(caught.value)
    assert "the password is wrong" in message, message
    assert PRINCIPAL in message
    assert "Not-The-Passw0rd" not in message


def test_an_unknown_principal_is_an_authentication_error_that_says_so(
    kerberos_env: Realm,
) -> None:
    with _emulator(kerberos_env) as emu:
        info = _info(emu, "psrp", username=f"nobody@{REALM}")
        with pytest.raises(AuthenticationError) as caught:
            Session(info).open()
    message = str(caught.value)
    assert "the KDC does not know this user principal" in message, message
    assert PASSWORD not in message


def test_winrs_without_a_ticket_says_to_run_kinit(kerberos_env: Realm) -> None:
    with _emulator(kerberos_env) as emu, pytest.raises(AuthenticationError) as caught:
        Session(_info(emu, "winrm")).open()
    assert "run kinit" in str(caught.value), str(caught.value)


def test_an_spn_the_kdc_does_not_know_says_to_set_the_hostname(kerberos_env: Realm) -> None:
    """Connecting by address without the override asks for WSMAN/127.0.0.1, which no
    directory knows (as with a real domain)."""
    with _emulator(kerberos_env) as emu:
        info = _info(emu, "psrp", negotiate_hostname_override=None)
        with pytest.raises(AuthenticationError) as caught:
            Session(info).open()
    assert "negotiate_hostname_override" in str(caught.value), str(caught.value)


def test_a_principal_of_a_realm_maps_to_the_configured_domain_user(kerberos_env: Realm) -> None:
    """cmadmin@CONTOSO.COM is CONTOSO\\cmadmin (the NetBIOS name is the realm's first label);
    a session runs as that user, not as an unknown principal."""
    with _emulator(kerberos_env) as emu, Session(_info(emu, "psrp")) as session:
        session.read_state()
        assert {call.user for call in emu.state.call_log()} == {"CONTOSO\\cmadmin"}
