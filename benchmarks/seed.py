"""The benchmark hierarchy: the emulator's `demo` seed plus N site systems spread over its sites.

Built through the emulator's own state API (`SiteState`, `seeds.apply_seed`, `seeds.add_server`)
into a SQLite file that each contender's emulator opens a fresh copy of, so every contender
starts from the same site. Every tenth added server hosts a software update point (the rest
alternate distribution points and management points), so the scenario sets SUP flags there.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import attrs

from cmproxy.emulator import seeds
from cmproxy.emulator.state import SUP_ROLE, SiteState

#: The demo hierarchy's sites: CAS, two primaries, one secondary (under PS1).
SITES: tuple[str, ...] = ("CAS", "PS1", "PS2", "SS1")
#: One added server in SUP_EVERY hosts a software update point.
SUP_EVERY = 10
NEW_PROXY_HOST = "proxy-new.contoso.com"
NEW_PROXY_PORT = 3128
NEW_ACCOUNT = "CONTOSO\\svc-proxy-new"
NEW_ACCOUNT_PASSWORD = "Bench-Passw0rd!"


@attrs.frozen
class Target:
    """One server of the scenario: where it lives and whether it hosts a SUP."""

    name: str
    site: str
    sup: bool


def targets(n: int, sites: Sequence[str] = SITES) -> list[Target]:
    """N servers, round-robin over the sites; every SUP_EVERY-th one a SUP."""
    out = []
    for i in range(n):
        site = sites[i % len(sites)]
        out.append(Target(f"bench-{site.lower()}-{i:05d}.contoso.com", site, i % SUP_EVERY == 0))
    return out


def build(path: str | Path, n: int) -> list[Target]:
    """Write the demo seed plus N benchmark servers (old proxy on each) into `path`."""
    path = Path(path)
    if path.exists():
        path.unlink()
    state = SiteState(str(path))
    try:
        seeds.apply_seed(state, "demo")
        chosen = targets(n)
        with state.transaction():
            for i, t in enumerate(chosen):
                if t.sup:
                    roles = [(SUP_ROLE, seeds.sup_props(use_proxy=False, use_proxy_for_adr=False))]
                elif i % 2:
                    roles = [("SMS Distribution Point", seeds.dp_props())]
                else:
                    roles = [("SMS Management Point", [])]
                seeds.add_server(state, t.site, t.name, roles, proxy="proxy.contoso.com", port=8080)
    finally:
        state.close()
    return chosen


def copy(seeded: str | Path, dest: str | Path) -> str:
    """A fresh copy of a seeded state file (WAL checkpointed by close())."""
    shutil.copyfile(seeded, dest)
    return str(dest)


def verify(state: SiteState, chosen: Sequence[Target]) -> list[str]:
    """Servers that do not show the new proxy (and SUP flags): empty when the run succeeded."""
    wrong = []
    for t in chosen:
        props = state.server_props(t.site, t.name)
        ok = (
            int(props["UseProxy"].value) == 1
            and props["ProxyName"].value2 == NEW_PROXY_HOST
            and int(props["ProxyServerPort"].value) == NEW_PROXY_PORT
            and str(props["ProxyUserName"].value2).lower() == NEW_ACCOUNT.lower()
            and int(props["AnonymousProxyAccess"].value) == 0
        )
        if ok and t.sup:
            sup = state.server_props(t.site, t.name, SUP_ROLE)
            ok = int(sup["UseProxy"].value) == 1 and int(sup["UseProxyForADR"].value) == 1
        if not ok:
            wrong.append(t.name)
    return wrong
