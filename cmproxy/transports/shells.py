"""The account's shells on an endpoint, over plain WSMan: listed, and deleted.

Recovery needs them: a killed cmproxy process leaves its shell (a PSRP runspace pool or a
WinRS shell) on the server, and the pipeline in it keeps running and writing. MS-WSMV
3.1.4.8.2: a `wsen:Enumerate` of the Shell resource lists the shells the caller created (and
a selector-filtered Enumerate of the Command resource one shell's commands); a `wst:Delete`
of a shell ends it and the commands in it (MS-WSMV 3.1.4.3; for a PSRP shell, closing the
runspace pool stops its pipelines). Both transports' shells are listed (PSRP and WinRS alike),
over pypsrp's WSMan client, whichever transport the session uses.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

from pypsrp.exceptions import AuthenticationError as PypsrpAuthenticationError
from pypsrp.exceptions import WSManFaultError
from pypsrp.wsman import NAMESPACES, SelectorSet, WSMan

from cmproxy._exceptions import CMProxyError
from cmproxy.connection import ConnectionInfo
from cmproxy.transports.base import RemoteShell, translate_exception

__all__ = ["delete_shell", "list_shells"]

log = logging.getLogger(__name__)

RESOURCE_SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
RESOURCE_COMMAND = f"{RESOURCE_SHELL}/Command"
#: "The shell was not found on the server" (ERROR_WSMAN_SHELL_NOT_FOUND... 0x8033805B).
SHELL_NOT_FOUND = 0x8033805B


def _client(info: ConnectionInfo) -> WSMan:
    kwargs = info.to_pypsrp_kwargs()
    kwargs.update(
        connection_timeout=min(info.connection_timeout, 10.0),
        read_timeout=min(info.read_timeout, 30.0),
        operation_timeout=min(int(info.operation_timeout), 20),
    )
    return WSMan(**kwargs)


def _translate(exc: BaseException, info: ConnectionInfo, stage: str) -> CMProxyError:
    return translate_exception(exc, info, auth_errors=(PypsrpAuthenticationError,), stage=stage)


def list_shells(info: ConnectionInfo) -> list[RemoteShell]:
    """The caller's shells on the endpoint (all resource URIs), by WS-Enumeration."""
    wsen = NAMESPACES["wsen"]
    wsman_ns = NAMESPACES["wsman"]
    enum = ET.Element(f"{{{wsen}}}Enumerate")
    ET.SubElement(enum, f"{{{wsman_ns}}}OptimizeEnumeration")
    ET.SubElement(enum, f"{{{wsman_ns}}}MaxElements").text = "32000"
    try:
        with _client(info) as wsman:
            body = wsman.enumerate(RESOURCE_SHELL, enum)
            shells = body.findall("wsen:EnumerateResponse/wsman:Items/rsp:Shell", NAMESPACES)
            context = body.find("wsen:EnumerateResponse/wsen:EnumerationContext", NAMESPACES)
            ended = body.find("wsen:EnumerateResponse/wsman:EndOfSequence", NAMESPACES)
            while ended is None and context is not None and (context.text or "").strip():
                pull = ET.Element(f"{{{wsen}}}Pull")
                ET.SubElement(pull, f"{{{wsen}}}EnumerationContext").text = context.text
                ET.SubElement(pull, f"{{{wsen}}}MaxElements").text = "32000"
                body = wsman.pull(RESOURCE_SHELL, pull)
                shells += body.findall("wsen:PullResponse/wsen:Items/rsp:Shell", NAMESPACES)
                context = body.find("wsen:PullResponse/wsen:EnumerationContext", NAMESPACES)
                ended = body.find("wsen:PullResponse/wsen:EndOfSequence", NAMESPACES)
    except Exception as exc:
        raise _translate(exc, info, "listing the shells") from None

    def text(shell: ET.Element, name: str) -> str:
        found = shell.find(f"rsp:{name}", NAMESPACES)
        return (found.text or "").strip() if found is not None else ""

    return [
        RemoteShell(
            text(s, "ShellId").upper(), text(s, "ResourceUri"), text(s, "Owner"), text(s, "State")
        )
        for s in shells
        if text(s, "ShellId")
    ]


def delete_shell(info: ConnectionInfo, resource_uri: str, shell_id: str) -> bool:
    """Delete a shell (ending its commands); False if the endpoint no longer has it."""
    selectors = SelectorSet()
    selectors.add_option("ShellId", shell_id)
    try:
        with _client(info) as wsman:
            wsman.delete(resource_uri, selector_set=selectors)
    except WSManFaultError as exc:
        if exc.code == SHELL_NOT_FOUND:
            return False
        raise _translate(exc, info, f"deleting the shell {shell_id}") from None
    except Exception as exc:
        raise _translate(exc, info, f"deleting the shell {shell_id}") from None
    log.info("deleted the shell %s on %s", shell_id, info.endpoint)
    return True
