"""The ConfigurationManager module on the console machine: Import-Module / Get-Module,
why an import is refused (execution policy, .NET Framework) and the site drives it creates."""

from __future__ import annotations

import ntpath
import re
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.configmgr import paths
from cmproxy.emulator.engine.configmgr.host import MODULE_PATH, MODULE_VERSION, Drive
from cmproxy.emulator.engine.configmgr.table import console_command
from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import record
from cmproxy.emulator.engine.language.values import ErrorRecord, PSObj
from cmproxy.emulator.engine.stdlib.table import powershell_class
from cmproxy.emulator.settings import HostFacts

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext, SiteSession


def _is_cm_module(name: str, rs: SiteSession) -> bool:

    if name.lower() == "configurationmanager":
        return True
    if name.lower().endswith(".psd1") or "\\" in name or "/" in name:
        path = paths.fs_full(rs, name)
        return path.lower() == MODULE_PATH.lower()
    return False


def import_cm_module(rs: SiteSession, ctx: SiteCallContext | None) -> None:
    """Load the module: costs.module_import, then the site drives (if auto-created)."""

    eng = rs.engine
    eng.settings.charge_import(eng.sleep)
    rs.modules.add("configurationmanager")
    if not eng.auto_site_drive:
        return
    for site in eng.state.sites():
        root = site_provider(rs, site)
        if not root:
            continue
        moved = root != site.provider  # HostFacts.sms_provider_machine
        if (moved or eng.settings.host.provider_access_denied) and provider_refused(rs, root):
            # [UNCONFIRMED] a drive the module cannot connect is not created at import. (The
            # drives of other sites' providers stay as before: a simplification.)
            continue
        key = site.code.lower()
        existing = rs.drives.get(key)
        if existing is not None and existing.provider == "CMSite":
            continue
        if existing is not None:
            rec = record(
                f"A drive with the name '{site.code}' already exists.",
                "DriveAlreadyExists",
                powershell_class("Import-Module"),
                category="ResourceExists",
                exception="System.Management.Automation.SessionStateException",
                command="Import-Module",
                target=site.code,
            )
            if ctx is not None:
                ctx.write_error(rec)
            continue
        rs.drives[key] = Drive(site.code, "CMSite", root, site.code)


def site_provider(rs: SiteSession, site: Any) -> str:
    """The SMS Provider machine of `site` (HostFacts.sms_provider_machine for the local site)."""
    other = rs.engine.settings.host.sms_provider_machine
    if other and site.code.upper() == rs.engine.local_site.upper():
        return other
    return str(site.provider or "")


def provider_refused(rs: SiteSession, machine: str) -> bool:
    """The SMS Provider on `machine` refuses this session: not a ConfigMgr administrative
    user, or a second hop the credentials cannot make."""
    host = rs.engine.settings.host
    return host.provider_access_denied or paths.second_hop_blocked(rs, machine)


#: The module needs .NET Framework 4.7.2 or later from 2103 (configmgr-cmdlets.md §1.1, PSOV).
MODULE_DOTNET = (4, 7, 2)


_POLICY_HELP = "about_Execution_Policies at https://go.microsoft.com/fwlink/?LinkID=135170"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:4])


def module_blocked(host: HostFacts) -> bool:
    """Import-Module of the ConfigurationManager module fails on this host (see below)."""
    policy = host.execution_policy.lower()
    signed_ok = host.module_signed and host.module_publisher_trusted
    return (
        policy == "restricted"
        or (policy == "allsigned" and not signed_ok)
        or _version(host.dotnet_framework_version) < MODULE_DOTNET
    )


def module_refusal(ctx: SiteCallContext) -> ErrorRecord | None:
    """Why Import-Module of ConfigurationManager.psd1 fails on this host, if it does.

    Execution policy first (the manifest is a script file; Authenticode.resx texts, error
    `UnauthorizedAccess` / PSSecurityException as Import-Module reports it), then the
    manifest's .NET Framework requirement (`Modules_InsufficientDotNetFrameworkVersion`,
    ModuleCmdletBase in Windows PowerShell 5.1).
    """
    host = ctx.engine.settings.host
    policy = host.execution_policy.lower()
    reason = ""
    if policy == "restricted":
        reason = (
            f"File {MODULE_PATH} cannot be loaded because running scripts is disabled on this "
            f"system. For more information, see {_POLICY_HELP}."
        )
    elif policy == "allsigned" and not host.module_signed:
        reason = (
            f"File {MODULE_PATH} cannot be loaded. The file {MODULE_PATH} is not digitally "
            "signed. You cannot run this script on the current system. For more information "
            f"about running scripts and setting execution policy, see {_POLICY_HELP}."
        )
    elif policy == "allsigned" and not host.module_publisher_trusted:
        # [UNCONFIRMED] A remote session cannot show the "untrusted publisher" prompt; it is
        # taken to answer with the prompt's default, "Do not run" (Authenticode.resx).
        reason = (
            f"File {MODULE_PATH} cannot be loaded because you opted not to run this software now."
        )
    if reason:
        return ctx.error(
            reason,
            "UnauthorizedAccess",
            category="SecurityError",
            exception="System.Management.Automation.PSSecurityException",
        )
    if _version(host.dotnet_framework_version) < MODULE_DOTNET:
        # [UNCONFIRMED] text of Modules.InvalidDotNetFrameworkVersion; the id, category and
        # exception are ModuleCmdletBase's.
        return ctx.error(
            f"The version of the loaded .NET Framework ({host.dotnet_framework_version}) is "
            f"lower than the version required by the module manifest '{MODULE_PATH}' "
            f"({'.'.join(map(str, MODULE_DOTNET))}).",
            "Modules_InsufficientDotNetFrameworkVersion",
            category="ResourceUnavailable",
            exception="System.InvalidOperationException",
            target=MODULE_PATH,
        )
    return None


@console_command(
    "Import-Module",
    [
        ParamDef("Name", "string[]", mandatory=True, position=0),
        ParamDef("Global", "switch"),
        ParamDef("Force", "switch"),
        ParamDef("PassThru", "switch"),
        ParamDef("Scope", "string"),
        ParamDef("DisableNameChecking", "switch"),
    ],
)
def _import_module(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    rs = ctx.rs
    for name in a["Name"]:
        if rs.engine.console_installed and _is_cm_module(name, rs):
            if "configurationmanager" in rs.modules and not a.get("Force"):
                continue
            refusal = module_refusal(ctx)
            if refusal is not None:
                ctx.write_error(refusal)
                continue
            ctx.write_verbose(f"Importing cmdlets from module '{name}'.")
            import_cm_module(rs, ctx)
            if a.get("PassThru"):
                return _module_obj()
            continue
        if name.lower() in ("microsoft.powershell.management", "microsoft.powershell.utility"):
            continue
        ctx.write_error(
            ctx.error(
                f"The specified module '{name}' was not loaded because no valid module file was "
                "found in any module directory.",
                "Modules_ModuleNotFound",
                category="ResourceUnavailable",
                exception="System.IO.FileNotFoundException",
                target=name,
            )
        )
    return None


def _module_obj() -> PSObj:

    return PSObj(
        ["System.Management.Automation.PSModuleInfo", "System.Object"],
        {
            "Name": "ConfigurationManager",
            "Version": MODULE_VERSION,
            "Path": MODULE_PATH,
            "ModuleBase": ntpath.dirname(MODULE_PATH),
            "ModuleType": "Manifest",
        },
        string="ConfigurationManager",
    )


@console_command(
    "Get-Module",
    [
        ParamDef("Name", "string[]", position=0),
        ParamDef("ListAvailable", "switch"),
        ParamDef("All", "switch"),
    ],
)
def _get_module(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    loaded = "configurationmanager" in ctx.rs.modules or (
        a.get("ListAvailable") and ctx.rs.engine.console_installed
    )
    names = a.get("Name")
    if not loaded:
        return None
    if names and not any(conv.like("ConfigurationManager", n) for n in names):
        return None
    return _module_obj()
