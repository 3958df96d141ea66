"""The emulator's PowerShell engine: parser/evaluator, binding, built-ins, ConfigMgr cmdlets.

Entry point: `SiteEngine(state, settings)`; see `runspace.py` and docs/emulator.md.
"""

from cmproxy.emulator.engine.runspace import SiteEngine, SiteRunspace

__all__ = ["SiteEngine", "SiteRunspace"]
