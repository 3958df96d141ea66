"""The transports' codecs, without a network: the WinRS request (secrets kept out of its JSON)
and output parsing, and the PSRP output unpacking."""

from __future__ import annotations

import json

import pytest

from cmproxy._exceptions import PowerShellError, TransportError
from cmproxy.model import Secret
from cmproxy.transports.base import Step
from cmproxy.transports.psrp import _unpack
from cmproxy.transports.winrm import _parse, encode_request


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


def test_psrp_output_comes_unpacked_in_order_and_anything_else_is_refused() -> None:
    assert _unpack(['[{"Kind": "Site"}, 2]', '{"Kind": "Role"}']) == (
        {"Kind": "Site"},
        2,
        {"Kind": "Role"},
    )
    for bad in (["not json"], [{"Kind": "Site"}], ["null"]):
        with pytest.raises(TransportError, match="not packed JSON"):
            _unpack(bad)
