"""Transports: how a session's steps reach the SMS Provider (PSRP or WinRS).

Only `psrp.py` imports pypsrp and only `winrm.py` imports pywinrm; both are loaded on demand,
so importing cmproxy does not import either library.
"""

from __future__ import annotations

import importlib

from cmproxy._extras import require_auth_support
from cmproxy.connection import ConnectionInfo
from cmproxy.transport_names import TRANSPORTS
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
    """The transport `info.transport` names (`cmproxy.transport_names`), not yet connected.

    An auth whose libraries are not installed fails here, in one line naming the extra.
    """
    require_auth_support(info.auth, info.transport)
    module_name, _, class_name = TRANSPORTS[info.transport].factory.partition(":")
    # Lazy: only the transport in use imports its client library.
    transport_class = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(transport_class, type) and issubclass(transport_class, Transport)):
        raise TypeError(f"{TRANSPORTS[info.transport].factory} is not a Transport")
    return transport_class(info, setup)
