"""The endpoint's WinRM shell quotas, as far as it lets us read them (for `cmproxy doctor`).

A WinRM endpoint refuses a user's shells beyond its quotas: WinRS `MaxShellsPerUser`
(`winrm get winrm/config/winrs`, 30 by default) and the session configuration's own
(`winrm get winrm/config/plugin?Name=microsoft.powershell`: MaxShellsPerUser 25,
IdleTimeoutms 7,200,000). Both are read with a WSMan Get; reading the configuration needs
administrative rights on a real server, so a value the endpoint does not give is None, never
a guess. `shells_held_here` counts the shells this machine's cmproxy processes of the account
hold now (cmproxy.slots), beside the cap they share (`account_max_shells`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from cmproxy.connection import ConnectionInfo
from cmproxy.slots import ShellSlots

__all__ = ["EndpointQuotas", "read_quotas"]

RESOURCE_WINRS = "http://schemas.microsoft.com/wbem/wsman/1/config/winrs"
RESOURCE_PLUGIN = "http://schemas.microsoft.com/wbem/wsman/1/config/plugin"
NS_PLUGIN = "http://schemas.microsoft.com/wbem/wsman/1/config/PluginConfiguration"


@attrs.frozen
class EndpointQuotas:
    """What the endpoint advertises (None: not readable) and what this machine holds."""

    endpoint: str
    #: winrm/config/winrs values by name (MaxShellsPerUser, IdleTimeout, …), or None.
    winrs: Mapping[str, int] | None
    #: The session configuration's Quotas by name (MaxShellsPerUser, IdleTimeoutms, …), or None.
    plugin: Mapping[str, int] | None
    #: The cap cmproxy's processes of this account share on this endpoint (0: none).
    account_max_shells: int
    #: Shells this machine's cmproxy processes of the account hold now (0 without a cap).
    shells_held_here: int

    @property
    def max_shells_per_user(self) -> int | None:
        """The lowest MaxShellsPerUser the endpoint advertises for PowerShell sessions (both
        apply to them), or None when neither is readable. 0 (no limit) is not a limit."""
        limits = [
            source.get("MaxShellsPerUser", 0) for source in (self.winrs, self.plugin) if source
        ]
        limits = [n for n in limits if n > 0]
        return min(limits) if limits else None

    @property
    def cap_fits(self) -> bool | None:
        """Is account_max_shells below the endpoint's MaxShellsPerUser? None if unknown."""
        limit = self.max_shells_per_user
        if limit is None or self.account_max_shells <= 0:
            return None
        return self.account_max_shells < limit


def _numbers(items: Mapping[str, str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, text in items.items():
        try:
            found[name] = int(text)
        except (TypeError, ValueError):
            continue  # AllowRemoteShellAccess and the like
    return found


def read_quotas(info: ConnectionInfo) -> EndpointQuotas:
    """Read the endpoint's shell quotas with two WSMan Gets (PSRP's client, `info`'s
    connection settings). A Get the endpoint refuses (a WSMan fault, e.g. access denied)
    leaves that part None; an unreachable endpoint raises the usual ConnectionError."""
    from pypsrp.exceptions import WSManFaultError  # noqa: PLC0415 - lazy: pypsrp
    from pypsrp.wsman import SelectorSet, WSMan  # noqa: PLC0415

    from cmproxy.transports.base import translate_exception  # noqa: PLC0415

    def get(wsman: WSMan, uri: str, name: str | None = None) -> Any:
        selectors = None
        if name is not None:
            selectors = SelectorSet()
            selectors.add_option("Name", name)
        try:
            return wsman.get(uri, selector_set=selectors)
        except WSManFaultError:
            return None

    try:
        with WSMan(**info.to_pypsrp_kwargs()) as wsman:
            winrs_xml = get(wsman, RESOURCE_WINRS)
            plugin_xml = get(wsman, RESOURCE_PLUGIN, info.configuration_name)
    except Exception as exc:
        raise translate_exception(exc, info, stage="reading the WinRM quotas") from None
    winrs = None
    if winrs_xml is not None:
        node = winrs_xml.find(f".//{{{RESOURCE_WINRS}}}Winrs")
        if node is not None:
            winrs = _numbers(
                {child.tag.rsplit("}", 1)[-1]: (child.text or "").strip() for child in node}
            )
    plugin = None
    if plugin_xml is not None:
        node = plugin_xml.find(f".//{{{NS_PLUGIN}}}Quotas")
        if node is not None:
            plugin = _numbers(dict(node.attrib))
    slots = ShellSlots.for_connection(info)
    return EndpointQuotas(
        endpoint=info.endpoint,
        winrs=winrs,
        plugin=plugin,
        account_max_shells=info.account_max_shells,
        shells_held_here=slots.in_use() if slots is not None else 0,
    )
