"""The contract tests plan over the unit tests' small hierarchy (a CAS, a primary with a
secondary, typed roles): the same `state` fixture and `OLD` proxy, defined once."""

from __future__ import annotations

from unit.conftest import OLD, state

__all__ = ["OLD", "state"]
