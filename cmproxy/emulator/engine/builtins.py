"""Built-in cmdlets a ConfigMgr script needs around the ConfigurationManager module.

Only what SDK templates use is emulated. File-system access is simulated: `Get-Content` reads
site-server logs from the state, never files of the machine running the emulator.
"""

from __future__ import annotations

import ntpath
import re
from functools import cmp_to_key
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine import conv, dotnet_threading, paths
from cmproxy.emulator.engine.binding import CommandDef, ParamDef
from cmproxy.emulator.engine.cmdlets import site_obj
from cmproxy.emulator.engine.conv import ScriptBlock
from cmproxy.emulator.engine.errors import (
    NotSupportedByEmulator,
    PSError,
    record,
)
from cmproxy.emulator.engine.host import MODULE_PATH, MODULE_VERSION, Drive
from cmproxy.emulator.engine.interp import (
    Evaluator,
    LoopFlow,
    compare_op,
    get_member,
    parse,
    parse_error,
)
from cmproxy.emulator.engine.values import ErrorRecord, PSObj, SecureValue
from cmproxy.emulator.settings import HostFacts

if TYPE_CHECKING:
    from cmproxy.emulator.engine.runspace import CallContext, SiteRunspace

MS = "Microsoft.PowerShell.Commands."
CIM = "Microsoft.Management.Infrastructure.CimCmdlets.GetCimInstanceCommand"
P = ParamDef


def _cls(name: str) -> str:
    return MS + name.replace("-", "") + "Command"


# ---- modules --------------------------------------------------------------------------------


def _is_cm_module(name: str, rs: SiteRunspace) -> bool:

    if name.lower() == "configurationmanager":
        return True
    if name.lower().endswith(".psd1") or "\\" in name or "/" in name:
        path = paths.fs_full(rs, name)
        return path.lower() == MODULE_PATH.lower()
    return False


def import_cm_module(rs: SiteRunspace, ctx: CallContext | None) -> None:
    """Load the module: costs.module_import, then the site drives (if auto-created)."""

    eng = rs.engine
    if eng.settings.costs.module_import:
        eng.sleep(eng.settings.costs.module_import)
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
                _cls("Import-Module"),
                category="ResourceExists",
                exception="System.Management.Automation.SessionStateException",
                command="Import-Module",
                target=site.code,
            )
            if ctx is not None:
                ctx.write_error(rec)
            continue
        rs.drives[key] = Drive(site.code, "CMSite", root, site.code)


def site_provider(rs: SiteRunspace, site: Any) -> str:
    """The SMS Provider machine of `site` (HostFacts.sms_provider_machine for the local site)."""
    other = rs.engine.settings.host.sms_provider_machine
    if other and site.code.upper() == rs.engine.local_site.upper():
        return other
    return str(site.provider or "")


def provider_refused(rs: SiteRunspace, machine: str) -> bool:
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


def module_refusal(ctx: CallContext) -> ErrorRecord | None:
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


def _import_module(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
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


def _get_module(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    loaded = "configurationmanager" in ctx.rs.modules or (
        a.get("ListAvailable") and ctx.rs.engine.console_installed
    )
    names = a.get("Name")
    if not loaded:
        return None
    if names and not any(conv.like("ConfigurationManager", n) for n in names):
        return None
    return _module_obj()


# ---- locations ------------------------------------------------------------------------------


def _drive_not_found(ctx: CallContext, name: str) -> ErrorRecord:
    return paths.drive_not_found(ctx, name).record


def _set_location(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    rs = ctx.rs
    path = a.get("Path") or a.get("LiteralPath")
    if path is None:
        path = rs.home
    try:
        pp = paths.resolve_or_error(ctx, path)
    except PSError as e:
        ctx.write_error(e.record)
        return None
    drive_m = re.match(r"^([A-Za-z0-9_]+):[\\/]*(.*)$", path)
    if pp.provider == paths.CMSITE:
        if drive_m and "::" not in path:
            drive = rs.drives[drive_m.group(1).lower()]
            rs.location = (drive.name, drive_m.group(2).rstrip("\\"))
        elif path.startswith(("\\\\", "//")):
            # A UNC path from a site drive goes to the CMSite provider (module doc).
            ctx.write_error(_foreign_path(ctx, path))
            return None
        elif path.strip() in ("..", "\\", "/") and rs.current_drive() is not None:
            rs.location = (rs.location[0], "")
        else:
            raise NotSupportedByEmulator("Set-Location to a relative path on a site drive")
    elif pp.provider == paths.FILESYSTEM:
        rs.location = ("C", pp.path)
    else:
        raise NotSupportedByEmulator(f"Set-Location to the {pp.provider} provider")
    if a.get("PassThru"):
        return rs.location_obj()
    return None


def _foreign_path(ctx: CallContext, path: str) -> ErrorRecord:
    """A path the CMSite provider does not have (HostFacts.cmsite_foreign_path_error)."""
    rec = paths.path_not_found(ctx, path).record
    error_id = ctx.engine.settings.host.cmsite_foreign_path_error
    if error_id != "PathNotFound":
        rec.fully_qualified_error_id = f"{error_id},{ctx.cmd.cls}"
    return rec


def _get_location(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    return ctx.rs.location_obj()


def _push_location(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    ctx.rs.location_stack.append(ctx.rs.location)
    if a.get("Path"):
        return _set_location(ctx, a, items)
    return None


def _pop_location(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    if ctx.rs.location_stack:
        ctx.rs.location = ctx.rs.location_stack.pop()
    return None


def _drive_obj(d: Any) -> PSObj:
    provider = {
        "CMSite": "AdminUI.PS.Provider\\CMSite",
        "C": "Microsoft.PowerShell.Core\\FileSystem",
    }
    return PSObj(
        ["System.Management.Automation.PSDriveInfo", "System.Object"],
        {
            "Name": d.name,
            "Provider": provider.get(d.provider, provider.get(d.name, d.provider)),
            "Root": d.root,
            "Description": "",
            "CurrentLocation": "",
        },
        string=d.name,
    )


def _get_psdrive(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    out = []
    names = a.get("Name")
    provs = a.get("PSProvider")
    for n in names or [None]:
        found = [
            d
            for d in ctx.rs.drives.values()
            if (n is None or conv.like(d.name, n))
            and (not provs or any(_provider_matches(d.provider, p) for p in provs))
        ]
        if n is not None and not found and not conv.has_wildcard(n):
            ctx.write_error(
                ctx.error(
                    f"Cannot find drive. A drive with the name '{n}' does not exist.",
                    "GetLocationNoMatchingDrive",
                    category="ObjectNotFound",
                    exception="System.Management.Automation.DriveNotFoundException",
                    target=n,
                )
            )
        out += [_drive_obj(d) for d in found]
    return out


def _provider_matches(actual: str, given: str) -> bool:
    g = given.lower()
    if actual == "CMSite":
        return g in ("cmsite", "adminui.ps\\cmsite", "adminui.ps.provider\\cmsite")
    return g.split("\\")[-1] == actual.lower() or (actual == "FileSystem" and g == "filesystem")


def _new_psdrive(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:

    rs = ctx.rs
    name, prov, root = a["Name"], a["PSProvider"], a["Root"]
    pl = prov.lower()
    if pl not in ("cmsite", "adminui.ps\\cmsite") and not pl.endswith("cmsite"):
        raise NotSupportedByEmulator(f"New-PSDrive with provider '{prov}'")
    # Module 5.2111+ renamed the provider's module part: 'AdminUI.PS.Provider\CMSite' is not
    # found (reference §1.1, issue #248); no CMSite provider at all before the module import.
    if pl not in ("cmsite", "adminui.ps\\cmsite") or "configurationmanager" not in rs.modules:
        raise paths.provider_not_found(ctx, prov)
    if name.lower() in rs.drives:
        raise PSError(
            ctx.error(
                f"A drive with the name '{name}' already exists.",
                "DriveAlreadyExists",
                category="ResourceExists",
                exception="System.Management.Automation.SessionStateException",
                target=name,
            )
        )
    served = [
        s
        for s in ctx.state.sites()
        if site_provider(rs, s) and site_provider(rs, s).lower() == root.lower()
    ]
    # The drive's name is the site code it opens (`New-PSDrive -Name <SiteCode> -PSProvider
    # CMSite -Root <SMSProviderFQDN>`, configmgr-cmdlets.md §1.2): a provider serves its own
    # site's namespace only.
    site = next((s for s in served if s.code.lower() == name.lower()), None)
    if served and site is None:
        # [UNCONFIRMED] id and text: the provider has no namespace for that site code.
        raise PSError(
            ctx.error(
                f"Cannot connect to site '{name}' on the SMS Provider '{root}': the provider "
                f"serves site {served[0].code}.",
                "ProviderConnectionFailed",
                category="ConnectionError",
                exception="System.Management.ManagementException",
                target=root,
            )
        )
    if site is None:
        # [emulator] text: an SMS Provider that does not exist in the hierarchy.
        raise PSError(
            ctx.error(
                f"Cannot connect to the SMS Provider on '{root}': it is not an SMS Provider of "
                "this hierarchy.",
                "ProviderConnectionFailed",
                category="ConnectionError",
                exception="System.Management.ManagementException",
                target=root,
            )
        )
    if provider_refused(rs, root):
        # [UNCONFIRMED] the CMSite provider's WMI connection is refused (E_ACCESSDENIED) and
        # the engine wraps what NewDrive throws in a ProviderInvocationException.
        raise PSError(
            ctx.error(
                "Access is denied. (Exception from HRESULT: 0x80070005 (E_ACCESSDENIED))",
                "NewDriveProviderException",
                category="NotSpecified",
                exception="System.Management.Automation.ProviderInvocationException",
                target=root,
            )
        )
    d = Drive(name, "CMSite", site_provider(rs, site), site.code)
    rs.drives[name.lower()] = d
    return _drive_obj(d)


def _remove_psdrive(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    for n in a["Name"]:
        if n.lower() not in ctx.rs.drives:
            ctx.write_error(_drive_not_found(ctx, n))
            continue
        del ctx.rs.drives[n.lower()]
        if ctx.rs.location[0].lower() == n.lower():
            ctx.rs.location = ("C", ctx.rs.home)
    return None


def _test_path(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    out = []
    rs = ctx.rs
    for path in a["Path"]:
        try:
            pp = paths.resolve(rs, path)
        except (paths.ProviderNotFound, paths.DriveMissing):
            out.append(False)
            continue
        if pp.provider == paths.FILESYSTEM:
            # Denied (a second hop) reads as not there: Test-Path does not report errors.
            out.append(paths.fs_lookup(rs, pp.path).exists)
            continue
        m = re.match(r"^([^:\\/]+):[\\/]*(.*)$", path)
        if m and "::" not in path and len(m.group(1)) > 1:
            d = rs.drives[m.group(1).lower()]
            if d.provider == "Env":
                out.append(m.group(2).lower() in rs.env if m.group(2) else True)
            else:
                out.append(m.group(2) == "" or d.provider == "CMSite")
        elif pp.provider == paths.CMSITE and pp.path.startswith("\\\\"):
            out.append(False)  # a UNC path is no item of the CMSite provider (module doc)
        elif pp.provider == paths.CMSITE and pp.path.strip() in ("", ".", "\\"):
            out.append(True)
        else:
            raise NotSupportedByEmulator(f"Test-Path of '{path}' on the {pp.provider} provider")
    return out


# ---- CIM / WMI ------------------------------------------------------------------------------


def _cim(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:

    ns = (a.get("Namespace") or "root\\cimv2").lower().replace("/", "\\")
    cls = a.get("ClassName") or a.get("Class") or ""
    if a.get("Query") or a.get("Filter"):
        raise NotSupportedByEmulator("Get-CimInstance -Query/-Filter")
    for machine in a.get("ComputerName") or []:
        if paths.is_local_machine(ctx.rs, machine):
            continue
        if machine.split(".")[0].lower() not in paths.known_machines(ctx.rs):
            # ERROR_WSMAN destination unreachable (0x80338126), as for a machine not there.
            raise PSError(
                _cim_error(
                    ctx,
                    "WinRM cannot complete the operation. Verify that the specified computer "
                    "name is valid, that the computer is accessible over the network, and that "
                    "a firewall exception for the WinRM service is enabled and allows access "
                    "from this computer. ",
                    "0x80338126",
                    "ConnectionError",
                )
            )
        if paths.second_hop_blocked(ctx.rs, machine):
            # WinRM to another machine from inside a session without delegable credentials.
            raise PSError(_cim_error(ctx, "Access is denied. ", "0x80070005", "PermissionDenied"))
    if ns.startswith("root\\sms") and ctx.engine.settings.host.provider_access_denied:
        # WBEM_E_ACCESS_DENIED: the account has no rights on the SMS Provider's namespace.
        raise PSError(_cim_error(ctx, "Access denied ", "0x80041003", "PermissionDenied"))
    if ns == "root\\sms" and cls.lower() == "sms_providerlocation":
        out = []
        local = ctx.engine.local_site
        for s in ctx.state.sites():
            if s.provider and s.code.upper() == local.upper():
                machine = site_provider(ctx.rs, s)
                out.append(
                    PSObj(
                        [
                            "Microsoft.Management.Infrastructure.CimInstance#root/sms/"
                            "SMS_ProviderLocation",
                            "Microsoft.Management.Infrastructure.CimInstance",
                            "System.Object",
                        ],
                        {
                            "Machine": machine,
                            "NamespacePath": f"\\\\{machine}\\root\\sms\\site_{s.code}",
                            "ProviderForLocalSite": True,
                            "SiteCode": s.code,
                            "PSComputerName": None,
                        },
                    )
                )
        return out
    m = re.match(r"^root\\sms\\site_(\w+)$", ns)
    if m and ctx.state.site(m.group(1)) is not None:
        if cls.lower() == "sms_site":
            return [site_obj(s, cim=True) for s in ctx.state.sites()]
        raise PSError(_cim_error(ctx, "Invalid class ", "0x80041010", "MetadataError"))
    if ns.startswith("root\\sms"):
        raise PSError(_cim_error(ctx, "Invalid namespace ", "0x8004100e", "MetadataError"))
    raise NotSupportedByEmulator(f"Get-CimInstance in namespace '{ns}'")


def _cim_error(ctx: CallContext, message: str, hresult: str, category: str) -> ErrorRecord:
    return ctx.error(
        message,
        f"HRESULT {hresult}",
        category=category,
        exception="Microsoft.Management.Infrastructure.CimException",
    )


def _get_execution_policy(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    return ctx.engine.settings.host.execution_policy


# ---- content --------------------------------------------------------------------------------


def _get_content(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    out: list[str] = []
    for path in a["Path"]:
        try:
            text = _read_file(ctx, path)
        except PSError as e:
            ctx.write_error(e.record)
            continue
        if a.get("Raw"):
            out.append(text)
            continue
        lines = text.splitlines()
        if a.get("Tail") is not None:
            lines = lines[-a["Tail"] :] if a["Tail"] > 0 else []
        if a.get("TotalCount") is not None and a["TotalCount"] >= 0:
            lines = lines[: a["TotalCount"]]
        out += lines
    return out


def _read_file(ctx: CallContext, path: str) -> str:
    """The text at `path`, through the provider the path goes to (paths.py)."""
    pp = paths.resolve_or_error(ctx, path)
    if pp.provider == paths.CMSITE:
        raise PSError(_foreign_path(ctx, path))
    if pp.provider != paths.FILESYSTEM:
        raise NotSupportedByEmulator(f"Get-Content from the {pp.provider} provider")
    found = paths.fs_lookup(ctx.rs, pp.path)
    if found.denied and ctx.engine.settings.host.second_hop_error == "not_found":
        raise paths.path_not_found(ctx, pp.path)
    if found.denied or found.folder:
        # Get-Content's error for a file it may not open, and for a folder (PowerShell's own
        # test: `Get-Content .` gives GetContentReaderUnauthorizedAccessError).
        raise PSError(
            ctx.error(
                f"Access to the path '{pp.path}' is denied.",
                "GetContentReaderUnauthorizedAccessError",
                category="PermissionDenied",
                exception="System.UnauthorizedAccessException",
                target=pp.path,
            )
        )
    if found.text is None:
        raise paths.path_not_found(ctx, pp.path)
    return found.text


# ---- streams --------------------------------------------------------------------------------


def _write_output(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    v = a.get("InputObject")
    if v is None and items is not None:
        return list(items)
    if a.get("NoEnumerate"):
        return [v]
    return conv.enumerate_value(v) if v is not None else []


def _write_warning(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    msg = a.get("Message")
    ctx.warn(conv.to_str(msg if msg is not None else (items or [""])[0]))


def _write_verbose(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    ctx.write_verbose(conv.to_str(a.get("Message")))


def _write_debug(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    if a.get("Debug") or ctx.rs.preference("DebugPreference") == "continue":
        ctx.rs.current.debug.append(conv.to_str(a.get("Message")))


def _write_information(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    ctx.rs.current.information.append(a.get("MessageData"))


def _write_host(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("Object")
    ctx.rs.current.information.append(conv.to_str(obj) if obj is not None else "")


def _write_error(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    msg = a.get("Message")
    if msg is None and items:
        msg = items[0]
    if isinstance(msg, ErrorRecord):
        ctx.write_error(msg)
        return None
    rec = record(
        conv.to_str(msg),
        conv.to_str(a["ErrorId"])
        if a.get("ErrorId")
        else "Microsoft.PowerShell.Commands.WriteErrorException",
        category=conv.to_str(a.get("Category") or "NotSpecified"),
        exception="Microsoft.PowerShell.Commands.WriteErrorException",
        target=a.get("TargetObject"),
    )
    ctx.write_error(rec)
    return None


# ---- pipeline helpers -----------------------------------------------------------------------


_WHERE_OPS = (
    "EQ",
    "NE",
    "GT",
    "GE",
    "LT",
    "LE",
    "Like",
    "NotLike",
    "Match",
    "NotMatch",
    "Contains",
    "NotContains",
    "In",
    "NotIn",
    "CEQ",
    "CNE",
)


def _where(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    f = a.get("FilterScript")
    ev = ctx.evaluator()
    if isinstance(f, ScriptBlock):
        try:
            return [obj] if conv.truthy(ev.invoke_block(f, obj)) else []
        except LoopFlow as flow:
            flow.value = []  # what the filter wrote was its verdict, never output
            raise

    if f is None:
        raise NotSupportedByEmulator("Where-Object without a filter")
    val = get_member(obj, conv.to_str(f))
    ops = [o for o in _WHERE_OPS if a.get(o)]
    if not ops:
        return [obj] if conv.truthy(val) else []
    return [obj] if compare_op("-" + ops[0].lower(), val, a.get("Value"), ev) is True else []


def _foreach(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    obj = a.get("InputObject")
    proc = a.get("Process")
    ev = ctx.evaluator()
    if isinstance(proc, list) and len(proc) == 1:
        proc = proc[0]
    if isinstance(proc, ScriptBlock):
        return ev.invoke_block(proc, obj)
    if isinstance(proc, str):
        return conv.enumerate_value(get_member(obj, proc))
    raise NotSupportedByEmulator("ForEach-Object without a script block or member name")


def _select(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:

    objs = list(items or [])
    if a.get("InputObject") is not None and items is None:
        objs = [a["InputObject"]]
    if a.get("Skip"):
        objs = objs[a["Skip"] :]
    if a.get("First") is not None:
        objs = objs[: a["First"]]
    if a.get("Last") is not None:
        objs = objs[-a["Last"] :] if a["Last"] else []
    props = a.get("Property")
    ev = ctx.evaluator()
    out: list[Any] = []
    for item in objs:
        o = item
        if props:
            d: dict[str, Any] = {}
            for p in props:
                if isinstance(p, dict):
                    name = next(
                        (
                            conv.to_str(v)
                            for k, v in p.items()
                            if str(k).lower() in ("name", "n", "label", "l")
                        ),
                        "",
                    )
                    expr = next(
                        (v for k, v in p.items() if str(k).lower() in ("expression", "e")), None
                    )
                    d[name] = (
                        ev.invoke_block(expr, o)
                        if isinstance(expr, ScriptBlock)
                        else (get_member(o, conv.to_str(expr)))
                    )
                    if isinstance(expr, ScriptBlock):
                        d[name] = conv.collapse(d[name])
                elif conv.has_wildcard(conv.to_str(p)):
                    for k, v in conv.iter_props(o):
                        if conv.like(k, p):
                            d[k] = v
                else:
                    d[conv.to_str(p)] = get_member(o, conv.to_str(p))
            o = conv.custom(d)
        if a.get("ExpandProperty"):
            v = get_member(o, a["ExpandProperty"])
            if v is None:
                ctx.write_error(
                    ctx.error(
                        f'Property "{a["ExpandProperty"]}" cannot be found.',
                        "ExpandPropertyNotFound",
                        category="InvalidArgument",
                        exception="System.Management.Automation.PSArgumentException",
                    )
                )
                continue
            out += conv.enumerate_value(v)
        else:
            out.append(o)
    if a.get("Unique"):
        seen: list[Any] = []
        for o in out:
            if not any(conv.equals(o, s) for s in seen):
                seen.append(o)
        out = seen
    return out


def _sort(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:

    objs = list(items or [])
    props = a.get("Property") or []

    def key(o: Any) -> list[Any]:
        return [get_member(o, conv.to_str(p)) for p in props] if props else [o]

    def cmp(x: Any, y: Any) -> int:
        for vx, vy in zip(key(x), key(y), strict=True):
            try:
                c = conv.compare(vx, vy)
            except conv.ConversionError:
                c = conv.compare(conv.to_str(vx), conv.to_str(vy))
            if c:
                return c
        return 0

    objs.sort(key=cmp_to_key(cmp), reverse=bool(a.get("Descending")))
    return objs


def _to_json(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    v = a.get("InputObject") if items is None else conv.collapse(list(items))
    return conv.to_json(v, a.get("Depth") or 2, bool(a.get("Compress")))


def _from_json(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    """Windows PowerShell 5.1 writes a JSON array as ONE object (PowerShell 6+ enumerates it:
    PowerShell/PowerShell#3424)."""
    text = "\n".join(conv.to_str(x) for x in items) if items is not None else a["InputObject"]
    try:
        if not text.strip():
            return []
        value = conv.from_json(text)
        return [conv.WrappedArray(value) if isinstance(value, list) else value]
    except ValueError as e:
        raise PSError(
            ctx.error(
                f"Invalid JSON primitive: {e}.",
                "System.ArgumentException",
                category="NotSpecified",
                exception="System.ArgumentException",
            )
        ) from None


def _to_secure(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    s = a["String"]
    if not a.get("AsPlainText"):
        raise NotSupportedByEmulator("ConvertTo-SecureString without -AsPlainText")
    if not a.get("Force"):
        raise PSError(
            ctx.error(
                "The system cannot protect plain text input. To suppress this warning and "
                "convert the plain text to a SecureString, reissue the command specifying the "
                "Force parameter. For more information ,type: get-help ConvertTo-SecureString.",
                "ImportSecureString_InvalidArgument",
                category="InvalidArgument",
                exception="System.ArgumentException",
            )
        )
    return SecureValue(s)


def format_table(objs: list[Any]) -> list[str]:
    """Out-String-ish rendering: scalars as text; objects as list (Format-List) blocks."""
    lines: list[str] = []
    for o in objs:
        if isinstance(o, PSObj) and o.properties and (o.string is None or o.live):
            width = max(len(k) for k in o.properties)
            lines.append("")
            for k, v in o.properties.items():
                if isinstance(v, list):
                    shown = "{" + ", ".join(conv.to_str(x) for x in v) + "}"
                else:
                    shown = conv.to_str(v)
                lines.append(f"{k.ljust(width)} : {shown}")
            lines.append("")
        elif isinstance(o, dict):
            width = max([4, *(len(str(k)) for k in o)])
            lines.append("")
            lines.append(f"{'Name'.ljust(width)} Value")
            lines.append(f"{'----'.ljust(width)} -----")
            lines += [f"{str(k).ljust(width)} {conv.to_str(v)}" for k, v in o.items()]
            lines.append("")
        elif isinstance(o, ErrorRecord):
            lines.append(o.message)
        else:
            lines.append(conv.to_str(o))
    return lines


def _out_string(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    objs = list(items) if items is not None else conv.enumerate_value(a.get("InputObject"))
    lines = format_table(objs)
    if a.get("Stream"):
        return lines
    return "\n".join(lines) + "\n" if lines else ""


def _out_null(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    return None


def _iex(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    text = a.get("Command")
    rs = ctx.rs

    root, src = parse(conv.to_str(text))
    err = parse_error(root, src)
    if err is not None:
        err.fully_qualified_error_id = "ParseException," + _cls("Invoke-Expression")
        raise PSError(err)
    ev = Evaluator(rs, src)
    if any(c.type == "param_block" for c in root.named_children):
        raise NotSupportedByEmulator("A param() block inside Invoke-Expression")
    if ctx.ev is not None:
        ev.try_depth = ctx.ev.try_depth
    body = next((c for c in root.named_children if c.type == "statement_list"), None)
    return ev.run_block(body)


def _split_path(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    p = a["Path"].rstrip("\\")
    if a.get("Leaf"):
        return ntpath.basename(p)
    return ntpath.dirname(p)


def _join_path(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    return ntpath.join(a["Path"], a["ChildPath"])


def _start_sleep(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    secs = (a.get("Seconds") or 0) + (a.get("Milliseconds") or 0) / 1000
    if secs:
        ctx.engine.sleep(secs)


def _new_object(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    t = conv.to_str(a["TypeName"]).lower()
    if dotnet_threading.constructs(t):
        return dotnet_threading.construct(ctx.rs, t, a.get("ArgumentList") or [])
    if t not in ("psobject", "pscustomobject", "system.management.automation.psobject"):
        raise NotSupportedByEmulator(f"New-Object {a['TypeName']}")
    return conv.custom(a.get("Property") or {})


def _get_command(ctx: CallContext, a: dict[str, Any], items: Any) -> Any:
    out = []
    for n in a["Name"]:
        cmd = ctx.rs.resolve(n)
        if cmd is None:
            ctx.write_error(
                ctx.error(
                    f"The term '{n}' is not recognized as the name of a cmdlet, function, script "
                    "file, or operable program. Check the spelling of the name, or if a path was "
                    "included, verify that the path is correct and try again.",
                    "CommandNotFoundException",
                    category="ObjectNotFound",
                    exception="System.Management.Automation.CommandNotFoundException",
                    target=n,
                )
            )
            continue
        src = "ConfigurationManager" if cmd.configmgr else "Microsoft.PowerShell"
        out.append(
            PSObj(
                ["System.Management.Automation.CmdletInfo", "System.Object"],
                {"Name": cmd.name, "CommandType": "Cmdlet", "Source": src},
                string=cmd.name,
            )
        )
    return out


def commands() -> list[CommandDef]:
    """The built-in command table."""
    io = ("InputObject",)
    pipe_in = P("InputObject", "object", pipeline=True)
    defs: list[CommandDef] = [
        CommandDef(
            "Import-Module",
            [
                P("Name", "string[]", mandatory=True, position=0),
                P("Global", "switch"),
                P("Force", "switch"),
                P("PassThru", "switch"),
                P("Scope", "string"),
                P("DisableNameChecking", "switch"),
            ],
            _cls("Import-Module"),
            _import_module,
        ),
        CommandDef(
            "Get-Module",
            [P("Name", "string[]", position=0), P("ListAvailable", "switch"), P("All", "switch")],
            _cls("Get-Module"),
            _get_module,
        ),
        CommandDef(
            "Set-Location",
            [
                P("Path", "string", position=0, aliases=()),
                P("LiteralPath", "string", aliases=("PSPath",)),
                P("PassThru", "switch"),
            ],
            _cls("Set-Location"),
            _set_location,
        ),
        CommandDef("Get-Location", [], _cls("Get-Location"), _get_location),
        CommandDef(
            "Push-Location",
            [P("Path", "string", position=0)],
            _cls("Push-Location"),
            _push_location,
        ),
        CommandDef("Pop-Location", [], _cls("Pop-Location"), _pop_location),
        CommandDef(
            "Get-PSDrive",
            [P("Name", "string[]", position=0), P("PSProvider", "string[]"), P("Scope", "string")],
            _cls("Get-PSDrive"),
            _get_psdrive,
        ),
        CommandDef(
            "New-PSDrive",
            [
                P("Name", "string", mandatory=True, position=0),
                P("PSProvider", "string", mandatory=True, position=1),
                P("Root", "string", mandatory=True, position=2),
                P("Description", "string"),
                P("Scope", "string"),
                P("Persist", "switch"),
            ],
            _cls("New-PSDrive"),
            _new_psdrive,
            should_process=True,
        ),
        CommandDef(
            "Remove-PSDrive",
            [P("Name", "string[]", mandatory=True, position=0), P("Force", "switch")],
            _cls("Remove-PSDrive"),
            _remove_psdrive,
            should_process=True,
        ),
        CommandDef(
            "Test-Path",
            [
                P("Path", "string[]", mandatory=True, position=0),
                P("PathType", "string"),
                P("IsValid", "switch"),
            ],
            _cls("Test-Path"),
            _test_path,
        ),
        CommandDef(
            "Get-CimInstance",
            [
                P("ClassName", "string", position=0),
                P("Namespace", "string"),
                P("Filter", "string"),
                P("Query", "string"),
                P("ComputerName", "string[]", aliases=("CN",)),
            ],
            CIM,
            _cim,
        ),
        CommandDef(
            "Get-WmiObject",
            [
                P("Class", "string", position=0),
                P("Namespace", "string", aliases=("NS",)),
                P("Filter", "string"),
                P("Query", "string"),
                P("ComputerName", "string[]", aliases=("CN",)),
            ],
            _cls("Get-WmiObject"),
            _cim,
        ),
        CommandDef(
            "Get-ExecutionPolicy",
            [P("Scope", "string"), P("List", "switch")],
            _cls("Get-ExecutionPolicy"),
            _get_execution_policy,
        ),
        CommandDef(
            "Get-Content",
            [
                P("Path", "string[]", mandatory=True, position=0),
                P("Tail", "int"),
                P("TotalCount", "long", aliases=("First", "Head")),
                P("Raw", "switch"),
                P("Encoding", "string"),
            ],
            _cls("Get-Content"),
            _get_content,
        ),
        CommandDef(
            "Write-Output",
            [P("InputObject", "object", position=0, pipeline=True), P("NoEnumerate", "switch")],
            _cls("Write-Output"),
            _write_output,
        ),
        CommandDef(
            "Write-Warning",
            [P("Message", "string", position=0, pipeline=True)],
            _cls("Write-Warning"),
            _write_warning,
        ),
        CommandDef(
            "Write-Verbose",
            [P("Message", "string", position=0, pipeline=True)],
            _cls("Write-Verbose"),
            _write_verbose,
        ),
        CommandDef(
            "Write-Debug",
            [P("Message", "string", position=0, pipeline=True)],
            _cls("Write-Debug"),
            _write_debug,
        ),
        CommandDef(
            "Write-Information",
            [
                P("MessageData", "object", position=0, aliases=("Msg", "Message")),
                P("Tags", "string[]", position=1),
            ],
            _cls("Write-Information"),
            _write_information,
        ),
        CommandDef(
            "Write-Host",
            [
                P("Object", "object", position=0, pipeline=True),
                P("NoNewline", "switch"),
                P("ForegroundColor", "string"),
                P("BackgroundColor", "string"),
            ],
            _cls("Write-Host"),
            _write_host,
        ),
        CommandDef(
            "Write-Error",
            [
                P(
                    "Message",
                    "object",
                    position=0,
                    pipeline=True,
                    aliases=("Msg", "ErrorRecord", "Exception"),
                ),
                P("ErrorId", "string"),
                P("Category", "string"),
                P("TargetObject", "object"),
            ],
            _cls("Write-Error"),
            _write_error,
        ),
        CommandDef(
            "Where-Object",
            [
                P("FilterScript", "object", position=0),
                P("Value", "object", position=1),
                *(P(o, "switch") for o in _WHERE_OPS),
                pipe_in,
            ],
            _cls("Where-Object"),
            _where,
        ),
        CommandDef(
            "ForEach-Object",
            [P("Process", "object", position=0, aliases=("MemberName",)), pipe_in],
            _cls("ForEach-Object"),
            _foreach,
        ),
        CommandDef(
            "Select-Object",
            [
                P("Property", "object[]", position=0),
                P("ExpandProperty", "string"),
                P("First", "int"),
                P("Last", "int"),
                P("Skip", "int"),
                P("Unique", "switch"),
                pipe_in,
            ],
            _cls("Select-Object"),
            _select,
            collects_input=True,
        ),
        CommandDef(
            "Sort-Object",
            [P("Property", "object[]", position=0), P("Descending", "switch"), pipe_in],
            _cls("Sort-Object"),
            _sort,
            collects_input=True,
        ),
        CommandDef(
            "ConvertTo-Json",
            [
                P("InputObject", "object", position=0, pipeline=True),
                P("Depth", "int", validate_range=(1, 100)),
                P("Compress", "switch"),
            ],
            _cls("ConvertTo-Json"),
            _to_json,
            collects_input=True,
        ),
        CommandDef(
            "ConvertFrom-Json",
            [P("InputObject", "string", mandatory=True, position=0, pipeline=True)],
            _cls("ConvertFrom-Json"),
            _from_json,
            collects_input=True,
        ),
        CommandDef(
            "ConvertTo-SecureString",
            [
                P("String", "string", mandatory=True, position=0, pipeline=True, secret=True),
                P("AsPlainText", "switch"),
                P("Force", "switch"),
            ],
            _cls("ConvertTo-SecureString"),
            _to_secure,
        ),
        CommandDef(
            "Out-String",
            [
                P("InputObject", "object", pipeline=True),
                P("Stream", "switch"),
                P("Width", "int"),
            ],
            _cls("Out-String"),
            _out_string,
            collects_input=True,
        ),
        CommandDef("Out-Null", [pipe_in], _cls("Out-Null"), _out_null, collects_input=True),
        CommandDef(
            "Invoke-Expression",
            [P("Command", "string", mandatory=True, position=0, pipeline=True)],
            _cls("Invoke-Expression"),
            _iex,
        ),
        CommandDef(
            "Split-Path",
            [
                P("Path", "string", mandatory=True, position=0, pipeline=True),
                P("Parent", "switch"),
                P("Leaf", "switch"),
            ],
            _cls("Split-Path"),
            _split_path,
        ),
        CommandDef(
            "Join-Path",
            [
                P("Path", "string", mandatory=True, position=0),
                P("ChildPath", "string", mandatory=True, position=1),
            ],
            _cls("Join-Path"),
            _join_path,
        ),
        CommandDef(
            "Start-Sleep",
            [P("Seconds", "int", position=0), P("Milliseconds", "int")],
            _cls("Start-Sleep"),
            _start_sleep,
        ),
        CommandDef(
            "New-Object",
            [
                P("TypeName", "string", mandatory=True, position=0),
                P("ArgumentList", "object[]", position=1),
                P("Property", "hashtable"),
            ],
            _cls("New-Object"),
            _new_object,
        ),
        CommandDef(
            "Get-Command",
            [P("Name", "string[]", mandatory=True, position=0)],
            _cls("Get-Command"),
            _get_command,
        ),
    ]
    del io
    return defs
