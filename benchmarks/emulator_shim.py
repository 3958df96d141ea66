"""A harness-side speed shim for the emulator: look a named server's role rows up by index.

The emulator's Get cmdlets (`cmdlets._rows`) load and decode *every* role row of the hierarchy
for each call, even `Get-CMSiteSystemServer -SiteSystemServerName x -SiteCode PS1`: about
0.12 s of emulator CPU per call once the hierarchy holds 2,000 role rows. That is an artefact
of the emulator, not part of the cost model (a Get costs `Costs.get_cmdlet`), and it would
make every contender's figures measure the emulator's Python instead of the protocol.

`install()` wraps `_rows` (in the benchmark's process only; no emulator file is changed) so that
an exact, wildcard-free server name is answered from `SiteState.sysres(server=...)` (an indexed
SQLite query, see `seed.build`), with the same site and role filters; anything else, and any
name not found that way, goes to the original function, so the results are the same rows in
the same order. Proposed upstream in benchmarks/proposals/emulator-indexed-rows.md; remove this
file once the emulator does it itself.
"""

from __future__ import annotations

from typing import Any

_installed = False


def install() -> bool:
    """Install once; returns False when the emulator no longer has the slow path."""
    global _installed  # noqa: PLW0603 - one process-wide patch
    if _installed:
        return True
    from cmproxy.emulator.engine import cmdlets  # noqa: PLC0415

    original = getattr(cmdlets, "_rows", None)
    if original is None or getattr(cmdlets, "INDEXED_ROWS", False):
        return False

    def rows(ctx: Any, a: dict[str, Any], role: str | None) -> Any:
        name = a.get("SiteSystemServerName")
        if not isinstance(name, str) or not name or any(c in name for c in "*?[]`"):
            return original(ctx, a, role)
        sites = cmdlets._sites_for(ctx, a)
        wanted = None if sites is None else {s.upper() for s in sites}
        found = [
            r
            for r in ctx.state.sysres(server=name, role=role)
            if wanted is None or r.site.upper() in wanted
        ]
        return found if found else original(ctx, a, role)

    cmdlets._rows = rows
    _installed = True
    return True
