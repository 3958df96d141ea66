"""Fails first, in one line naming the extra, when the emulator's own dependencies are missing.

The emulator's dependencies are not part of a base `pip install cmproxy` (the SDK never needs
them); `pip install 'cmproxy[emulator]'` brings them. Imported at the top of `api` (which
`serve`, the CLI's demo and the pytest fixtures go through), so a missing one is named here
rather than as a bare `ModuleNotFoundError` from deep inside the engine.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EMULATOR_MODULES", "missing_modules"]

#: Top-level modules only the emulator imports (the `emulator` extra in pyproject.toml).
EMULATOR_MODULES = ("psrpcore", "tree_sitter", "tree_sitter_powershell", "defusedxml")


def missing_modules() -> list[str]:
    """The modules of `EMULATOR_MODULES` this Python cannot import."""
    return [name for name in EMULATOR_MODULES if importlib.util.find_spec(name) is None]


_missing = missing_modules()
if _missing:
    raise ModuleNotFoundError(
        "the cmproxy emulator is not installed: pip install 'cmproxy[emulator]' "
        f"(missing: {', '.join(_missing)})",
        name=_missing[0],
    )
