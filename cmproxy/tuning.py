"""How a session spends its round trips: one value (`Tuning`), its defaults measured.

The defaults were chosen on the emulator's cost model and a lab site (docs/performance.md,
docs/sessions.md); a `Session(info, tuning=Tuning(...))` may change them, nothing else reads
them.
"""

from __future__ import annotations

import attrs

__all__ = ["DEFAULT_TUNING", "Tuning"]


@attrs.frozen
class Tuning:
    """The batching and sharding knobs of a `Session`."""

    #: Pipelines of a whole-hierarchy read when the number of sites is not known yet: four
    #: (a hierarchy rarely has more sites than a CAS and three primaries to read at once).
    #: The warmed pools now finish their imports together (measured: four shards start
    #: within 10 ms of each other), so a fourth shard no longer waits for its pool, and each
    #: shard lists one site fewer: at N = 200 the read ends ≈ 0.07 s earlier than with three.
    read_shards: int = 4
    #: Server reads joined into one pipeline at most (`Session.read_state(servers)` from
    #: threads).
    read_batch_limit: int = 64
    #: Batched server reads in flight at once per session.
    reads_in_flight: int = 2
    #: Writes joined into one pipeline at most (`Session.apply` from threads, per site).
    write_batch_limit: int = 32
    #: Writes of one `apply_many` call in one pipeline at most, per site. The caller (a batch
    #: of transactions) already sized its round: a bulk batch's writes, SUP options included,
    #: stay in one pipeline, so a round never needs more runspace pools than batches in
    #: flight.
    many_writes_limit: int = 128
    #: Reading or reading back servers of known sites lists those sites' roles once (one Get
    #: per site) instead of one Get per server when they are at least 1/site_listing_ratio of
    #: the sites' servers (as of the session's last whole read) and at least site_listing_min:
    #: below that, listing every row costs the provider (and the emulator) more than the Gets
    #: it saves.
    site_listing_ratio: int = 4
    site_listing_min: int = 8
    #: Runspace pools that bootstrap (import the ConfigurationManager module) at a time when a
    #: session opens several ahead (`Session.warm`, which `apply_bulk` calls); the others are
    #: opened meanwhile and import as turns free up. None (the default): as many as the SMS
    #: Provider has logical processors, which the first pool asks (`[Environment]::ProcessorCount`,
    #: one short pipeline) before it imports; all at once if it does not answer. The import
    #: loads the AdminUI assemblies on the provider: if that is CPU-bound there
    #: ([UNCONFIRMED]), k imports on c < k cores each take k / c times as long, so all at once
    #: delays every pool (the first one, on which the planning read runs, included), while in
    #: turns of c the first c are ready after one import (the benchmark's `import-contention`,
    #: 4 cores and 12 pools at N = 1,000: 1.26 x smart-par all at once, 1.13 x in turns of 4).
    #: Set a number to override what the provider says (one larger than `max_pools`: all at
    #: once). Over WinRS there are no pools: it has no effect.
    imports_at_once: int | None = None
    #: Batched writes in flight at once per site (a site serialises its writes anyway; two let
    #: one batch read back while the other writes).
    writes_in_flight: int = 2


DEFAULT_TUNING = Tuning()
