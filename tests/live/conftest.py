"""The live suite's site: a real ConfigMgr site named by CMPROXY_LIVE_* (docs/live-testing.md)."""

from __future__ import annotations

import os

from cmproxy.connection import ConnectionInfo


def live_info() -> ConnectionInfo | None:
    """The real site of the live contract suite, when CMPROXY_LIVE_SERVER is set."""
    if not os.environ.get("CMPROXY_LIVE_SERVER"):
        return None
    return ConnectionInfo.from_env("CMPROXY_LIVE_")
