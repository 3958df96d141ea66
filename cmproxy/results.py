"""Results people would rather look at than read: tables, HTML for notebooks, JSON.

`Results` gathers the per-server outcomes of one or many transactions. It renders as a colour
coded HTML table in Jupyter (`_repr_html_`), becomes a pandas DataFrame (`to_dataframe`,
pandas is an optional extra), or JSON (`to_json`). Plans render the same way
(`cmproxy.render.plan_html`). Nothing here ever holds a password: values come through
their `to_dict()`.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from cmproxy.render import snapshot_text
from cmproxy.transaction import Outcome, ServerOutcome

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OUTCOME_COLOURS", "Results", "ServerResult"]

#: Background colours per outcome (HTML tables and the CLI's rich table styles).
OUTCOME_COLOURS = {
    Outcome.CHANGED: "#d4edda",
    Outcome.UNCHANGED: "#f0f0f0",
    Outcome.ROLLED_BACK: "#fff3cd",
    Outcome.FAILED: "#f8d7da",
    Outcome.NOT_VISIBLE: "#e2d9f3",
}


@attrs.frozen
class ServerResult:
    """One server's outcome with the site it belongs to."""

    site_code: str
    outcome: ServerOutcome

    @property
    def server(self) -> str:
        return self.outcome.server

    def record(self) -> dict[str, Any]:
        o = self.outcome
        return {
            "site": self.site_code,
            "server": o.server,
            "outcome": o.outcome.value,
            "before": snapshot_text(o.before) if o.before else "",
            "after": snapshot_text(o.after) if o.after else "",
            "reason": o.reason,
        }


@attrs.frozen
class Results:
    """Outcomes of a change across many servers, in the order they were planned."""

    items: tuple[ServerResult, ...] = ()
    cancelled: bool = False

    def __iter__(self) -> Iterator[ServerResult]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def ok(self) -> bool:
        """True when every server ended in its new state (or already was in it)."""
        return not self.cancelled and all(
            r.outcome.outcome in (Outcome.CHANGED, Outcome.UNCHANGED) for r in self.items
        )

    def counts(self) -> dict[str, int]:
        """Servers per outcome. "not visible yet" (a lagging hierarchy) is listed only when
        some server ended so, keeping the usual counts as they have always been."""
        found = Counter(r.outcome.outcome.value for r in self.items)
        return {
            o.value: found.get(o.value, 0)
            for o in Outcome
            if o is not Outcome.NOT_VISIBLE or found.get(o.value)
        }

    def by_outcome(self, outcome: Outcome) -> list[ServerResult]:
        return [r for r in self.items if r.outcome.outcome is outcome]

    def records(self) -> list[dict[str, Any]]:
        return [r.record() for r in self.items]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "cancelled": self.cancelled,
            "counts": self.counts(),
            "servers": [{"site": r.site_code, **r.outcome.to_dict()} for r in self.items],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_dataframe(self) -> pd.DataFrame:
        """A DataFrame with one row per server (needs the `pandas` extra)."""
        try:
            import pandas as pd  # noqa: PLC0415 - optional extra
        except ImportError as error:  # pragma: no cover - depends on the environment
            raise ImportError(
                "to_dataframe() needs pandas: pip install 'cmproxy[pandas]'"
            ) from error
        return pd.DataFrame.from_records(
            self.records(), columns=["site", "server", "outcome", "before", "after", "reason"]
        )

    def summary(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts().items() if n)
        tail = " (cancelled)" if self.cancelled else ""
        return f"{len(self)} server(s): {counts or 'none'}{tail}"

    def _repr_html_(self) -> str:
        rows = []
        for r in self.items:
            o = r.outcome
            colour = OUTCOME_COLOURS[o.outcome]
            rows.append(
                f'<tr style="background:{colour}">'
                f"<td>{html.escape(r.site_code)}</td><td>{html.escape(o.server)}</td>"
                f"<td><b>{html.escape(o.outcome.value)}</b></td>"
                f"<td>{html.escape(snapshot_text(o.before))} &rarr; "
                f"{html.escape(snapshot_text(o.after))}</td>"
                f"<td>{html.escape(o.reason)}</td></tr>"
            )
        head = "<tr><th>site</th><th>server</th><th>outcome</th><th>before &rarr; after</th>"
        head += "<th>reason</th></tr>"
        return (
            f"<p>{html.escape(self.summary())}</p>"
            f'<table class="cmproxy-results">{head}{"".join(rows)}</table>'
        )

    @classmethod
    def merge(cls, parts: Iterable[Results]) -> Results:
        items: list[ServerResult] = []
        cancelled = False
        for part in parts:
            items.extend(part.items)
            cancelled = cancelled or part.cancelled
        return cls(tuple(items), cancelled)
