"""The cost model of the benchmark, its named profiles, and the lower bound (`floor`).

All figures are assumptions scaled down so a run takes minutes, not hours (see
docs/performance.md for the reasoning and the scale factors). The emulator applies them through
`cmproxy.emulator.settings.Costs`:
- `http_exchange`: slept for every HTTP request the endpoint receives (auth legs included);
- `module_import`: slept by `Import-Module ConfigurationManager` (per runspace / process),
  stretched when more imports run at once than `provider_cores` [UNCONFIRMED];
- `get_cmdlet`: slept by every ConfigMgr Get call, plus `get_per_row` per object it returns
  [UNCONFIRMED];
- `set_cmdlet`: slept by every ConfigMgr write, per written object, under a write lock when
  `serialise_site_writes`: one per site, or one for the provider (`write_lock`) [UNCONFIRMED].

Every profile is a modelling choice, not a measurement of a real SMS Provider.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

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


def scaled(costs: Costs, factor: float) -> Costs:
    """`costs` with every duration × `factor` and its shape (write lock, cores) kept.

    × 0 is a harness check (`--zero-costs`). × 10 (`--cost-scale 10`) separates what the cost
    model charges a contender from this machine's CPU: the modelled costs grow tenfold, the CPU
    (the client's, and the emulator interpreting what it is sent) does not, so a contender's
    overhead over the floor ÷ 10 is what the model charges the way it works, plus a tenth of
    its CPU (docs/performance.md, "The costs × 10"). The floor is linear in these durations.
    """
    return attrs.evolve(
        costs,
        http_exchange=costs.http_exchange * factor,
        module_import=costs.module_import * factor,
        get_cmdlet=costs.get_cmdlet * factor,
        set_cmdlet=costs.set_cmdlet * factor,
        get_per_row=costs.get_per_row * factor,
    )


def without_time(costs: Costs) -> Costs:
    """`costs` with every duration 0 and its shape (write lock, cores) kept: a harness check."""
    return scaled(costs, 0.0)


@attrs.frozen
class Profile:
    """A named variation of the default costs and why it is plausible."""

    name: str
    why: str
    costs: Callable[[], Costs]


def _varied(**changes: Any) -> Callable[[], Costs]:
    return lambda: attrs.evolve(default_costs(), **changes)


#: The sweep (issue 18). The Set (50 ms) is the unit: every profile keeps it, so the write-bound
#: part of a run is the same and only the varied cost moves.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "default",
            "import 40 Sets, Get 0.4 Set per call, writes serialised per site",
            default_costs,
        ),
        Profile(
            "import-2.5",
            "import:Set 2.5 (a real import of 5 s against a Set of 2 s): import 0.125 s",
            _varied(module_import=0.125),
        ),
        Profile("import-100", "import:Set 100: import 5 s", _varied(module_import=5.0)),
        Profile(
            "get-per-row",
            "[UNCONFIRMED] a Get costs 20 ms per call plus 1 ms per object returned "
            "(5 ms unscaled: each WMI instance built and sent)",
            _varied(get_per_row=0.001),
        ),
        Profile(
            "import-contention",
            "[UNCONFIRMED] concurrent imports share the provider's 4 cores (a 4-core primary "
            "site server: Microsoft's size for 25,000 clients with a remote SQL Server, site "
            "size and performance FAQ; [Environment]::ProcessorCount answers 4): 8 imports at "
            "once take 2 × each",
            _varied(provider_cores=4),
        ),
        Profile(
            "writes-per-provider",
            "[UNCONFIRMED] the provider applies one write at a time, whatever the site",
            _varied(write_lock="provider"),
        ),
    )
}

#: HTTP exchanges nobody can avoid, all on the critical path: NTLM's two legs, open the pool
#: (create, receive), one pipeline that imports and reads (command, receive), one that writes
#: and reads the last write back (command, receive).
FLOOR_EXCHANGES = 8


@attrs.frozen
class Floor:
    """The lower bound and its parts, in seconds."""

    seconds: float
    import_s: float
    reads_s: float
    writes_s: float
    exchanges_s: float
    busiest_lock: str
    writes_on_busiest: int

    @property
    def first_write_s(self) -> float:
        """When the floor's first write starts: import, read, and six exchanges."""
        return self.import_s + self.reads_s / 2 + 6 / FLOOR_EXCHANGES * self.exchanges_s

    @property
    def tail_s(self) -> float:
        """After the floor's last write: the read-back of that write and its answer."""
        return self.reads_s / 2 + self.exchanges_s / FLOOR_EXCHANGES


def write_counts(chosen: Sequence[Target]) -> Counter[str]:
    """Writes per site: one New-CMAccount, one Set per server, one more per SUP."""
    writes: Counter[str] = Counter()
    for site in {t.site for t in chosen}:
        writes[site] += 1
    for t in chosen:
        writes[t.site] += 1 + int(t.sup)
    return writes


def floor(costs: Costs, chosen: Sequence[Target]) -> Floor:
    """The fastest any client that reads before it writes and reads its writes back could be.

    The module is imported once (alone, so never contended); the reads run in parallel, so
    the read before the writes costs one Get of one object, and only the last write's
    read-back is on the clock after the writes (one more Get of one object); the writes
    behind the busiest write lock (a site's, or the provider's) are serialised, the others
    run beside them; FLOOR_EXCHANGES exchanges; client and emulator CPU are free:
    `floor = import + Get + busiest lock's writes × Set + Get + exchanges`.
    """
    writes = write_counts(chosen)
    if not costs.serialise_site_writes:
        busiest, count = ("none", 1 if writes else 0)
    elif costs.write_lock == "provider":
        busiest, count = "provider", sum(writes.values())
    else:
        busiest, count = max(writes.items(), key=lambda kv: kv[1]) if writes else (SITES[0], 0)
    import_s = costs.module_import
    reads_s = 2 * (costs.get_cmdlet + costs.get_rows_seconds(1))
    writes_s = count * costs.set_cmdlet
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
