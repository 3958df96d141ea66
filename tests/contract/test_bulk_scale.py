"""The dry run and the plan grow linearly with the number of servers (issue 18).

Counted, not timed: the Python lines cmproxy executes for N and 4 N servers, so the test says
the same on a busy machine. A linear scan per server (`Plan.for_server` in a loop over the
servers) makes the count grow about 16 × when N grows 4 ×.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import cmproxy
from cmproxy import DesiredState, ProxyRequest, ProxySettings, Site, SiteState, SiteSystemServer
from cmproxy.bulk import apply_bulk
from cmproxy.journal import Journal
from cmproxy.testing import InMemorySite

SDK = str(Path(cmproxy.__file__).resolve().parent)
OLD = ProxySettings(server="proxy-old.contoso.com", port=8080)
NEW = ProxySettings(server="proxy-new.contoso.com", port=3128)


def _site(n: int) -> SiteState:
    return SiteState(
        sites=[Site("PS1", "primary", server="cm-ps1.contoso.com")],
        servers=[SiteSystemServer(f"s{i:05d}.contoso.com", "PS1", proxy=OLD) for i in range(n)],
    )


def _lines_of_dry_run(n: int, journal: Journal) -> int:
    """Lines of cmproxy's own code run by one dry run over n servers (all threads)."""
    state = _site(n)
    desired = DesiredState(proxies=[ProxyRequest(s.name, NEW) for s in state.servers])
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def start(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(SDK) else None

    threading.settrace(start)
    sys.settrace(start)
    try:
        results = apply_bulk([InMemorySite(state)], desired, journal=journal, dry_run=True)
    finally:
        sys.settrace(None)
        threading.settrace(None)
    assert len(results.items) == n  # every server planned: the dry run did its work
    return count


def test_dry_run_work_grows_linearly_with_servers(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite3") as journal:
        small = _lines_of_dry_run(100, journal)
        large = _lines_of_dry_run(400, journal)
    # Linear: about 4 × (less, with the fixed part); quadratic: about 16 ×.
    assert large / small < 4.8, f"100 servers: {small} lines, 400: {large} ({large / small:.1f} ×)"
