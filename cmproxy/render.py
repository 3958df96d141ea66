"""HTML rendering of plans for notebooks (pure; `Plan._repr_html_` calls it).

It names no class of `cmproxy.plan`, only the shape it reads (`_PlanLike`), so plan may import
it without an import cycle.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["plan_html"]


class _FieldLike(Protocol):
    @property
    def field(self) -> str: ...
    @property
    def before(self) -> Any: ...
    @property
    def after(self) -> Any: ...
    @property
    def note(self) -> str: ...


class _InvocationLike(Protocol):
    def render(self) -> str: ...


class _KindLike(Protocol):
    @property
    def value(self) -> str: ...


class _ChangeLike(Protocol):
    @property
    def kind(self) -> _KindLike: ...
    @property
    def target(self) -> str: ...
    @property
    def site_code(self) -> str: ...
    @property
    def fields(self) -> Sequence[_FieldLike]: ...
    @property
    def reasons(self) -> Sequence[str]: ...
    @property
    def invocation(self) -> _InvocationLike: ...


class _PlanLike(Protocol):
    @property
    def is_empty(self) -> bool: ...
    @property
    def changes(self) -> Sequence[_ChangeLike]: ...
    @property
    def warnings(self) -> Sequence[object]: ...


def plan_html(plan: _PlanLike) -> str:
    """An HTML table of a plan: one row per change, fields before → after, warnings below."""
    if plan.is_empty and not plan.warnings:
        return "<p>No changes: the site is already in the desired state.</p>"
    rows = []
    for n, change in enumerate(plan.changes, 1):
        fields = "<br>".join(
            f"{html.escape(f.field)}: {html.escape(repr(f.before))} &rarr; "
            f"{html.escape(repr(f.after))}" + (f" <i>({html.escape(f.note)})</i>" if f.note else "")
            for f in change.fields
        )
        reasons = "<br>".join(html.escape(r) for r in change.reasons)
        rows.append(
            f"<tr><td>{n}</td><td>{html.escape(change.kind.value)}</td>"
            f"<td>{html.escape(change.target)} [{html.escape(change.site_code)}]</td>"
            f"<td>{fields}</td><td>{reasons}</td>"
            f"<td><code>{html.escape(change.invocation.render())}</code></td></tr>"
        )
    head = "<tr><th>#</th><th>change</th><th>target</th><th>before &rarr; after</th>"
    head += "<th>why</th><th>cmdlet</th></tr>"
    warnings = "".join(f"<li>{html.escape(str(w))}</li>" for w in plan.warnings)
    tail = f"<ul class='cmproxy-warnings'>{warnings}</ul>" if warnings else ""
    return f'<table class="cmproxy-plan">{head}{"".join(rows)}</table>{tail}'
