"""The engine's boundary values, where the shells import them (defined in `language.values`)."""

from cmproxy.emulator.engine.language.values import (
    SWITCH_PRESENT,
    CommandSpec,
    ErrorRecord,
    InvocationResult,
    PSObj,
    SecureValue,
)

__all__ = [
    "SWITCH_PRESENT",
    "CommandSpec",
    "ErrorRecord",
    "InvocationResult",
    "PSObj",
    "SecureValue",
]
