"""WSMan SOAP: parse requests, build responses and faults, the way a real WinRM service does.

Parsing goes through defusedxml so a hostile body cannot expand entities, reach the network or
read local files; anything it refuses becomes a WSMan fault, never a crash.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import attrs
from defusedxml import ElementTree as SafeET

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "wsa": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "wsman": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "wsmv": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
    "wst": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "wsmanfault": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault",
    "cfg": "http://schemas.microsoft.com/wbem/wsman/1/config",
    "pwsh": "http://schemas.microsoft.com/powershell",
    "xml": "http://www.w3.org/XML/1998/namespace",
}
for _prefix, _uri in NS.items():
    if _prefix != "xml":
        ET.register_namespace(_prefix, _uri)

ACTION_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
ACTION_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
ACTION_GET = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Get"
ACTION_COMMAND = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Command"
ACTION_SEND = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Send"
ACTION_RECEIVE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Receive"
ACTION_SIGNAL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/Signal"
ACTION_FAULT = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

RESOURCE_PWSH = "http://schemas.microsoft.com/powershell/Microsoft.PowerShell"
RESOURCE_CMD = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
RESOURCE_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
RESOURCE_CONFIG = "http://schemas.microsoft.com/wbem/wsman/1/config"
RESOURCE_CONFIG_WINRS = "http://schemas.microsoft.com/wbem/wsman/1/config/winrs"
RESOURCE_CONFIG_PLUGIN = "http://schemas.microsoft.com/wbem/wsman/1/config/plugin"
#: The namespace of a plug-in's ConfigXML (what `winrm get winrm/config/plugin?Name=…` shows).
NS_PLUGIN_CONFIG = "http://schemas.microsoft.com/wbem/wsman/1/config/PluginConfiguration"

SIGNAL_CTRL_C = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/ctrl_c"
SIGNAL_TERMINATE = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/signal/terminate"
SIGNAL_PS_CRTL_C = "powershell/signal/crtl_c"  # the (misspelt) PSRP stop signal

#: WSMan error codes (0x80338000 + n), the ones a real WinRM answers with.
CODE_ACTION_NOT_SUPPORTED = 2150858771  # 0x80338013
CODE_DESTINATION_UNREACHABLE = 2150858770  # 0x80338012
CODE_INVALID_HEADER = 2150858767  # 0x8033800F
CODE_HEADER_REQUIRED = 2150858769  # 0x80338011
CODE_INVALID_SOAP_BODY = 2150858791  # 0x80338027
CODE_ENVELOPE_TOO_LARGE = 2150858790  # 0x80338026
CODE_TIMED_OUT = 2150858793  # 0x80338029
CODE_ALREADY_EXISTS = 2150858803  # 0x80338033
CODE_SHELL_NOT_FOUND = 2150858843  # 0x8033805B
CODE_INTERNAL = 2150858752  # 0x80338000, resource not found / generic
#: ERROR_ACCESS_DENIED (winerror.h): WinRM reports a refused access with the Win32 code.
CODE_ACCESS_DENIED = 5
#: ERROR_WSMAN_QUOTA_MAX_SHELLS (wsmerror.h, as PowerShell's CimChildJobBase.cs copies it).
CODE_QUOTA_MAX_SHELLS = 2150859173  # 0x803381A5
#: ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ: the same quota of a plug-in ("per plug-in quota").
CODE_QUOTA_MAX_SHELLS_PPQ = 2150859236  # 0x803381E4
#: ERROR_WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ: the plug-in's MaxConcurrentCommandsPerShell.
CODE_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ = 2150859241  # 0x803381E9

_SUBCODES = {
    CODE_ACTION_NOT_SUPPORTED: ("s:Sender", "wsa:ActionNotSupported"),
    CODE_DESTINATION_UNREACHABLE: ("s:Sender", "wsa:DestinationUnreachable"),
    CODE_INVALID_HEADER: ("s:Sender", "wsa:InvalidMessageInformationHeader"),
    CODE_HEADER_REQUIRED: ("s:Sender", "wsa:MessageInformationHeaderRequired"),
    CODE_INVALID_SOAP_BODY: ("s:Sender", "wsman:SchemaValidationError"),
    CODE_ENVELOPE_TOO_LARGE: ("s:Sender", "wsman:EncodingLimit"),
    CODE_TIMED_OUT: ("s:Receiver", "wsman:TimedOut"),
    CODE_ALREADY_EXISTS: ("s:Sender", "wsman:AlreadyExists"),
    CODE_SHELL_NOT_FOUND: ("s:Sender", "wsman:InvalidSelectors"),
    # DSP0226 (WS-Management) 14.6: wsman:AccessDenied, "the sender was not authorized to
    # access the resource".
    CODE_ACCESS_DENIED: ("s:Sender", "wsman:AccessDenied"),
    # MS-WSMV 3.1.4.5.2.1: a quota exceeded at Create is a wsman:QuotaLimit fault.
    CODE_QUOTA_MAX_SHELLS: ("s:Sender", "wsman:QuotaLimit"),
    CODE_QUOTA_MAX_SHELLS_PPQ: ("s:Sender", "wsman:QuotaLimit"),
    CODE_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ: ("s:Sender", "wsman:QuotaLimit"),
}

MSG_TIMED_OUT = (
    "The WS-Management service cannot complete the operation within the time specified in "
    "OperationTimeout."
)

#: Largest body we read at all; beyond it the request is refused before parsing.
MAX_BODY_BYTES = 2 * 1024 * 1024


class WSManFault(Exception):  # noqa: N818 - named after the SOAP element it becomes
    """A fault to answer with (HTTP 500 + s:Fault + WSManFault Code)."""

    def __init__(
        self, code: int, message: str, http_status: int = 500, reason: str | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status
        #: s:Reason text when it differs from the WSManFault's f:Message.
        self.reason = reason if reason is not None else message


def shell_not_found(shell_id: str) -> WSManFault:
    return WSManFault(
        CODE_SHELL_NOT_FOUND,
        f"The request for the Windows Remote Shell with ShellId {shell_id} failed because the "
        "shell was not found on the server. Possible causes are: the specified ShellId is "
        "incorrect or the shell no longer exists on the server. Provide the correct ShellId or "
        "create a new shell and retry the operation.",
    )


def access_denied() -> WSManFault:
    """A request on a resource the sender may not use (another user's shell)."""
    return WSManFault(CODE_ACCESS_DENIED, "Access is denied.")


def quota_max_shells(limit: int, code: int = CODE_QUOTA_MAX_SHELLS) -> WSManFault:
    """The fault of a Create beyond the user's MaxShellsPerUser, as Windows words it.

    Reason and message as a real WinRM answered (a Fault captured in the Cerebrum project's
    winrm client: s:Sender / w:QuotaLimit, WSManFault Code 2150859173, "This user is allowed a
    maximum number of 5 concurrent shells…"); New-PSSession shows the same message ("Configuring
    WSMAN Limits", PowerShell team blog). MS-WSMV 3.1.4.5.2.1 names the subcode.
    """
    return WSManFault(
        code,
        f"The WS-Management service cannot process the request. This user is allowed a maximum "
        f"number of {limit} concurrent shells, which has been exceeded. Close existing shells "
        "or raise the quota for this user.",
        reason="The WS-Management service cannot process the request. The maximum number of "
        "concurrent shells for this user has been exceeded. Close existing shells or raise the "
        "quota for this user.",
    )


def q(prefix: str, local: str) -> str:
    """Clark notation `{uri}local` for a known prefix."""
    return f"{{{NS[prefix]}}}{local}"


@attrs.define
class Request:
    """The parts of a WSMan request the emulator acts on."""

    action: str
    message_id: str
    resource_uri: str
    selectors: dict[str, str]
    options: dict[str, str]
    operation_timeout: float
    max_envelope_size: int
    body: ET.Element

    def body_child(self) -> ET.Element | None:
        return self.body[0] if len(self.body) else None


_DURATION = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def parse_duration(text: str | None, default: float) -> float:
    """xs:duration as WSMan uses it (PT20S, PT1M30.5S); anything else → default."""
    if not text:
        return default
    m = _DURATION.match(text.strip())
    if not m or not any(m.groups()):
        return default
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


def parse_request(data: bytes) -> Request:
    """Parse a SOAP envelope; raise WSManFault for anything a real service would refuse."""
    if len(data) > MAX_BODY_BYTES:
        raise WSManFault(CODE_ENVELOPE_TOO_LARGE, "The request is larger than allowed.")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except Exception as exc:  # ParseError, DTDForbidden, EntitiesForbidden, ValueError…
        raise WSManFault(
            CODE_INVALID_SOAP_BODY,
            "The WS-Management service cannot process the request because the XML is invalid: "
            f"{type(exc).__name__}.",
        ) from None
    if root.tag != q("s", "Envelope"):
        raise WSManFault(CODE_INVALID_SOAP_BODY, "The request is not a SOAP 1.2 envelope.")
    header = root.find("s:Header", NS)
    body = root.find("s:Body", NS)
    if header is None or body is None:
        raise WSManFault(CODE_HEADER_REQUIRED, "The request does not have all the SOAP headers.")

    def text(path: str) -> str:
        el = header.find(path, NS)
        return (el.text or "").strip() if el is not None else ""

    action = text("wsa:Action")
    message_id = text("wsa:MessageID")
    resource_uri = text("wsman:ResourceURI")
    if not action or not message_id:
        raise WSManFault(CODE_HEADER_REQUIRED, "The request does not have all the SOAP headers.")
    selectors = {
        el.attrib.get("Name", ""): (el.text or "").strip()
        for el in header.findall("wsman:SelectorSet/wsman:Selector", NS)
    }
    options = {
        el.attrib.get("Name", ""): (el.text or "").strip()
        for el in header.findall("wsman:OptionSet/wsman:Option", NS)
    }
    max_env_text = text("wsman:MaxEnvelopeSize")
    try:
        max_env = int(max_env_text) if max_env_text else 153600
    except ValueError:
        raise WSManFault(CODE_INVALID_HEADER, "MaxEnvelopeSize is not a number.") from None
    max_env = max(8192, min(max_env, 4 * 1024 * 1024))
    return Request(
        action=action,
        message_id=message_id,
        resource_uri=resource_uri,
        selectors=selectors,
        options=options,
        operation_timeout=parse_duration(text("wsman:OperationTimeout"), 60.0),
        max_envelope_size=max_env,
        body=body,
    )


def try_message_id(data: bytes) -> str:
    """Best-effort MessageID of a request that failed to parse, for RelatesTo in the fault."""
    m = re.search(rb"<(?:\w+:)?MessageID[^>]*>\s*([^<\s]{1,100})\s*<", data[:65536])
    return m.group(1).decode("ascii", "replace") if m else ""


def envelope(action: str, relates_to: str, body_children: list[ET.Element]) -> ET.Element:
    env = ET.Element(q("s", "Envelope"), {q("xml", "lang"): "en-US"})
    header = ET.SubElement(env, q("s", "Header"))
    ET.SubElement(header, q("wsa", "Action")).text = action
    ET.SubElement(header, q("wsa", "MessageID")).text = f"uuid:{str(uuid.uuid4()).upper()}"
    ET.SubElement(
        header, q("wsa", "To")
    ).text = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
    if relates_to:
        ET.SubElement(header, q("wsa", "RelatesTo")).text = relates_to
    body = ET.SubElement(env, q("s", "Body"))
    body.extend(body_children)
    return env


def to_bytes(env: ET.Element) -> bytes:
    data: bytes = ET.tostring(env, encoding="utf-8", xml_declaration=False)
    return data


def response(req: Request, body_children: list[ET.Element]) -> bytes:
    return to_bytes(envelope(req.action + "Response", req.message_id, body_children))


def fault_bytes(fault: WSManFault, relates_to: str, machine: str = "localhost") -> bytes:
    code, subcode = _SUBCODES.get(fault.code, ("s:Receiver", "wsman:InternalError"))
    f = ET.Element(q("s", "Fault"))
    c = ET.SubElement(f, q("s", "Code"))
    ET.SubElement(c, q("s", "Value")).text = code
    sc = ET.SubElement(c, q("s", "Subcode"))
    ET.SubElement(sc, q("s", "Value")).text = subcode
    reason = ET.SubElement(f, q("s", "Reason"))
    ET.SubElement(reason, q("s", "Text"), {q("xml", "lang"): "en-US"}).text = fault.reason
    detail = ET.SubElement(f, q("s", "Detail"))
    wf = ET.SubElement(
        detail, q("wsmanfault", "WSManFault"), {"Code": str(fault.code), "Machine": machine}
    )
    ET.SubElement(wf, q("wsmanfault", "Message")).text = fault.message
    return to_bytes(envelope(ACTION_FAULT, relates_to, [f]))


def el(tag: str, text: str | None = None, attrib: dict[str, str] | None = None) -> ET.Element:
    e = ET.Element(tag, attrib or {})
    if text is not None:
        e.text = text
    return e


def sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: Any) -> ET.Element:
    e = ET.SubElement(parent, tag, {k: str(v) for k, v in attrib.items()})
    if text is not None:
        e.text = text
    return e


def resource_created(endpoint: str, resource_uri: str, shell_id: str) -> ET.Element:
    rc = el(q("wst", "ResourceCreated"))
    sub(rc, q("wsa", "Address"), endpoint)
    ref = sub(rc, q("wsa", "ReferenceParameters"))
    sub(ref, q("wsman", "ResourceURI"), resource_uri)
    sel = sub(ref, q("wsman", "SelectorSet"))
    sub(sel, q("wsman", "Selector"), shell_id, Name="ShellId")
    return rc


def duration(seconds: float) -> str:
    """An xs:duration the way WinRM writes one (`PT7200.000S`)."""
    return f"PT{seconds:.3f}S"


def shell_element(  # noqa: PLR0913 - one parameter per rsp:Shell child it writes
    shell_id: str,
    resource_uri: str,
    owner: str,
    client_ip: str,
    extra: dict[str, str],
    *,
    idle_timeout: float = 7200.0,
) -> ET.Element:
    shell = el(q("rsp", "Shell"))
    sub(shell, q("rsp", "ShellId"), shell_id)
    sub(shell, q("rsp", "ResourceUri"), resource_uri)
    sub(shell, q("rsp", "Owner"), owner)
    sub(shell, q("rsp", "ClientIP"), client_ip)
    sub(shell, q("rsp", "IdleTimeOut"), duration(idle_timeout))
    for k, v in extra.items():
        sub(shell, q("rsp", k), v)
    return shell


def config_element(max_envelope_kb: int) -> ET.Element:
    cfg = el(q("cfg", "Config"))
    sub(cfg, q("cfg", "MaxEnvelopeSizekb"), str(max_envelope_kb))
    sub(cfg, q("cfg", "MaxTimeoutms"), "60000")
    sub(cfg, q("cfg", "MaxBatchItems"), "32000")
    sub(cfg, q("cfg", "MaxProviderRequests"), "4294967295")
    return cfg


def winrs_config_element(values: dict[str, int]) -> ET.Element:
    """`winrm get winrm/config/winrs`: a Winrs element whose children are in the resource's own
    namespace (how a real WinRM answers a Get of RESOURCE_CONFIG_WINRS)."""
    ns = RESOURCE_CONFIG_WINRS
    winrs = el(f"{{{ns}}}Winrs")
    sub(winrs, f"{{{ns}}}AllowRemoteShellAccess", "true")
    for name, value in values.items():
        sub(winrs, f"{{{ns}}}{name}", str(value))
    return winrs


def plugin_config_element(name: str, quotas: dict[str, int]) -> ET.Element:
    """`winrm get winrm/config/plugin?Name=…`: the plug-in's ConfigXML, Quotas included."""
    ns = NS_PLUGIN_CONFIG
    cfg = el(f"{{{ns}}}PlugInConfiguration", attrib={"Name": name})
    sub(cfg, f"{{{ns}}}Quotas", **{k: str(v) for k, v in quotas.items()})
    return cfg


#: Bytes a ReceiveResponse envelope costs besides its stream payloads (headers, tags, ids).
RECEIVE_OVERHEAD = 2048


def receive_response(
    streams: list[tuple[str, bytes, str | None]],
    command_id: str | None,
    state: str | None,
    exit_code: int | None = None,
) -> ET.Element:
    """`streams` = (name, data, CommandId); `state` = Running/Done/Pending or None to omit."""
    rr = el(q("rsp", "ReceiveResponse"))
    for name, data, cid in streams:
        attrib = {"Name": name}
        if cid:
            attrib["CommandId"] = cid
        sub(rr, q("rsp", "Stream"), base64.b64encode(data).decode("ascii"), **attrib)
    if state is not None:
        attrib = {"State": f"{RESOURCE_SHELL}/CommandState/{state}"}
        if command_id:
            attrib["CommandId"] = command_id
        cs = sub(rr, q("rsp", "CommandState"), **attrib)
        if exit_code is not None:
            sub(cs, q("rsp", "ExitCode"), str(exit_code))
    return rr


class DropConnection(Exception):  # noqa: N818 - a control signal, not an error
    """Close the TCP connection without answering (a lost answer, an injected fault)."""


#: Longest a Delete of a shell or a Signal terminate waits for its pipelines to stop.
STOP_WAIT = 30.0


def await_stopped(workers: list[Any], bound: float = STOP_WAIT) -> None:
    """Wait (bounded) for the worker threads of stopped pipelines or processes to end.

    PowerShell's `PowerShell.Stop()` stops a pipeline synchronously (it returns once the
    pipeline is stopped; learn.microsoft.com, System.Management.Automation.PowerShell.Stop),
    and a terminated WinRS process is ended by TerminateProcess before the answer: so a
    client that got the Signal or Delete response knows no further statement of it runs.
    A write already under way when the stop arrives completes first (the SMS Provider does
    not undo a WMI Put it accepted).
    """
    end = time.monotonic() + bound
    current = threading.current_thread()
    for worker in workers:
        if worker is None or worker is current:
            continue
        worker.join(max(0.0, end - time.monotonic()))


def receive_wait(req: Request, cap: float) -> float:
    """How long a Receive may block: just before OperationTimeout, never past `cap`."""
    margin = min(1.0, req.operation_timeout * 0.1)
    return max(0.05, min(req.operation_timeout - margin, cap))


def quota_max_commands(limit: int, code: int, what: str) -> WSManFault:
    """A Command beyond the shell's MaxConcurrentCommandsPerShell / MaxProcessesPerShell.

    [UNCONFIRMED] wording: no capture found; it follows the MaxShellsPerUser message.
    """
    return WSManFault(
        code,
        f"The WS-Management service cannot process the request. This shell is allowed a "
        f"maximum number of {limit} concurrent {what}, which has been exceeded. Wait for a "
        "command to end or raise the quota.",
    )
