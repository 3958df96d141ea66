"""WS-Enumeration of shells and of a shell's commands, the way WinRM answers it.

MS-WSMV 3.1.4.8.2 (Remote Shells): a `wsen:Enumerate` of the Shell resource lists the active
shells; with a selector set naming a ShellId (in a `wsman:Filter` of the SelectorFilter
dialect, DSP0226 8.3), an Enumerate of the Command resource lists that shell's commands. What
`Get-WSManInstance -Enumerate -ResourceURI shell` and PowerShell's
`RunspacePool.GetRunspacePools` (pypsrp `RunspacePool.get_runspace_pools`) send. A user
enumerates only the shells they created (learn.microsoft.com/windows/win32/winrm/
remote-shell-infrastructure-improvements: "Users can enumerate, get, and delete the shells
that they have created"). Items come back in the Enumerate response when the client asks for
`wsman:OptimizeEnumeration` (with `wsman:EndOfSequence`), otherwise by `wsen:Pull` with the
enumeration context (DSP0226 8.2.3).
"""

from __future__ import annotations

import threading
import uuid
import xml.etree.ElementTree as ET

import attrs

from cmproxy.emulator import wsman

NS_WSEN = "http://schemas.xmlsoap.org/ws/2004/09/enumeration"
ET.register_namespace("wsen", NS_WSEN)
ACTION_ENUMERATE = f"{NS_WSEN}/Enumerate"
ACTION_PULL = f"{NS_WSEN}/Pull"
RESOURCE_COMMAND = f"{wsman.RESOURCE_SHELL}/Command"
DIALECT_SELECTOR = "http://schemas.dmtf.org/wbem/wsman/1/wsman/SelectorFilter"


def _wsen(local: str) -> str:
    return f"{{{NS_WSEN}}}{local}"


def xs_duration(seconds: float) -> str:
    """ShellRunTime / ShellInactivity as WinRM writes them (`P0DT0H5M12S`)."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"P{days}DT{hours}H{minutes}M{secs}S"


@attrs.frozen
class ShellView:
    """What the enumeration shows of one shell (owner-filtered by the caller)."""

    shell_id: str
    resource_uri: str
    owner: str
    client_ip: str
    idle_timeout: float
    run_time: float
    inactivity: float
    input_streams: str
    output_streams: str
    commands: tuple[str, ...]


def shell_item(view: ShellView) -> ET.Element:
    """One rsp:Shell item (MS-WSMV 2.2.4.37), the fields 3.1.4.2.1 says a shell reports."""
    shell = wsman.el(wsman.q("rsp", "Shell"))
    wsman.sub(shell, wsman.q("rsp", "ShellId"), view.shell_id)
    wsman.sub(shell, wsman.q("rsp", "ResourceUri"), view.resource_uri)
    wsman.sub(shell, wsman.q("rsp", "Owner"), view.owner)
    wsman.sub(shell, wsman.q("rsp", "ClientIP"), view.client_ip)
    wsman.sub(shell, wsman.q("rsp", "IdleTimeOut"), wsman.duration(view.idle_timeout))
    wsman.sub(shell, wsman.q("rsp", "InputStreams"), view.input_streams)
    wsman.sub(shell, wsman.q("rsp", "OutputStreams"), view.output_streams)
    # A shell no client is receiving from is still listed; WinRM 3.0 reports it Connected
    # until a client disconnects it explicitly (MS-PSRP Disconnect is not emulated).
    wsman.sub(shell, wsman.q("rsp", "State"), "Connected")
    wsman.sub(shell, wsman.q("rsp", "ShellRunTime"), xs_duration(view.run_time))
    wsman.sub(shell, wsman.q("rsp", "ShellInactivity"), xs_duration(view.inactivity))
    return shell


def command_item(shell_id: str, command_id: str) -> ET.Element:
    """One rsp:Command item: the shell's command, by its CommandId."""
    command = wsman.el(wsman.q("rsp", "Command"))
    wsman.sub(command, wsman.q("rsp", "ShellId"), shell_id)
    wsman.sub(command, wsman.q("rsp", "CommandId"), command_id)
    return command


def filtered_shell_id(req: wsman.Request) -> str | None:
    """The ShellId of the Enumerate's SelectorFilter (or of its header selectors)."""
    enum = req.body.find(_wsen("Enumerate"))
    if enum is not None:
        flt = enum.find("wsman:Filter", wsman.NS)
        if flt is not None:
            dialect = flt.attrib.get("Dialect", DIALECT_SELECTOR)
            if dialect != DIALECT_SELECTOR:
                raise wsman.WSManFault(
                    wsman.CODE_INVALID_SOAP_BODY,
                    "The WS-Management service does not support the filter dialect "
                    f"{dialect[:200]}.",
                )
            for sel in flt.findall("wsman:SelectorSet/wsman:Selector", wsman.NS):
                if sel.attrib.get("Name", "").lower() == "shellid":
                    return (sel.text or "").strip().upper()
    shell_id = req.selectors.get("ShellId")
    return shell_id.upper() if shell_id else None


class Enumerations:
    """Open enumeration contexts (for clients that Pull instead of optimising)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[str, list[ET.Element]]] = {}

    def respond(self, req: wsman.Request, user: str, items: list[ET.Element]) -> bytes:
        enum = req.body.find(_wsen("Enumerate"))
        optimize = enum is not None and enum.find("wsman:OptimizeEnumeration", wsman.NS) is not None
        resp = wsman.el(_wsen("EnumerateResponse"))
        if optimize:
            limit_el = enum.find("wsman:MaxElements", wsman.NS) if enum is not None else None
            limit = _max_elements(limit_el.text if limit_el is not None else None)
            first, rest = items[:limit], items[limit:]
            context = self._keep(user, rest) if rest else ""
            wsman.sub(resp, _wsen("EnumerationContext"), context or None)
            listed = wsman.sub(resp, wsman.q("wsman", "Items"))
            listed.extend(first)
            if not rest:
                wsman.sub(resp, wsman.q("wsman", "EndOfSequence"))
        else:
            wsman.sub(resp, _wsen("EnumerationContext"), self._keep(user, items))
        return wsman.response(req, [resp])

    def pull(self, req: wsman.Request, user: str) -> bytes:
        pull = req.body.find(_wsen("Pull"))
        ctx_el = pull.find(_wsen("EnumerationContext")) if pull is not None else None
        context = (ctx_el.text or "").strip() if ctx_el is not None else ""
        max_el = pull.find(_wsen("MaxElements")) if pull is not None else None
        limit = _max_elements(max_el.text if max_el is not None else None)
        with self._lock:
            owner, items = self._open.get(context, ("", []))
            if not context or context not in self._open or owner != user.lower():
                raise wsman.WSManFault(
                    wsman.CODE_INVALID_SOAP_BODY,
                    "The enumeration context supplied in the message is not valid.",
                )
            first, rest = items[:limit], items[limit:]
            if rest:
                self._open[context] = (owner, rest)
            else:
                del self._open[context]
        resp = wsman.el(_wsen("PullResponse"))
        if rest:
            wsman.sub(resp, _wsen("EnumerationContext"), context)
        listed = wsman.sub(resp, _wsen("Items"))
        listed.extend(first)
        if not rest:
            wsman.sub(resp, _wsen("EndOfSequence"))
        return wsman.response(req, [resp])

    def _keep(self, user: str, items: list[ET.Element]) -> str:
        context = f"uuid:{str(uuid.uuid4()).upper()}"
        with self._lock:
            self._open[context] = (user.lower(), items)
        return context


def _max_elements(text: str | None) -> int:
    try:
        return max(1, int((text or "").strip() or "1"))
    except ValueError:
        return 1
