"""WSMan-level behaviour: faults, long polls, envelope sizes, injected faults, pipeline details.

Raw SOAP over `requests` (Basic over HTTP) where the clients would hide the detail; the real
clients where their reaction is what matters (retrying w:TimedOut, seeing a dropped answer).
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any, cast

import pytest
import requests
from defusedxml import ElementTree as SafeET
from pypsrp.complex_objects import ObjectMeta
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool

from cmproxy.emulator import wsman
from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER, Emulator
from cmproxy.emulator.engine.values import (
    SWITCH_PRESENT,
    CommandSpec,
    ErrorRecord,
    InvocationResult,
    PSObj,
    SecureValue,
)
from cmproxy.emulator.settings import AnswerLost, EmulatorSettings

from ..clients import psrp_wsman

pytestmark = pytest.mark.e2e

NS = wsman.NS


def envelope(
    action: str,
    *,
    resource: str = wsman.RESOURCE_CMD,
    body: str = "",
    selectors: dict[str, str] | None = None,
    message_id: str | None = None,
    timeout: str = "PT2S",
    max_envelope: int = 153600,
) -> tuple[str, bytes]:
    mid = message_id or f"uuid:{str(uuid.uuid4()).upper()}"
    sel = ""
    if selectors:
        sel = (
            "<w:SelectorSet>"
            + "".join(f'<w:Selector Name="{k}">{v}</w:Selector>' for k, v in selectors.items())
            + "</w:SelectorSet>"
        )
    xml = (
        f'<s:Envelope xmlns:s="{NS["s"]}" xmlns:a="{NS["wsa"]}" xmlns:w="{NS["wsman"]}" '
        f'xmlns:rsp="{NS["rsp"]}">'
        f"<s:Header><a:Action>{action}</a:Action><a:MessageID>{mid}</a:MessageID>"
        f"<w:ResourceURI>{resource}</w:ResourceURI><w:OperationTimeout>{timeout}"
        f"</w:OperationTimeout><w:MaxEnvelopeSize>{max_envelope}</w:MaxEnvelopeSize>{sel}"
        f"</s:Header><s:Body>{body}</s:Body></s:Envelope>"
    )
    return mid, xml.encode()


def post(emu: Emulator, data: bytes, timeout: float = 10) -> requests.Response:
    return requests.post(
        emu.endpoint,
        data=data,
        auth=(DEFAULT_USER, DEFAULT_PASSWORD),
        headers={"Content-Type": "application/soap+xml;charset=UTF-8"},
        timeout=timeout,
    )


def fault_code(resp: requests.Response) -> int:
    root = SafeET.fromstring(resp.content)
    f = root.find("s:Body/s:Fault/s:Detail/wsmanfault:WSManFault", NS)
    assert f is not None, resp.text
    return int(f.attrib["Code"])


def relates_to(resp: requests.Response) -> str:
    root = SafeET.fromstring(resp.content)
    el = root.find("s:Header/wsa:RelatesTo", NS)
    return el.text if el is not None and el.text else ""


def create_cmd_shell(emu: Emulator) -> str:
    _, data = envelope(
        wsman.ACTION_CREATE,
        body="<rsp:Shell><rsp:InputStreams>stdin</rsp:InputStreams>"
        "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
    )
    resp = post(emu, data)
    assert resp.status_code == 200, resp.text
    root = SafeET.fromstring(resp.content)
    sel = root.find(".//wsman:Selector[@Name='ShellId']", NS)
    assert sel is not None
    assert sel.text
    return str(sel.text)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(allow_basic=True, allow_unencrypted=True, receive_timeout=1.5) as e:
        yield e


@pytest.fixture
def clean(emu: Emulator) -> Iterator[Emulator]:
    emu.settings.reset_faults()
    yield emu
    emu.settings.reset_faults()


def test_relates_to_echoes_message_id_and_content_length(emu: Emulator) -> None:
    mid = "uuid:0A1B2C3D-0000-4000-8000-ABCDEFABCDEF"
    _, data = envelope(wsman.ACTION_GET, resource=wsman.RESOURCE_CONFIG, message_id=mid)
    resp = post(emu, data)
    assert resp.status_code == 200
    assert relates_to(resp) == mid
    assert resp.headers["Content-Length"] == str(len(resp.content))
    root = SafeET.fromstring(resp.content)
    kb = root.find("s:Body/cfg:Config/cfg:MaxEnvelopeSizekb", NS)
    assert kb is not None
    assert int(kb.text or "0") >= 500


def test_unauthenticated_401_has_content_length_and_offers(emu: Emulator) -> None:
    _, data = envelope(wsman.ACTION_GET, resource=wsman.RESOURCE_CONFIG)
    resp = requests.post(emu.endpoint, data=data, timeout=5)
    assert resp.status_code == 401
    assert resp.headers["Content-Length"] == "0"
    offers = resp.headers["WWW-Authenticate"]
    assert "Negotiate" in offers
    assert "Basic" in offers


def test_unknown_shell_fault(emu: Emulator) -> None:
    bogus = str(uuid.uuid4()).upper()
    body = '<rsp:Receive><rsp:DesiredStream CommandId="X">stdout</rsp:DesiredStream></rsp:Receive>'
    mid, data = envelope(wsman.ACTION_RECEIVE, body=body, selectors={"ShellId": bogus})
    resp = post(emu, data)
    assert resp.status_code == 500
    assert fault_code(resp) == wsman.CODE_SHELL_NOT_FOUND
    assert relates_to(resp) == mid


def test_unknown_action_and_resource(emu: Emulator) -> None:
    _, data = envelope("http://example.invalid/Frobnicate", selectors={"ShellId": "x"})
    assert fault_code(post(emu, data)) == wsman.CODE_ACTION_NOT_SUPPORTED
    _, data = envelope(
        wsman.ACTION_CREATE, resource="http://example.invalid/shell", body="<rsp:Shell/>"
    )
    assert fault_code(post(emu, data)) == wsman.CODE_DESTINATION_UNREACHABLE


def test_receive_long_poll_times_out_before_operation_timeout(emu: Emulator) -> None:
    shell = create_cmd_shell(emu)
    script = "$input"  # waits for stdin that never comes
    enc = base64.b64encode(script.encode("utf-16-le")).decode()
    body = (
        "<rsp:CommandLine><rsp:Command>"
        f"powershell -EncodedCommand {enc}</rsp:Command></rsp:CommandLine>"
    )
    _, data = envelope(wsman.ACTION_COMMAND, body=body, selectors={"ShellId": shell})
    resp = post(emu, data)
    root = SafeET.fromstring(resp.content)
    cid = root.find("s:Body/rsp:CommandResponse/rsp:CommandId", NS)
    assert cid is not None
    assert cid.text
    body = (
        f'<rsp:Receive><rsp:DesiredStream CommandId="{cid.text}">stdout stderr'
        "</rsp:DesiredStream></rsp:Receive>"
    )
    _, data = envelope(
        wsman.ACTION_RECEIVE, body=body, selectors={"ShellId": shell}, timeout="PT1S"
    )
    start = time.monotonic()
    resp = post(emu, data, timeout=5)
    elapsed = time.monotonic() - start
    assert resp.status_code == 500
    assert fault_code(resp) == wsman.CODE_TIMED_OUT
    assert 0.5 <= elapsed < 1.0  # answered just before OperationTimeout
    _, data = envelope(wsman.ACTION_DELETE, selectors={"ShellId": shell})
    assert post(emu, data).status_code == 200
    assert fault_code(post(emu, data)) == wsman.CODE_SHELL_NOT_FOUND


# -- a recording engine for the details only a fake can observe ------------------------------


class Recorder:
    """Records what reaches the engine; answers with a big output or a lost answer on demand."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[CommandSpec], list[Any]]] = []
        self.block = threading.Event()

    def open_runspace(self, user: str) -> Recorder:
        return self

    def invoke(
        self,
        commands: Sequence[CommandSpec],
        input_objects: Sequence[Any] = (),
        stop: threading.Event | None = None,
    ) -> InvocationResult:
        self.calls.append((list(commands), list(input_objects)))
        name = commands[0].name
        if name == "Lose-Answer":
            raise AnswerLost()
        if name == "Wait-Stop":
            assert stop is not None
            stop.wait(10)
            return InvocationResult(stopped=stop.is_set())
        if name == "Get-Big":
            text = "x" * 4000
            return InvocationResult(
                output=[PSObj(["Big"], {"I": i, "T": text}) for i in range(300)]
            )
        if name == "Get-Streams":
            return InvocationResult(
                output=[1, "two", True],
                errors=[ErrorRecord("soft", "SoftError,X", category="InvalidData")],
                warnings=["w1"],
                verbose=["v1"],
            )
        return InvocationResult(output=list(input_objects))

    def run_script(
        self, text: str, input_objects: Sequence[Any] = (), stop: threading.Event | None = None
    ) -> InvocationResult:
        return InvocationResult(output=[text])

    def close(self) -> None:
        pass


@pytest.fixture
def rec() -> Iterator[tuple[Emulator, Recorder]]:
    recorder = Recorder()
    with Emulator(
        allow_basic=True,
        allow_unencrypted=True,
        receive_timeout=1.5,
        engine_factory=lambda state, settings: recorder,
    ) as e:
        yield e, recorder


def pool_for(emu: Emulator, auth: str = "ntlm") -> RunspacePool:
    return RunspacePool(psrp_wsman(emu, auth=auth, operation_timeout=2, read_timeout=5))


def test_command_specs_reach_engine_typed(rec: tuple[Emulator, Recorder]) -> None:
    emu, recorder = rec
    with pool_for(emu) as pool:
        pool.exchange_keys()
        ps = PowerShell(pool)
        ps.add_cmdlet("Set-Thing").add_parameter("Name", "a").add_argument(42)
        ps.add_parameter("PassThru").add_parameter("Flag", False)
        ps.add_parameter("Secret", pool.serialize("pw", ObjectMeta("SS")))
        ps.add_parameter("List", [1, "b"])
        ps.invoke(input=cast(Any, ["i1", 2]))
    commands, inputs = recorder.calls[-1]
    assert inputs == ["i1", 2]
    (spec,) = commands
    assert spec.name == "Set-Thing"
    assert not spec.is_script
    params = list(spec.parameters)
    assert params[:4] == [("Name", "a"), (None, 42), ("PassThru", SWITCH_PRESENT), ("Flag", False)]
    assert params[4][0] == "Secret"
    assert isinstance(params[4][1], SecureValue)
    assert params[4][1].reveal() == "pw"
    assert params[5] == ("List", [1, "b"])


def test_streams_and_non_terminating_errors(rec: tuple[Emulator, Recorder]) -> None:
    emu, _ = rec
    with pool_for(emu) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Streams")
        out = ps.invoke()
        assert out == [1, "two", True]
        assert not ps.had_errors  # non-terminating: state Completed
        assert [str(e.fq_error) for e in ps.streams.error] == ["SoftError,X"]
        assert [w.message for w in ps.streams.warning] == ["w1"]
        assert [v.message for v in ps.streams.verbose] == ["v1"]


def test_large_output_is_split_across_receives(rec: tuple[Emulator, Recorder]) -> None:
    emu, _ = rec
    with pool_for(emu, "basic") as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-Big")
        out = ps.invoke()
        assert len(out) == 300
        assert out[-1].extended_properties["I"] == 299


def test_stop_signal_stops_pipeline(rec: tuple[Emulator, Recorder]) -> None:
    emu, _ = rec
    with pool_for(emu) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Wait-Stop")
        ps.begin_invoke()
        time.sleep(0.2)
        ps.stop()
        ps2 = PowerShell(pool)
        ps2.add_cmdlet("Echo")
        assert ps2.invoke(input=cast(Any, ["after"])) == ["after"]


def test_answer_lost_drops_connection(rec: tuple[Emulator, Recorder]) -> None:
    emu, _ = rec
    pool = pool_for(emu, "basic")
    pool.open()
    ps = PowerShell(pool)
    ps.add_cmdlet("Lose-Answer")
    with pytest.raises(requests.exceptions.ConnectionError):
        ps.invoke()


@pytest.mark.parametrize("kind", ["drop", "http", "fault"])
def test_injected_faults_hit_the_nth_request(clean: Emulator, kind: str) -> None:
    emu = clean
    settings: EmulatorSettings = emu.settings
    _, data = envelope(wsman.ACTION_GET, resource=wsman.RESOURCE_CONFIG)
    with settings.lock:
        if kind == "drop":
            settings.faults.drop_connection_on_request = 2
        elif kind == "http":
            settings.faults.http_error_on_request = 2
            settings.faults.http_error_status = 503
        else:
            settings.faults.wsman_fault_on_request = 2
    assert post(emu, data).status_code == 200
    if kind == "drop":
        with pytest.raises(requests.exceptions.ConnectionError):
            post(emu, data)
    elif kind == "http":
        assert post(emu, data).status_code == 503
    else:
        assert fault_code(post(emu, data)) == wsman.CODE_SHELL_NOT_FOUND
    assert post(emu, data).status_code == 200


def test_pypsrp_sees_injected_wsman_fault(clean: Emulator) -> None:
    emu = clean
    with emu.settings.lock:
        emu.settings.faults.wsman_fault_on_request = 1
    with pytest.raises(WSManFaultError) as info:
        pool_for(emu, "basic").open()
    assert info.value.code == wsman.CODE_SHELL_NOT_FOUND


def test_latency_cost_applies_per_exchange(clean: Emulator) -> None:
    emu = clean
    emu.settings.costs.http_exchange = 0.2
    try:
        _, data = envelope(wsman.ACTION_GET, resource=wsman.RESOURCE_CONFIG)
        start = time.monotonic()
        post(emu, data)
        assert time.monotonic() - start >= 0.2
    finally:
        emu.settings.costs.http_exchange = 0.0
