"""What the session bootstrap (`ps_templates/Initialize-CMSession.ps1`) found, and what its
`cmproxy:<Code>:` failures mean.

`BootstrapInfo` records which path the bootstrap took — where the module came from, whether
the site drive existed or was created, which machine the SMS Provider is on — so that a
`cmproxy doctor` (or a log line) can show it. `bootstrap_error` turns a failure code into the
exception of the one error tree that names the cause and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from cmproxy._exceptions import (
    CMProxyError,
    DotNetFrameworkError,
    ModuleBlockedError,
    ProviderAccessDeniedError,
    SecondHopError,
)

__all__ = ["BootstrapInfo", "bootstrap_error"]


@attrs.frozen
class BootstrapInfo:
    """The bootstrap's findings, one per output field of Initialize-CMSession.ps1.

    `module_source`: "AlreadyLoaded", "ModulePath" (module_path / CMPROXY_MODULE_PATH),
    "SMS_ADMIN_UI_PATH" (the console's variable) or "PSModulePath" (Import-Module by name).
    `drive_source`: "Existing" (created by the module at import, or earlier) or "Created" (by the
    bootstrap, New-PSDrive). `provider_machine`: the SMS Provider the site drive talks to
    (provider_machine_name, else SMS_ProviderLocation; "" when unknown); `provider_is_local`:
    it is the WinRM target itself (no second hop). Fields a template did not send are "" / None.
    """

    site_code: str
    module_version: str = ""
    module_path: str = ""
    module_source: str = ""
    drive_source: str = ""
    drive_root: str = ""
    computer_name: str = ""
    provider_machine: str = ""
    provider_is_local: bool | None = None
    execution_policy: str = ""

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> BootstrapInfo:
        def text(name: str) -> str:
            value = record.get(name)
            return "" if value is None else str(value)

        drive_source = text("DriveSource")
        if not drive_source and "DriveCreated" in record:
            drive_source = "Created" if record.get("DriveCreated") else "Existing"
        local = record.get("ProviderIsLocal")
        return cls(
            site_code=text("SiteCode"),
            module_version=text("ModuleVersion"),
            module_path=text("ModulePath"),
            module_source=text("ModuleSource"),
            drive_source=drive_source,
            drive_root=text("DriveRoot"),
            computer_name=text("ComputerName"),
            provider_machine=text("ProviderMachine"),
            provider_is_local=None if local is None else bool(local),
            execution_policy=text("ExecutionPolicy"),
        )

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def bootstrap_error(code: str, detail: str, where: str) -> CMProxyError | None:
    """The exception for a bootstrap failure code (None: not one of these codes)."""
    if code == "ModuleBlocked":
        return ModuleBlockedError(
            f"{where}: Import-Module refused the ConfigurationManager module: the execution "
            f"policy or an untrusted publisher blocks it ({detail}). Trust the module's signer "
            "(import the signing certificate of ConfigurationManager.psd1 into "
            "Cert:\\LocalMachine\\TrustedPublisher, as ConfigMgrCBDsc does), or set the "
            "execution policy of that machine (or of the cmproxy account) to RemoteSigned."
        )
    if code == "DotNetTooOld":
        return DotNetFrameworkError(
            f"{where}: the ConfigurationManager module needs a newer .NET Framework ({detail}). "
            "Since 2103 it needs .NET Framework 4.7.2 or later: install .NET Framework 4.8 on "
            "that machine, or connect to an SMS Provider machine that has it."
        )
    if code == "AccessDenied":
        return ProviderAccessDeniedError(
            f"{where}: the SMS Provider refused the account ({detail}). Make the account a "
            "Configuration Manager administrative user (Administration › Security › "
            "Administrative Users) with a role that may read and modify site system servers; "
            "the console adds it to SMS Admins on the provider machine."
        )
    if code == "ProviderElsewhere":
        machine, _, reason = detail.partition(":")
        machine = machine.strip()
        return SecondHopError(
            f"{where}: the SMS Provider is on {machine}, not on the WinRM target, and the site "
            "drive would reach it over a second hop, which NTLM, Basic and Kerberos without "
            f"delegation cannot make ({reason.strip()}). Connect to the SMS Provider machine "
            f"{machine} directly (server / CMPROXY_SERVER), or use CredSSP (auth='credssp') or "
            f"Kerberos constrained delegation from the WinRM target to {machine}.",
            provider_machine=machine,
        )
    return None
