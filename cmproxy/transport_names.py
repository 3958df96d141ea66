"""The transports cmproxy offers, by name: the one table every other place reads.

`ConnectionInfo` validates `transport` against it, the `transport` connection option takes its
choices and help from it (so the CLI flag and the Ansible argument spec do too), and
`cmproxy.transports.create_transport` imports the class it names. It imports nothing, so the
option table and the pure core can read it without loading a transport or its client library.
A new transport is its `Transport` subclass in `cmproxy/transports/` and one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

__all__ = ["DEFAULT_TRANSPORT", "TRANSPORTS", "TRANSPORT_NAMES", "TransportEntry"]


class TransportEntry(NamedTuple):
    """How a transport is described to users and where its class lives (imported on use)."""

    #: A few words for the CLI and option help: what the transport runs a step in.
    summary: str
    #: "module:Class" of its `Transport` subclass, imported only when a session opens.
    factory: str


TRANSPORTS: Mapping[str, TransportEntry] = MappingProxyType(
    {
        "psrp": TransportEntry("PowerShell Remoting", "cmproxy.transports.psrp:PSRPTransport"),
        "winrm": TransportEntry("WinRS processes", "cmproxy.transports.winrm:WinRSTransport"),
    }
)
#: The names a user may give as `transport`, in the order help lists them.
TRANSPORT_NAMES: tuple[str, ...] = tuple(TRANSPORTS)
DEFAULT_TRANSPORT = "psrp"
