"""Locations, drives and the simulated file system of the console machine: Set-Location
and friends, the PSDrive cmdlets (CMSite drives included), Test-Path and Get-Content (site
logs come from the state; see `paths`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from cmproxy.emulator.engine.configmgr import paths
from cmproxy.emulator.engine.configmgr.host import Drive
from cmproxy.emulator.engine.configmgr.module import provider_refused, site_provider
from cmproxy.emulator.engine.configmgr.table import console_command
from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.language.binding import ParamDef
from cmproxy.emulator.engine.language.errors import NotSupportedByEmulator, PSError
from cmproxy.emulator.engine.language.values import ErrorRecord, PSObj

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext


def _drive_not_found(ctx: SiteCallContext, name: str) -> ErrorRecord:
    return paths.drive_not_found(ctx, name).record


@console_command(
    "Set-Location",
    [
        ParamDef("Path", "string", position=0, aliases=()),
        ParamDef("LiteralPath", "string", aliases=("PSPath",)),
        ParamDef("PassThru", "switch"),
    ],
)
def _set_location(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
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


def _foreign_path(ctx: SiteCallContext, path: str) -> ErrorRecord:
    """A path the CMSite provider does not have (HostFacts.cmsite_foreign_path_error)."""
    rec = paths.path_not_found(ctx, path).record
    error_id = ctx.engine.settings.host.cmsite_foreign_path_error
    if error_id != "PathNotFound":
        rec.fully_qualified_error_id = f"{error_id},{ctx.cmd.cls}"
    return rec


@console_command("Get-Location", [])
def _get_location(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    return ctx.rs.location_obj()


@console_command("Push-Location", [ParamDef("Path", "string", position=0)])
def _push_location(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    ctx.rs.location_stack.append(ctx.rs.location)
    if a.get("Path"):
        return _set_location(ctx, a, items)
    return None


@console_command("Pop-Location", [])
def _pop_location(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
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


@console_command(
    "Get-PSDrive",
    [
        ParamDef("Name", "string[]", position=0),
        ParamDef("PSProvider", "string[]"),
        ParamDef("Scope", "string"),
    ],
)
def _get_psdrive(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
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


@console_command(
    "New-PSDrive",
    [
        ParamDef("Name", "string", mandatory=True, position=0),
        ParamDef("PSProvider", "string", mandatory=True, position=1),
        ParamDef("Root", "string", mandatory=True, position=2),
        ParamDef("Description", "string"),
        ParamDef("Scope", "string"),
        ParamDef("Persist", "switch"),
    ],
    should_process=True,
)
def _new_psdrive(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:

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


@console_command(
    "Remove-PSDrive",
    [ParamDef("Name", "string[]", mandatory=True, position=0), ParamDef("Force", "switch")],
    should_process=True,
)
def _remove_psdrive(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
    for n in a["Name"]:
        if n.lower() not in ctx.rs.drives:
            ctx.write_error(_drive_not_found(ctx, n))
            continue
        del ctx.rs.drives[n.lower()]
        if ctx.rs.location[0].lower() == n.lower():
            ctx.rs.location = ("C", ctx.rs.home)
    return None


@console_command(
    "Test-Path",
    [
        ParamDef("Path", "string[]", mandatory=True, position=0),
        ParamDef("PathType", "string"),
        ParamDef("IsValid", "switch"),
    ],
)
def _test_path(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
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


@console_command(
    "Get-Content",
    [
        ParamDef("Path", "string[]", mandatory=True, position=0),
        ParamDef("Tail", "int"),
        ParamDef("TotalCount", "long", aliases=("First", "Head")),
        ParamDef("Raw", "switch"),
        ParamDef("Encoding", "string"),
    ],
)
def _get_content(ctx: SiteCallContext, a: dict[str, Any], items: Any) -> Any:
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


def _read_file(ctx: SiteCallContext, path: str) -> str:
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
