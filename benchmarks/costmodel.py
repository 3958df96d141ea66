"""The cost model of the benchmark and the lower bound (`floor`) it implies.

All figures are assumptions scaled down so a run takes minutes, not hours (see
docs/performance.md for the reasoning and the scale factors). The emulator applies them through
`cmproxy.emulator.settings.Costs`:
- `http_exchange`: slept for every HTTP request the endpoint receives (auth legs included);
- `module_import`: slept by `Import-Module ConfigurationManager` (per runspace / process);
- `get_cmdlet`: slept by every ConfigMgr Get cmdlet call;
- `set_cmdlet`: slept by every ConfigMgr write, per written object, under the site's lock
  when `serialise_site_writes` (a site serialises writes to its site control data).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import attrs

from benchmarks.seed import SITES, Target
from cmproxy.emulator.settings import Costs


def default_costs() -> Costs:
    """The benchmark's assumptions (scaled): import 2 s, Set 50 ms, Get 20 ms, exchange 2 ms."""
    return Costs(
        http_exchange=0.002,
        module_import=2.0,
        get_cmdlet=0.02,
        set_cmdlet=0.05,
        serialise_site_writes=True,
    )


def zero_costs() -> Costs:
    return Costs(http_exchange=0.0, module_import=0.0, get_cmdlet=0.0, set_cmdlet=0.0)


#: Get cmdlets of one batched read of one site: Get-CMSite for the hierarchy, then the site's
#: Get-CMSiteRole, Get-CMSoftwareUpdatePointComponent and Get-CMAccount (sites in parallel).
READ_GETS = 4
#: HTTP exchanges nobody can avoid: open the pool (create, receive), three pipelines of one
#: command and one receive each (bootstrap, read, verify), the writes batched into one more.
FLOOR_EXCHANGES = 12


@attrs.frozen
class Floor:
    """The lower bound and its parts, in seconds."""

    seconds: float
    import_s: float
    reads_s: float
    writes_s: float
    exchanges_s: float
    busiest_site: str
    writes_on_busiest: int


def floor(costs: Costs, chosen: Sequence[Target], providers: int = 1) -> Floor:
    """The fastest any client could be under `costs`.

    The module is imported once per provider (providers in parallel, so once on the clock);
    the current state is read once before and verified once after, each read batched (one Get
    per site and kind, sites in parallel); each site's writes (one new account, one
    Set-CMSiteSystemServer per server, one Set-CMSoftwareUpdatePoint per SUP) are serialised on
    that site and sites write in parallel; client CPU is free.
    """
    del providers  # imports run in parallel: one import on the clock whatever their number
    writes: Counter[str] = Counter()
    for site in {t.site for t in chosen}:
        writes[site] += 1  # New-CMAccount for the new account at that site
    for t in chosen:
        writes[t.site] += 1 + int(t.sup)
    busiest, count = max(writes.items(), key=lambda kv: kv[1]) if writes else (SITES[0], 0)
    import_s = costs.module_import
    reads_s = 2 * READ_GETS * costs.get_cmdlet
    writes_s = count * costs.set_cmdlet if costs.serialise_site_writes else costs.set_cmdlet
    exchanges_s = FLOOR_EXCHANGES * costs.http_exchange
    return Floor(
        import_s + reads_s + writes_s + exchanges_s,
        import_s,
        reads_s,
        writes_s,
        exchanges_s,
        busiest,
        count,
    )
