"""The one error tree of cmproxy.

    CMProxyError
    ├── ValidationError (also ValueError)     bad input: names the field, the value and the rule
    │   └── RuleViolation                      a desired state the product rules (R1–R14) refuse
    ├── PlanError                              a plan that cannot be built (e.g. unknown server)
    ├── ConflictError                          the server changed since it was read; nothing written
    ├── JournalError                           the local journal cannot be used (newer schema,
    │                                          full disk, read-only): names the file and the fix
    ├── ConnectionError                        the endpoint cannot be reached
    │   ├── AuthenticationError                credentials refused
    │   └── TLSError                           certificate not trusted / TLS failure
    ├── TransportError                         the WinRM/PSRP exchange failed (may be transient)
    │   └── QuotaExceededError                 no shell for this account: a WinRM quota is full
    ├── SessionError                           bootstrap failed (module, site drive)
    │   ├── ConsoleNotInstalledError           the module is not on the target
    │   ├── ModuleBlockedError                 execution policy / untrusted publisher
    │   ├── DotNetFrameworkError               .NET Framework older than the module needs
    │   ├── SiteDriveError                     site drive missing or clashing
    │   ├── ProviderAccessDeniedError          the SMS Provider refuses the account
    │   └── SecondHopError                     the SMS Provider is on another machine
    ├── PowerShellError                        a remote error record (FullyQualifiedErrorId, …)
    │   ├── ItemNotFoundError
    │   └── ParameterBindingError
    └── TransactionError                       a change failed; says which state each server is in
        ├── RollbackError                      rolling back failed too: manual action needed
        └── NotVisibleError                    a write was accepted but reads still show the old
                                               value after the bound (a lagging hierarchy)

Secrets never appear in any message: constructors take already-masked values.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthenticationError",
    "CMProxyError",
    "ConflictError",
    "ConnectionError",
    "ConsoleNotInstalledError",
    "DotNetFrameworkError",
    "ItemNotFoundError",
    "JournalError",
    "ModuleBlockedError",
    "NotVisibleError",
    "ParameterBindingError",
    "PlanError",
    "PowerShellError",
    "ProviderAccessDeniedError",
    "QuotaExceededError",
    "RollbackError",
    "RuleViolation",
    "SecondHopError",
    "SessionError",
    "SiteDriveError",
    "TLSError",
    "TransactionError",
    "TransportError",
    "ValidationError",
]


class CMProxyError(Exception):
    """Root of every error cmproxy raises on purpose."""


class ValidationError(CMProxyError, ValueError):
    """Bad input. `field`, `value` and `rule` say exactly what and why; nothing was written."""

    def __init__(self, field: str, value: Any, reason: str, *, rule: str | None = None) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        self.rule = rule
        prefix = f"[{rule}] " if rule else ""
        super().__init__(f"{prefix}{field}={value!r}: {reason}")


class RuleViolation(ValidationError):  # noqa: N818 - reads as what it is
    """A desired state that a product rule refuses; `rule` is always set (R1…R14)."""

    def __init__(self, rule: str, field: str, value: Any, reason: str) -> None:
        super().__init__(field, value, reason, rule=rule)


class PlanError(CMProxyError):
    """A plan cannot be built from the given current and desired state."""


class ConflictError(CMProxyError):
    """The server changed since it was read (optimistic check failed); nothing was written."""

    def __init__(self, server: str, detail: str) -> None:
        self.server = server
        self.detail = detail
        super().__init__(
            f"{server}: changed since it was read ({detail}); nothing was written. "
            "Read the site again and re-plan."
        )


class JournalError(CMProxyError):
    """The transaction journal cannot be used: written by a newer cmproxy (schema version), on
    a full disk, read-only or damaged. The message names the file and what to do."""


class ConnectionError(CMProxyError):
    """The WinRM endpoint cannot be reached."""


class AuthenticationError(ConnectionError):
    """The endpoint refused the credentials."""


class TLSError(ConnectionError):
    """The endpoint's certificate is not trusted or TLS failed."""


class TransportError(CMProxyError):
    """The WinRM / PSRP exchange failed after the connection was made."""


class QuotaExceededError(TransportError):
    """No shell could be opened for the account: the endpoint refused it with a WinRM quota
    fault (MaxShellsPerUser of WinRS or of the PowerShell plug-in), or the cmproxy processes of
    this account on this machine already hold every shell `account_max_shells` allows.

    Transient: shells are freed when other sessions close or go idle. `limit` is the quota
    the endpoint named (None when it did not say), `code` its WSManFault code (None locally).
    """

    def __init__(self, message: str, *, limit: int | None = None, code: int | None = None) -> None:
        self.limit = limit
        self.code = code
        super().__init__(message)


class SessionError(CMProxyError):
    """The remote session could not be prepared for ConfigMgr cmdlets."""


class ConsoleNotInstalledError(SessionError):
    """The ConfigurationManager module (shipped with the console) is not on the target."""


class SiteDriveError(SessionError):
    """The CMSite drive for the site code is missing or clashes with another drive.

    `site_codes`: when no site code was given and the provider serves several sites, their
    codes (the CMSite drives the bootstrap found), so a caller can choose one.
    """

    def __init__(self, message: str, *, site_codes: tuple[str, ...] = ()) -> None:
        self.site_codes = site_codes
        super().__init__(message)


class ModuleBlockedError(SessionError):
    """Import-Module refused the module: execution policy (AllSigned, Restricted) or an
    untrusted publisher (`UnauthorizedAccess`, PSSecurityException)."""


class DotNetFrameworkError(SessionError):
    """The .NET Framework on the target is older than the ConfigurationManager module needs."""


class ProviderAccessDeniedError(SessionError):
    """The SMS Provider refuses the account (not a Configuration Manager administrative user)."""


class SecondHopError(SessionError):
    """The SMS Provider is on another machine than the WinRM target, and the session's
    credentials cannot make that second hop. `provider_machine` names it."""

    def __init__(self, message: str, *, provider_machine: str = "") -> None:
        self.provider_machine = provider_machine
        super().__init__(message)


class PowerShellError(CMProxyError):
    """A PowerShell error record from the remote side."""

    def __init__(
        self,
        message: str,
        *,
        fully_qualified_error_id: str = "",
        category: str = "",
        target: str = "",
        command: str = "",
    ) -> None:
        self.message = message
        self.fully_qualified_error_id = fully_qualified_error_id
        self.category = category
        self.target = target
        self.command = command
        where = f" ({command})" if command else ""
        fqid = f" [{fully_qualified_error_id}]" if fully_qualified_error_id else ""
        super().__init__(f"{message}{where}{fqid}")

    @property
    def error_id(self) -> str:
        return self.fully_qualified_error_id.split(",", 1)[0]


class ItemNotFoundError(PowerShellError):
    """The remote object does not exist (ItemNotFound, ObjectNotFound)."""


class ParameterBindingError(PowerShellError):
    """The remote cmdlet refused its parameters (binding or validation)."""


class TransactionError(CMProxyError):
    """A change failed. `outcomes` says, per server, whether it is in its old or new state."""

    def __init__(self, message: str, outcomes: Any = None) -> None:
        self.outcomes = outcomes
        super().__init__(message)


class RollbackError(TransactionError):
    """A change failed and so did the rollback: the server needs a person."""


class NotVisibleError(TransactionError):
    """Writes were accepted, but reads still showed the old value when
    `RetryPolicy.visibility_timeout` ran out (a hierarchy replicating a child site's change).

    Not rolled back (a restore would be one more write that cannot be seen either); the
    transaction stays open in the journal: `cmproxy recover` settles it once the change shows.
    """
