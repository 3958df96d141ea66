"""The emulator's Negotiate/Kerberos/CredSSP acceptor, in process (no HTTP, no KDC).

WinRM's defaults (winrm get winrm/config/service/auth): Negotiate = true, Kerberos = true,
CredSSP = false, so a 401 offers "Negotiate" and "Kerberos" (and Basic where enabled); a WinRM
401 listing both is shown in rapid7/metasploit-framework pull request 20490. CredSSP bodies are
encrypted by the CredSSP TLS session under application/HTTP-CredSSP-session-encrypted and cut
into 16 KiB parts, multipart/x-multi-encrypted (MS-WSMV 2.2.9.1.3).
"""

from __future__ import annotations

import base64
import importlib.util
import struct

import pytest
import spnego

from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER
from cmproxy.emulator.http_auth import (
    CREDSSP_ENCRYPTED_PROTOCOL,
    AuthConfig,
    AuthError,
    ConnectionAuth,
    UserStore,
)

needs_credssp_client = pytest.mark.skipif(
    importlib.util.find_spec("requests_credssp") is None,
    reason="requests-credssp not installed (pip install -e '.[credssp]')",
)


def _auth(**allow: bool) -> ConnectionAuth:
    """A connection's authenticator; `allow` sets the allow_* switches of AuthConfig."""
    UserStore.register({DEFAULT_USER: DEFAULT_PASSWORD})
    config = AuthConfig(users={DEFAULT_USER: DEFAULT_PASSWORD}, https=False)
    for name, value in allow.items():
        setattr(config, name, value)
    return ConnectionAuth(config)


def test_a_401_offers_the_enabled_schemes() -> None:
    """WinRM's defaults: Negotiate and Kerberos on, Basic and CredSSP off; a lab turns Basic on
    with `winrm set winrm/config/service/auth @{Basic="true"}` (`allow_basic=True`)."""
    assert _auth().offer() == ["Negotiate", "Kerberos"]
    assert _auth(allow_basic=True).offer() == ["Negotiate", "Kerberos", 'Basic realm="WSMAN"']
    assert "CredSSP" in _auth(allow_credssp=True).offer()
    assert _auth(allow_negotiate=False).offer() == ["Kerberos"]


@pytest.mark.parametrize(("scheme", "setting"), [("Kerberos", "allow_kerberos"), ("CredSSP", "")])
def test_a_disabled_scheme_is_refused(scheme: str, setting: str) -> None:
    auth = _auth(**({setting: False} if setting else {}))  # CredSSP is off by default
    with pytest.raises(AuthError, match="disabled"):
        auth.authenticate(f"{scheme} " + base64.b64encode(b"\x60\x01\x00").decode())


def _credssp_handshake(auth: ConnectionAuth, password: str) -> spnego.ContextProxy:
    client = spnego.client(DEFAULT_USER, password, protocol="credssp")
    token = client.step()
    while token is not None:
        challenge = auth.authenticate("CredSSP " + base64.b64encode(token).decode())
        if challenge is None:
            break
        answer = challenge.headers[0].split(" ", 1)[1]
        token = client.step(base64.b64decode(answer))
    return client


def _parts(body: bytes) -> list[tuple[int, bytes, bytes]]:
    """(OriginalContent Length, signature, sealed data) of each part of an encrypted body."""
    out = []
    chunks = body.split(b"--Encrypted Boundary\r\n")[1:]
    for head, payload in zip(chunks[0::2], chunks[1::2], strict=True):
        length = int(head.split(b"Length=")[1].split(b"\r\n")[0])
        data = payload.split(b"application/octet-stream\r\n", 1)[1]
        data = data.removesuffix(b"--Encrypted Boundary--\r\n")
        (hlen,) = struct.unpack("<i", data[:4])
        out.append((length, data[4 : 4 + hlen], data[4 + hlen :]))
    return out


@needs_credssp_client
def test_credssp_answers_longer_than_16_kib_come_in_16_kib_parts() -> None:
    auth = _auth(allow_credssp=True)
    client = _credssp_handshake(auth, DEFAULT_PASSWORD)
    assert client.complete
    assert auth.user == DEFAULT_USER
    data = bytes(range(256)) * 160  # 40,960 bytes
    body, content_type = auth.wrap_body(data)
    assert content_type.startswith("multipart/x-multi-encrypted;")
    assert f'protocol="{CREDSSP_ENCRYPTED_PROTOCOL}"' in content_type
    parts = _parts(body)
    assert [length for length, _, _ in parts] == [16384, 16384, 8192]
    assert b"".join(client.unwrap_winrm(sig, sealed) for _, sig, sealed in parts) == data
    small, small_type = auth.wrap_body(b"<s:Envelope/>")
    assert small_type.startswith("multipart/encrypted;")
    assert len(_parts(small)) == 1


@needs_credssp_client
def test_credssp_refuses_a_password_the_user_does_not_have() -> None:
    """The inner NTLM proves the password, so a wrong one never reaches the delegation: the
    acceptor answers a TSRequest carrying the NTSTATUS (CredSSP 6), which the client raises."""
    auth = _auth(allow_credssp=True)
    with pytest.raises(spnego.exceptions.SpnegoError, match="NTStatus"):
        _credssp_handshake(auth, "Not-" + DEFAULT_PASSWORD)
    assert auth.user is None
    assert not auth.can_encrypt
