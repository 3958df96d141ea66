"""Facts about the emulated console machine: paths, module version, drives."""

from __future__ import annotations

import attrs

ADMIN_UI_PATH = r"C:\Program Files (x86)\Microsoft Endpoint Manager\AdminConsole\bin\i386"
MODULE_PATH = (
    r"C:\Program Files (x86)\Microsoft Endpoint Manager\AdminConsole\bin\ConfigurationManager.psd1"
)
MODULE_VERSION = "5.2309.1112.1000"
BUILTIN_DRIVES = ("Alias", "C", "Cert", "Env", "Function", "HKCU", "HKLM", "Variable", "WSMan")


@attrs.define
class Drive:
    """A PSDrive; `site` is set for CMSite drives."""

    name: str
    provider: str  # "CMSite", "FileSystem" or a built-in provider name
    root: str
    site: str = ""
