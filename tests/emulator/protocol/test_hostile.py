"""Hostile input: the emulator answers a fault or a 4xx, never crashes, hangs or reads files.

A bounded, seeded fuzz loop (300 requests) mixes broken XML, entity tricks, oversized bodies,
garbage PSRP fragments and auth tokens; afterwards a normal client must still work.
"""

from __future__ import annotations

import base64
import random
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pypsrp.powershell import PowerShell, RunspacePool

from cmproxy.emulator import wsman
from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER, Emulator
from cmproxy.emulator.engine.values import CommandSpec, InvocationResult

from .. import clients

NS = wsman.NS
AUTH = (DEFAULT_USER, DEFAULT_PASSWORD)
SOAP = {"Content-Type": "application/soap+xml;charset=UTF-8"}


class EchoEngine:
    """Answers every pipeline with its command names; hostile tests need no site."""

    def open_runspace(self, user: str) -> EchoEngine:
        return self

    def invoke(
        self, commands: Any, input_objects: Any = (), stop: threading.Event | None = None
    ) -> InvocationResult:
        return InvocationResult(output=[c.name for c in commands if isinstance(c, CommandSpec)])

    def run_script(
        self, text: str, input_objects: Any = (), stop: threading.Event | None = None
    ) -> InvocationResult:
        return InvocationResult(output=[text])

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(
        allow_basic=True,
        allow_unencrypted=True,
        receive_timeout=0.5,
        engine_factory=lambda s, st: EchoEngine(),
    ) as e:
        yield e


def soap(action: str, body: str = "", shell: str | None = None, resource: str = "") -> bytes:
    sel = f'<w:SelectorSet><w:Selector Name="ShellId">{shell}</w:Selector></w:SelectorSet>'
    return (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["wsa"]}" xmlns:w="{NS["wsman"]}" '
        f'xmlns:rsp="{NS["rsp"]}"><s:Header><a:Action>{action}</a:Action>'
        f"<a:MessageID>uuid:{uuid.uuid4()}</a:MessageID>"
        f"<w:ResourceURI>{resource or wsman.RESOURCE_PWSH}</w:ResourceURI>"
        f"<w:OperationTimeout>PT1S</w:OperationTimeout>{sel if shell else ''}</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def post(emu: Emulator, data: bytes, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("auth", AUTH)
    kwargs.setdefault("headers", SOAP)
    return requests.post(emu.endpoint, data=data, timeout=5, **kwargs)


def assert_refused(resp: requests.Response) -> None:
    assert 400 <= resp.status_code < 600, resp.status_code
    assert resp.headers.get("Content-Length") == str(len(resp.content))
    if resp.status_code == 500 and resp.content:
        assert b"WSManFault" in resp.content


def open_pool(emu: Emulator) -> str:
    """Open a real pool and leave it open; return its ShellId."""
    pool = clients.open_pool(emu, operation_timeout=20, read_timeout=30)
    return str(pool.id).upper()


def client_still_works(emu: Emulator) -> None:
    wsm = clients.psrp_wsman(emu, auth="ntlm", operation_timeout=2, read_timeout=5)
    with RunspacePool(wsm) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Alive")
        assert ps.invoke() == ["Get-Alive"]


def test_external_entity_is_never_resolved(emu: Emulator, tmp_path: Any) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    for doctype in (
        f'<!DOCTYPE s [<!ENTITY x SYSTEM "file://{secret}">]>',
        '<!DOCTYPE s SYSTEM "file:///etc/passwd">',
        '<!DOCTYPE s [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]>',
    ):
        data = doctype.encode() + soap(wsman.ACTION_GET, "&x;", resource=wsman.RESOURCE_CONFIG)
        resp = post(emu, data)
        assert_refused(resp)
        assert b"TOP-SECRET" not in resp.content
        assert b"root:" not in resp.content


def test_billion_laughs(emu: Emulator) -> None:
    lol = "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10 if i else "lol"}">' for i in range(10)
    )
    data = f"<!DOCTYPE s [{lol}]>".encode() + soap(wsman.ACTION_GET, "&l9;")
    assert_refused(post(emu, data))


def test_oversized_body_is_refused_without_reading_it(emu: Emulator) -> None:
    resp = post(emu, b"<" + b"a" * (wsman.MAX_BODY_BYTES + 10))
    assert resp.status_code == 413


def test_lying_content_length_does_not_hang(emu: Emulator) -> None:
    with socket.create_connection((emu.host, emu.port), timeout=5) as s:
        auth = base64.b64encode(f"{DEFAULT_USER}:{DEFAULT_PASSWORD}".encode()).decode()
        s.sendall(
            b"POST /wsman HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n"
            + f"Authorization: Basic {auth}\r\n\r\n".encode()
        )
        assert s.recv(200).startswith(b"HTTP/1.1 413")


def test_garbage_auth_tokens(emu: Emulator) -> None:
    for header in (
        "Negotiate !!!notbase64",
        "Negotiate " + base64.b64encode(b"NTLMSSP\x00\x03garbage").decode(),
        "Negotiate " + base64.b64encode(b"\x60\x05garbage").decode(),
        "NTLM " + base64.b64encode(b"\x00" * 64).decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Kerberos abc",
        "Basic",
    ):
        resp = requests.post(
            emu.endpoint, data=b"x", headers={**SOAP, "Authorization": header}, timeout=5
        )
        assert resp.status_code == 401, header


def test_garbage_psrp_fragments_answer_a_fault(emu: Emulator) -> None:
    shell = open_pool(emu)
    for junk in (b"\x00" * 5, b"\xff" * 64, b"\x00" * 21 + b"garbage-message-body" * 3):
        b64 = base64.b64encode(junk).decode()
        body = f'<rsp:Send><rsp:Stream Name="stdin">{b64}</rsp:Stream></rsp:Send>'
        assert_refused(post(emu, soap(wsman.ACTION_SEND, body, shell)))
    body = '<rsp:Send><rsp:Stream Name="stdin">not base64 !!</rsp:Stream></rsp:Send>'
    assert_refused(post(emu, soap(wsman.ACTION_SEND, body, shell)))
    body = (
        f'<rsp:CommandLine CommandId="{uuid.uuid4()}">'
        "<rsp:Arguments>AAAA</rsp:Arguments></rsp:CommandLine>"
    )
    post(emu, soap(wsman.ACTION_COMMAND, body, shell))  # incomplete fragment: no crash
    client_still_works(emu)


def _fuzz_cases(rng: random.Random, shell: str) -> Iterator[tuple[bytes, dict[str, str]]]:
    actions = [
        wsman.ACTION_CREATE,
        wsman.ACTION_COMMAND,
        wsman.ACTION_SEND,
        wsman.ACTION_RECEIVE,
        wsman.ACTION_SIGNAL,
        wsman.ACTION_GET,
        wsman.ACTION_DELETE,
        "urn:bogus",
    ]
    bodies = [
        "",
        "<rsp:Shell/>",
        '<rsp:Receive><rsp:DesiredStream CommandId="nope">stdout</rsp:DesiredStream></rsp:Receive>',
        "<rsp:Receive/>",
        '<rsp:Signal CommandId="x"><rsp:Code>urn:weird</rsp:Code></rsp:Signal>',
        "<rsp:CommandLine><rsp:Command>cmd /c del *</rsp:Command></rsp:CommandLine>",
        '<rsp:CommandLine CommandId="not-a-guid"/>',
        '<rsp:Shell ShellId="zzz"><creationXml xmlns="http://schemas.microsoft.com/powershell">'
        "AAAA</creationXml></rsp:Shell>",
    ]
    shells = [shell, "", str(uuid.uuid4()), "'; DROP TABLE x; --", None]
    resources = [wsman.RESOURCE_PWSH, wsman.RESOURCE_CMD, wsman.RESOURCE_CONFIG, "urn:x"]
    for _ in range(300):
        kind = rng.randrange(6)
        if kind == 0:  # well-formed but wrong
            yield (
                soap(
                    rng.choice(actions),
                    rng.choice(bodies),
                    rng.choice(shells),
                    rng.choice(resources),
                ),
                SOAP,
            )
        elif kind == 1:  # truncated / mutated XML
            data = bytearray(soap(rng.choice(actions), rng.choice(bodies), shell))
            for _ in range(rng.randrange(1, 8)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data[: rng.randrange(1, len(data))]), SOAP
        elif kind == 2:  # random bytes
            yield rng.randbytes(rng.randrange(1, 2000)), SOAP
        elif kind == 3:  # claims to be encrypted on a Basic connection
            yield (
                b"--Encrypted Boundary\r\n" + rng.randbytes(100),
                {"Content-Type": 'multipart/encrypted;protocol="x";boundary="Encrypted Boundary"'},
            )
        elif kind == 4:  # deep nesting
            depth = rng.randrange(100, 3000)
            yield b"<a>" * depth + b"</a>" * depth, SOAP
        else:  # not SOAP at all
            yield b'{"json": true}', {"Content-Type": "application/json"}


def test_fuzzed_stream_then_normal_client(emu: Emulator) -> None:
    rng = random.Random(20240213)
    shell = open_pool(emu)
    threads_before = threading.active_count()
    session = requests.Session()
    session.auth = AUTH
    for data, headers in _fuzz_cases(rng, shell):
        try:
            resp = session.post(emu.endpoint, data=data, headers=headers, timeout=5)
        except requests.exceptions.ConnectionError:
            session = requests.Session()  # the server may close a connection it distrusts
            session.auth = AUTH
            continue
        assert resp.status_code in (200, 400, 401, 404, 411, 413, 500), resp.status_code
        assert resp.headers.get("Content-Length") == str(len(resp.content))
    session.close()
    client_still_works(emu)
    # No worker is left hanging on a bad request (idle keep-alive threads end with clients).
    assert threading.active_count() <= threads_before + 10
