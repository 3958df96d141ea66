"""The `cmproxy:<Code>:` markers the templates throw, mapped to the error tree."""

from __future__ import annotations

from cmproxy._exceptions import (
    CMProxyError,
    ConflictError,
    ConsoleNotInstalledError,
    ItemNotFoundError,
    PowerShellError,
    SiteDriveError,
)
from cmproxy.bootstrap import bootstrap_error
from cmproxy.connection import ConnectionInfo

__all__ = ["map_session_error"]

_MARKER = "cmproxy:"


def _marker(exc: PowerShellError) -> tuple[str, str] | None:
    text = exc.message
    start = text.find(_MARKER)
    if start < 0:
        return None
    code, _, detail = text[start + len(_MARKER) :].partition(":")
    return code.strip(), detail.strip()


def map_session_error(exc: CMProxyError, info: ConnectionInfo) -> CMProxyError:
    """Turn a template's `cmproxy:<Code>:` error (or a missing CM cmdlet) into the right class."""
    if not isinstance(exc, PowerShellError):
        return exc
    marker = _marker(exc)
    where = info.server
    if marker is None:
        if exc.error_id == "CommandNotFoundException" and "-CM" in exc.message:
            return ConsoleNotInstalledError(
                f"{where}: a ConfigurationManager cmdlet is missing ({exc.message}). Install the "
                "Configuration Manager console on the SMS Provider (it ships the module), or "
                "set module_path / CMPROXY_MODULE_PATH to ConfigurationManager.psd1."
            )
        return exc
    code, detail = marker
    if code == "ConsoleNotInstalled":
        return ConsoleNotInstalledError(
            f"{where}: the ConfigurationManager PowerShell module was not found ({detail}). "
            "Install the Configuration Manager console on that server (it ships the module), "
            "or set module_path / CMPROXY_MODULE_PATH to the full path of "
            "ConfigurationManager.psd1 (…\\AdminConsole\\bin\\ConfigurationManager.psd1)."
        )
    if code == "DriveClash":
        return SiteDriveError(
            f"{where}: the site drive cannot be used: {detail}. The site code clashes with an "
            "existing PowerShell drive of another provider (for example a site code ENV). "
            "Remove that drive for the cmproxy account, or connect with a different account."
        )
    if code == "SiteDriveMissing":
        return SiteDriveError(
            f"{where}: {detail}. Check the site code and that provider_machine_name "
            "(CMPROXY_PROVIDER_MACHINE_NAME) names the SMS Provider, and that the account is "
            "a Configuration Manager administrative user."
        )
    if code == "SiteCodeUnknown":
        # Initialize-CMSession.ps1: "found N CMSite drives: CAS, PS1, PS2".
        listed = detail.partition(":")[2]
        return SiteDriveError(
            f"{where}: the site code was not given and could not be guessed ({detail}); set "
            "site_code (CMPROXY_SITE_CODE).",
            site_codes=tuple(c.strip() for c in listed.split(",") if c.strip()),
        )
    mapped = bootstrap_error(code, detail, where)
    if mapped is not None:
        return mapped
    if code == "Locked":  # Set-ProxyBatch.ps1: another writer held the lock it needed
        return ConflictError(exc.target or where, detail)
    if code in {"AccountNotFound", "ServerNotFound"}:
        return ItemNotFoundError(
            detail,
            fully_qualified_error_id=exc.fully_qualified_error_id,
            category="ObjectNotFound",
            target=exc.target,
            command=exc.command,
        )
    return exc
