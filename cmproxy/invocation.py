"""Invocations: a cmdlet and its bound parameters, as values.

A plan says which cmdlet each change needs; the session binds the parameters (PSRP
`add_parameter`, or a safe encoding over WinRS), so values are never formatted into script
text. `render()` is for people only: it shows what would run, with secrets masked.
"""

from __future__ import annotations

from typing import Any

import attrs

from cmproxy.model import Secret

__all__ = ["AccountLookup", "Invocation"]


@attrs.frozen
class AccountLookup:
    r"""A parameter value that is the account object `Get-CMAccount -UserName <name>` returns.

    `-ProxyAccessAccount` takes an `IResultObject#SMS_SCI_Reserved`, not a string
    (configmgr-cmdlets.md §3.5), so the remote side must look the account up.
    """

    name: str
    site_code: str


def _render_value(value: Any) -> str:
    if isinstance(value, bool):
        return "$true" if value else "$false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Secret):
        return "<SecureString>"
    if isinstance(value, AccountLookup):
        return f"(Get-CMAccount -UserName {_quote(value.name)} -SiteCode {_quote(value.site_code)})"
    if value is None:
        return "$null"
    return _quote(str(value))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@attrs.frozen
class Invocation:
    """One cmdlet call with named parameters in a stable order."""

    command: str
    parameters: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, command: str, **parameters: Any) -> Invocation:
        """Build from keyword arguments, dropping those that are None."""
        return cls(command, tuple((k, v) for k, v in parameters.items() if v is not None))

    def get(self, name: str) -> Any:
        return next((v for k, v in self.parameters if k == name), None)

    @property
    def has_secret(self) -> bool:
        return any(isinstance(v, Secret) for _, v in self.parameters)

    def render(self) -> str:
        """PowerShell-looking text for display; secrets masked, never executed."""
        parts = [self.command]
        parts += [f"-{name} {_render_value(value)}" for name, value in self.parameters]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form with secrets masked."""
        params: dict[str, Any] = {}
        for name, value in self.parameters:
            if isinstance(value, Secret):
                params[name] = "********"
            elif isinstance(value, AccountLookup):
                params[name] = {"Get-CMAccount": value.name, "SiteCode": value.site_code}
            else:
                params[name] = value
        return {"command": self.command, "parameters": params}

    def __str__(self) -> str:
        return self.render()
