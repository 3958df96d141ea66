"""`cmproxy show --json` lists every role of every server the emulated site holds.

The expectation is derived from the emulator's seeded state (each `SMS Site System` row's
sibling rows are the server's roles), not written down: a template that drops roles (as
Get-SiteState.ps1 did while the emulator lost output written before `continue`) fails here.
The role names are the SDK's vocabulary (`cmproxy.roles`); a distribution point's kind comes
from its seeded props (IsCloud, ConnectedCacheEnabled).
"""

from __future__ import annotations

import json
from typing import Any

from cmproxy.roles import (
    CloudDistributionPoint,
    ConnectedCacheDistributionPoint,
    DistributionPoint,
    role_for_name,
)

from .conftest import Site

SITE_SYSTEM = "SMS Site System"


def _role_name(row: dict[str, Any]) -> str:
    if row["role"] != DistributionPoint.ROLE_NAME:
        return role_for_name(row["role"]).name
    props = {p["PropertyName"]: p["Value"] for p in row["props"]}
    if props.get("IsCloud"):
        return CloudDistributionPoint().name
    if props.get("ConnectedCacheEnabled"):
        return ConnectedCacheDistributionPoint().name
    return DistributionPoint().name


def test_show_json_lists_every_seeded_role_of_every_server(site: Site) -> None:
    expected: dict[tuple[str, str], list[str]] = {}
    for row in site.emu.state.snapshot()["sysres"]:
        roles = expected.setdefault((row["site"], row["server"].lower()), [])
        if row["role"] != SITE_SYSTEM:
            roles.append(_role_name(row))
    assert sum(len(r) for r in expected.values()) > len(expected)  # the seed has roles

    result = site.run("show", "--json")
    assert result.returncode == 0, result.stderr
    shown = {
        (s["site"], s["name"].lower()): sorted(s["roles"])
        for s in json.loads(result.stdout)["servers"]
    }
    assert shown == {k: sorted(v) for k, v in expected.items()}
    assert not site.writes()
