r"""Providers and paths: which provider a path goes to, and the simulated file system.

How Windows PowerShell picks the provider of a path (about_Providers, about_Path_Syntax,
about_Locations; LocationGlobber.GetGlobbedMonadPathsFromMonadPath):

- drive-qualified (`C:\x`, `PS1:\`): the drive's provider;
- provider-qualified (`FileSystem::\\srv\share\x`, `Microsoft.PowerShell.Core\FileSystem::…`):
  that provider; an unknown provider name is `ProviderNotFound`;
- provider-direct (`\\srv\share\x`) and relative paths: the provider of the *current
  location* ("The path is a provider direct path so use the current provider"). From a CMSite
  location a UNC path therefore goes to the CMSite provider, which has no such item: Test-Path
  says False and Get-Content fails (the Idera tip "Watch Out With UNC Paths!" shows the same
  from `HKCU:\`; the fix it gives is the `FileSystem::` prefix).

The file system is simulated: site-server logs from the state (under the `SMS_<SiteCode>` share
and the local `…\Microsoft Configuration Manager\Logs` folder) and a few well-known folders.
A share on another machine is a second hop: refused unless `HostFacts.credentials_delegated`.
"""

from __future__ import annotations

import ntpath
import re
from typing import TYPE_CHECKING

import attrs

from cmproxy.emulator.engine.configmgr.host import ADMIN_UI_PATH, MODULE_PATH
from cmproxy.emulator.engine.language.errors import PSError

if TYPE_CHECKING:
    from cmproxy.emulator.engine.configmgr.context import SiteCallContext, SiteSession


FILESYSTEM = "FileSystem"
CMSITE = "CMSite"

#: Provider names a provider-qualified path may use (module-qualified or not), lower case.
_PROVIDERS = {
    "filesystem": FILESYSTEM,
    "microsoft.powershell.core\\filesystem": FILESYSTEM,
    "cmsite": CMSITE,
    "adminui.ps\\cmsite": CMSITE,
    "registry": "Registry",
    "microsoft.powershell.core\\registry": "Registry",
    "environment": "Environment",
    "microsoft.powershell.core\\environment": "Environment",
    "variable": "Variable",
    "microsoft.powershell.core\\variable": "Variable",
    "alias": "Alias",
    "microsoft.powershell.core\\alias": "Alias",
    "function": "Function",
    "microsoft.powershell.core\\function": "Function",
    "certificate": "Certificate",
    "microsoft.powershell.security\\certificate": "Certificate",
    "wsman": "WSMan",
    "microsoft.wsman.management\\wsman": "WSMan",
}
_QUALIFIED = re.compile(r"^([^:\\/]+(?:\\[^:\\/]+)?)::(.*)$", re.DOTALL)
_DRIVE = re.compile(r"^([A-Za-z0-9_]+):(.*)$", re.DOTALL)
_UNC = re.compile(r"^\\\\([^\\]+)\\([^\\]+)(?:\\(.*))?$", re.DOTALL)
_CM_LOGS = "program files\\microsoft configuration manager\\logs"


@attrs.frozen
class ProviderPath:
    """A path resolved to its provider: `path` is provider-internal (FileSystem: absolute)."""

    provider: str
    path: str


class ProviderNotFound(Exception):  # noqa: N818 - PowerShell's ProviderNotFoundException
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class DriveMissing(Exception):  # noqa: N818 - PowerShell's DriveNotFoundException
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def resolve(rs: SiteSession, path: str) -> ProviderPath:
    """The provider `path` goes to and its provider-internal form (rules in the module doc)."""
    p = path.replace("/", "\\")
    m = _QUALIFIED.match(p)
    if m:
        provider = _PROVIDERS.get(m.group(1).lower())
        if provider is None or (provider == CMSITE and "configurationmanager" not in rs.modules):
            raise ProviderNotFound(m.group(1))
        rest = m.group(2)
        return ProviderPath(provider, fs_full(rs, rest) if provider == FILESYSTEM else rest)
    if p.startswith("\\\\"):
        return _current(rs, p)
    m = _DRIVE.match(p)
    if m:
        drive = rs.drives.get(m.group(1).lower())
        if drive is None:
            raise DriveMissing(m.group(1))
        if drive.provider == FILESYSTEM:
            return ProviderPath(FILESYSTEM, fs_full(rs, p))
        return ProviderPath(drive.provider, m.group(2))
    return _current(rs, p)


def _current(rs: SiteSession, p: str) -> ProviderPath:
    if rs.current_drive() is not None:
        return ProviderPath(CMSITE, p)
    return ProviderPath(FILESYSTEM, fs_full(rs, p))


def fs_full(rs: SiteSession, path: str) -> str:
    """An absolute, normalised file-system path (a relative one against the FS location)."""
    p = path.replace("/", "\\")
    if re.match(r"^[A-Za-z]:$", p):
        p += "\\"
    if not (re.match(r"^[A-Za-z]:\\", p) or p.startswith("\\\\")):
        base = rs.location[1] if rs.current_drive() is None else rs.home
        p = ntpath.join(base, p)
    return ntpath.normpath(p)


# ---- machines and shares --------------------------------------------------------------------


def _short(name: str) -> str:
    return name.split(".", maxsplit=1)[0].lower()


def is_local_machine(rs: SiteSession, machine: str) -> bool:
    """`machine` names the emulated machine itself (short or FQDN, localhost, a dot)."""
    m = machine.lower()
    return m in ("localhost", ".", "127.0.0.1", "::1") or _short(m) == _short(
        rs.engine.local_server
    )


def known_machines(rs: SiteSession) -> set[str]:
    """Short names of the machines the hierarchy knows (site servers, providers, log hosts)."""
    state = rs.engine.state
    names = {_short(s.server) for s in state.sites() if s.server}
    names |= {_short(s.provider) for s in state.sites() if s.provider}
    names |= {_short(server) for server, _ in state.logs()}
    other = rs.engine.settings.host.sms_provider_machine
    if other:
        names.add(_short(other))
    return names


def second_hop_blocked(rs: SiteSession, machine: str) -> bool:
    """Reaching `machine` from this session is a second hop the credentials cannot make."""
    return not is_local_machine(rs, machine) and not rs.engine.settings.host.credentials_delegated


def _share_server_logs(rs: SiteSession, server: str, share: str, rest: str) -> str | None:
    """The log folder path inside a UNC share, if the share is one a site server has."""
    low_share = share.lower()
    if low_share.startswith("sms_"):
        code = low_share[4:]
        site = rs.engine.state.site(code)
        if site is None or not site.server or _short(site.server) != _short(server):
            return None
        return rest
    if low_share == "c$" and rest.lower().startswith(_CM_LOGS):
        return rest[len(_CM_LOGS) - len("logs") :]
    return None


def _find_log(rs: SiteSession, server: str, name: str) -> str | None:
    state = rs.engine.state
    text = state.log(server, name)
    if text is not None:
        return text
    for s, n in state.logs():
        if _short(s) == _short(server) and n.lower() == name.lower():
            return state.log(s, n)
    return None


# ---- the simulated file system ----------------------------------------------------------------


@attrs.frozen
class FsAnswer:
    """What the file system says about a path: a file's text, a folder, nothing, or denied."""

    text: str | None = None
    folder: bool = False
    denied: bool = False

    @property
    def exists(self) -> bool:
        return self.text is not None or self.folder


def fs_lookup(rs: SiteSession, full: str) -> FsAnswer:
    m = _UNC.match(full)
    if m:
        server, share, rest = m.group(1), m.group(2), (m.group(3) or "")
        if _short(server) not in known_machines(rs) and not is_local_machine(rs, server):
            return FsAnswer()
        if second_hop_blocked(rs, server):
            return FsAnswer(denied=True)
        logs = _share_server_logs(rs, server, share, rest)
        return _in_logs(rs, server, logs, share_root=rest == "")
    low = full.lower()
    local_logs = "c:\\" + _CM_LOGS
    if low == local_logs or low.startswith(local_logs + "\\"):
        return _in_logs(rs, rs.engine.local_server, "logs" + full[len(local_logs) :], False)
    console = [ADMIN_UI_PATH, ntpath.dirname(ADMIN_UI_PATH)]
    folders = [
        *(console if rs.engine.console_installed else []),
        rs.home,
        "C:\\",
        rs.home + "\\Documents",
        "C:\\Windows",
        "C:\\Program Files",
        "C:\\Program Files\\Microsoft Configuration Manager",
    ]
    if low in (f.lower() for f in folders):
        return FsAnswer(folder=True)
    if rs.engine.console_installed and low == MODULE_PATH.lower():
        return FsAnswer(text="")
    return FsAnswer()


def _in_logs(rs: SiteSession, server: str, logs: str | None, share_root: bool) -> FsAnswer:
    if logs is None:
        return FsAnswer()
    if share_root or logs.lower() in ("", "logs"):
        return FsAnswer(folder=True)
    head, _, name = logs.partition("\\")
    if head.lower() != "logs" or not name or "\\" in name:
        return FsAnswer()
    text = _find_log(rs, server, name)
    return FsAnswer(text=text) if text is not None else FsAnswer()


# ---- errors -----------------------------------------------------------------------------------


def path_not_found(ctx: SiteCallContext, path: str) -> PSError:
    """ItemNotFoundException from the globber (SessionStateStrings.PathNotFound)."""
    return PSError(
        ctx.error(
            f"Cannot find path '{path}' because it does not exist.",
            "PathNotFound",
            category="ObjectNotFound",
            exception="System.Management.Automation.ItemNotFoundException",
            target=path,
        )
    )


def provider_not_found(ctx: SiteCallContext, name: str) -> PSError:
    return PSError(
        ctx.error(
            f"Cannot find a provider with the name '{name}'.",
            "ProviderNotFound",
            category="ObjectNotFound",
            exception="System.Management.Automation.ProviderNotFoundException",
            target=name,
        )
    )


def drive_not_found(ctx: SiteCallContext, name: str) -> PSError:
    return PSError(
        ctx.error(
            f"Cannot find drive. A drive with the name '{name}' does not exist.",
            "DriveNotFound",
            category="ObjectNotFound",
            exception="System.Management.Automation.DriveNotFoundException",
            target=name,
        )
    )


def resolve_or_error(ctx: SiteCallContext, path: str) -> ProviderPath:
    """`resolve`, with PowerShell's errors for an unknown provider or drive."""
    try:
        return resolve(ctx.rs, path)
    except ProviderNotFound as e:
        raise provider_not_found(ctx, e.name) from None
    except DriveMissing as e:
        raise drive_not_found(ctx, e.name) from None
