"""The emulator's PowerShell engine: the language (`language/`), the standard library
(`stdlib/`), the ConfigMgr product (`configmgr/`), put together by `runspace.py`.

Entry point: `SiteEngine(state, settings)`; see docs/emulator.md ("How the engine is laid out").
"""

from cmproxy.emulator.engine.runspace import SiteEngine, SiteRunspace

__all__ = ["SiteEngine", "SiteRunspace"]
