"""Evaluates PowerShell scripts parsed by tree-sitter-powershell: a documented subset.

Scripts are evaluated, never pattern-matched: a quoted `'x''; Remove-Item y'` is one string
literal because the parser says so. Anything the evaluator does not know raises
`NotSupportedByEmulator` (see docs/emulator.md for the subset).
"""

from __future__ import annotations

from cmproxy.emulator.engine.language.statements import StatementRules


class Evaluator(StatementRules):
    """Runs statements of one source text within a runspace (see `evaluation` for the
    layers this class is built from)."""
