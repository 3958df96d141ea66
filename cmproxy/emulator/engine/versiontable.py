"""`$PSVersionTable` of Windows PowerShell 5.1 (Desktop) on the emulated Windows Server 2019
host: one place for the versions, read by the runspace and by the PSRP application private
data (a client sees the same numbers both ways)."""

from __future__ import annotations

from typing import Any

from cmproxy.emulator.engine.language import conv

PS_VERSION = "5.1.17763.5576"
BUILD_VERSION = "10.0.17763.5576"
#: .NET Framework 4.x reports CLR 4.0.30319 with build 42000 (4.6 and later).
CLR_VERSION = "4.0.30319.42000"
WSMAN_STACK_VERSION = "3.0"
PS_REMOTING_PROTOCOL_VERSION = "2.3"
SERIALIZATION_VERSION = "1.1.0.1"
COMPATIBLE_VERSIONS = ("1.0", "2.0", "3.0", "4.0", "5.0", PS_VERSION)


def version_table() -> dict[str, Any]:
    """A fresh `$PSVersionTable` (a Hashtable whose versions are System.Version objects)."""
    return {
        "PSVersion": conv.version(PS_VERSION),
        "PSEdition": "Desktop",
        "PSCompatibleVersions": [conv.version(v) for v in COMPATIBLE_VERSIONS],
        "BuildVersion": conv.version(BUILD_VERSION),
        "CLRVersion": conv.version(CLR_VERSION),
        "WSManStackVersion": conv.version(WSMAN_STACK_VERSION),
        "PSRemotingProtocolVersion": conv.version(PS_REMOTING_PROTOCOL_VERSION),
        "SerializationVersion": conv.version(SERIALIZATION_VERSION),
    }
