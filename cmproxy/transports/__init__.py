"""Transports: how a session's steps reach the SMS Provider (PSRP or WinRS).

Only `psrp.py` imports pypsrp and only `winrm.py` imports pywinrm; both are loaded on demand,
so importing cmproxy does not import either library.
"""

from __future__ import annotations

from cmproxy._extras import require_auth_support
from cmproxy.connection import ConnectionInfo
from cmproxy.transports.base import ErrorInfo, FakeTransport, Result, Script, Step, Transport

__all__ = [
    "ErrorInfo",
    "FakeTransport",
    "Result",
    "Script",
    "Step",
    "Transport",
    "create_transport",
]


def create_transport(info: ConnectionInfo, setup: Step | None = None) -> Transport:
    """The transport `info.transport` names, not yet connected.

    An auth whose libraries are not installed fails here, in one line naming the extra.
    """
    require_auth_support(info.auth, info.transport)
    if info.transport == "winrm":
        from cmproxy.transports.winrm import WinRSTransport  # noqa: PLC0415 - lazy: pywinrm

        return WinRSTransport(info, setup)
    from cmproxy.transports.psrp import PSRPTransport  # noqa: PLC0415 - lazy: pypsrp

    return PSRPTransport(info, setup)
