"""Site system roles, each stating how it uses a proxy.

One frozen class per role that reaches the Internet (proxy-rules.md R4–R9,
configmgr-cmdlets.md §4.2). Class-level `ClassVar`s carry the facts that never vary per
instance: the `Get-CMSiteRole` role name, what the role connects to, where its effective proxy
comes from, which account connects (R3) and the rule that says so. Instance fields carry what a
site reads back (the SUP's two flags, a cloud DP's managing site server).
"""

from __future__ import annotations

import enum
from typing import ClassVar

import attrs

# `Role` and `ProxySource` live in the model (a server holds roles; the model imports nothing
# of this catalog); they are re-exported here, where they have always been imported from.
from cmproxy.model import ProxySettings, ProxySource, Role

__all__ = [
    "ROLE_CLASSES",
    "AssetIntelligenceSyncPoint",
    "CMGConnectionPoint",
    "CloudDistributionPoint",
    "ConnectedCacheDistributionPoint",
    "DistributionPoint",
    "ExchangeServerConnector",
    "ManagementPoint",
    "OtherRole",
    "ProxySource",
    "Role",
    "ServiceConnectionPoint",
    "SiteServer",
    "SoftwareUpdatePoint",
    "SupSyncSource",
    "role_for_name",
]

_SYSTEM = "the System (computer) account of the server hosting the role, or the site system "
_SYSTEM += "proxy server account when one is set on that server (R3)"


@attrs.frozen
class AssetIntelligenceSyncPoint(Role):
    """Downloads the Asset Intelligence catalog through its server's proxy (R4)."""

    ROLE_NAME: ClassVar[str] = "AI Update Service Point"
    DISPLAY_NAME: ClassVar[str] = "Asset Intelligence synchronization point"
    CONNECTS_TO: ClassVar[str] = "Microsoft (Asset Intelligence catalog)"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.SERVER
    CONNECTING_ACCOUNT: ClassVar[str] = _SYSTEM
    RULE: ClassVar[str] = "R4"
    DEPRECATED: ClassVar[bool] = True
    NOTES: ClassVar[tuple[str, ...]] = (
        "Deprecated since November 2021; its cmdlets are deprecated from version 2203.",
    )


@attrs.frozen
class CloudDistributionPoint(Role):
    """A distribution point in Azure. Its proxy lives on the primary site server (R5)."""

    ROLE_NAME: ClassVar[str] = "SMS Distribution Point"
    DISPLAY_NAME: ClassVar[str] = "cloud distribution point"
    CONNECTS_TO: ClassVar[str] = "Microsoft Azure (configure, monitor, distribute content)"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.MANAGING_SITE_SERVER
    CONNECTING_ACCOUNT: ClassVar[str] = (
        "the System account of the primary site server that manages it, which also uses that "
        "computer's default web browser settings (R3, R5)"
    )
    RULE: ClassVar[str] = "R5"
    DEPRECATED: ClassVar[bool] = True
    NOTES: ClassVar[tuple[str, ...]] = ("No new cloud distribution points from version 2107.",)

    #: The site server of the primary site that manages this cloud DP, when known.
    managing_site_server: str | None = None

    def refusal(self, proxy: ProxySettings) -> str | None:
        if not proxy.enabled:
            return None
        return (
            "a proxy cannot be configured on a cloud distribution point in Azure; set it on "
            "the primary site server that manages it"
        )


@attrs.frozen
class CMGConnectionPoint(Role):
    """Talks to the cloud management gateway in Azure through its server's proxy."""

    ROLE_NAME: ClassVar[str] = "SMS Cloud Proxy Connector"
    DISPLAY_NAME: ClassVar[str] = "CMG connection point"
    CONNECTS_TO: ClassVar[str] = "the cloud management gateway service in Azure"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.SERVER
    CONNECTING_ACCOUNT: ClassVar[str] = _SYSTEM
    RULE: ClassVar[str] = "R1"
    NOTES: ClassVar[tuple[str, ...]] = (
        "Listed among roles that use the proxy; the docs give no further proxy rule.",
    )


@attrs.frozen
class ServiceConnectionPoint(Role):
    """The "cloud connection point" of R6 and the Intune connector of R8."""

    ROLE_NAME: ClassVar[str] = "SMS Dmp Connector"
    DISPLAY_NAME: ClassVar[str] = "service connection point"
    CONNECTS_TO: ClassVar[str] = (
        "the Configuration Manager cloud service (version updates) and Microsoft Intune; "
        "Microsoft Entra user/group discovery and collection sync also use this server's proxy"
    )
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.SERVER
    CONNECTING_ACCOUNT: ClassVar[str] = _SYSTEM
    RULE: ClassVar[str] = "R6, R8"


@attrs.frozen
class ExchangeServerConnector(Role):
    """Reaches Exchange Server (also Exchange Online) through its server's proxy (R7)."""

    # [UNCONFIRMED] role name: the reference lists no Get-CMSiteRole name for the connector.
    ROLE_NAME: ClassVar[str] = "SMS Exchange Server Connector"
    DISPLAY_NAME: ClassVar[str] = "Exchange Server connector"
    CONNECTS_TO: ClassVar[str] = "an Exchange Server (on premises or online)"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.SERVER
    CONNECTING_ACCOUNT: ClassVar[str] = _SYSTEM
    RULE: ClassVar[str] = "R7"
    NOTES: ClassVar[tuple[str, ...]] = (
        "Role name 'SMS Exchange Server Connector' is [UNCONFIRMED]; see docs/rules.md.",
    )


class SupSyncSource(enum.Enum):
    """Where the SUP component synchronises from (SMS_WSUS_CONFIGURATION_MANAGER)."""

    MICROSOFT_UPDATE = "microsoft update"
    UPSTREAM = "upstream server"
    NONE = "do not synchronize"


@attrs.frozen
class SoftwareUpdatePoint(Role):
    """Uses the server proxy only for the options switched on (R9–R11)."""

    SETTINGS: ClassVar[tuple[str, ...]] = ("sup",)
    ROLE_NAME: ClassVar[str] = "SMS Software Update Point"
    DISPLAY_NAME: ClassVar[str] = "software update point"
    CONNECTS_TO: ClassVar[str] = "Microsoft Update (update metadata sync; ADR content downloads)"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.OPT_IN
    CONNECTING_ACCOUNT: ClassVar[str] = (
        _SYSTEM + "; ADR downloads run as the System account of the site server where the "
        "rule was created (R12)"
    )
    RULE: ClassVar[str] = "R9"

    #: "Use a proxy server when synchronizing software updates" (`-UseProxy`).
    use_proxy: bool = False
    #: "Use a proxy server when downloading content by using ADRs"
    #: (`-UseProxyForAutoDeploymentRule`); has no effect at a secondary site (R9).
    use_proxy_for_adr: bool = False
    #: The site's sync source; a SUP syncing from an upstream server does not use the proxy
    #: for sync.
    sync_source: SupSyncSource = SupSyncSource.MICROSOFT_UPDATE
    upstream_server: str | None = None

    @property
    def any_flag(self) -> bool:
        return self.use_proxy or self.use_proxy_for_adr


@attrs.frozen
class DistributionPoint(Role):
    """An on-premises distribution point without Connected Cache: no Internet access."""

    ROLE_NAME: ClassVar[str] = "SMS Distribution Point"
    DISPLAY_NAME: ClassVar[str] = "distribution point"


@attrs.frozen
class ConnectedCacheDistributionPoint(Role):
    """A DP with Microsoft Connected Cache: an unauthenticated proxy only."""

    ROLE_NAME: ClassVar[str] = "SMS Distribution Point"
    DISPLAY_NAME: ClassVar[str] = "distribution point with Connected Cache"
    CONNECTS_TO: ClassVar[str] = "Microsoft content delivery networks (Connected Cache)"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.SERVER
    CONNECTING_ACCOUNT: ClassVar[str] = "the System account; no proxy credentials are supported"
    RULE: ClassVar[str] = "R1"
    NOTES: ClassVar[tuple[str, ...]] = (
        "Proxy support for Connected Cache needs version 2603 or hotfix KB33247081; earlier "
        "builds need direct Internet access or a proxy that supports relative URIs.",
    )

    def refusal(self, proxy: ProxySettings) -> str | None:
        if proxy.enabled and proxy.account is not None:
            return (
                "a distribution point with Connected Cache supports only an unauthenticated "
                "proxy; remove the account or move Connected Cache to another server"
            )
        return None


@attrs.frozen
class ManagementPoint(Role):
    """From 2603 the MP validates Entra tokens and ignores the site system proxy."""

    ROLE_NAME: ClassVar[str] = "SMS Management Point"
    DISPLAY_NAME: ClassVar[str] = "management point"
    CONNECTS_TO: ClassVar[str] = "Microsoft Entra ID (token validation, version 2603 and later)"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.NOT_SITE_SYSTEM_PROXY
    CONNECTING_ACCOUNT: ClassVar[str] = "Local System, through the .NET HTTP stack"
    NOTES: ClassVar[tuple[str, ...]] = (
        "Version 2603 ignores the site system proxy and the WinHTTP proxy for token "
        "validation: set a WinINET proxy for SYSTEM under HKEY_USERS\\S-1-5-18\\Software\\"
        "Microsoft\\Windows\\CurrentVersion\\Internet Settings (ProxyEnable, ProxyServer, "
        "ProxyOverride) and restart SMS_EXECUTIVE. Failures show as MISE12034.",
    )


@attrs.frozen
class SiteServer(Role):
    """The site server. It connects for cloud DPs (R5) and ADR downloads (R12)."""

    ROLE_NAME: ClassVar[str] = "SMS Site Server"
    DISPLAY_NAME: ClassVar[str] = "site server"
    CONNECTS_TO: ClassVar[str] = (
        "Azure for the cloud DPs it manages (R5); Microsoft Update for ADR downloads (R12)"
    )
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.SERVER
    CONNECTING_ACCOUNT: ClassVar[str] = "the site server's System account (R5, R12)"
    RULE: ClassVar[str] = "R5, R12"


@attrs.frozen
class OtherRole(Role):
    """Any role that does not reach the Internet (kept so a server's role list is whole)."""

    role_name: str = ""

    @property
    def name(self) -> str:
        return self.role_name


#: The role classes with proxy semantics, by their fixed role name.
ROLE_CLASSES: tuple[type[Role], ...] = (
    AssetIntelligenceSyncPoint,
    CMGConnectionPoint,
    ServiceConnectionPoint,
    ExchangeServerConnector,
    SoftwareUpdatePoint,
    ManagementPoint,
    SiteServer,
)


def role_for_name(role_name: str) -> Role:
    """The role object for a `Get-CMSiteRole` name with default fields.

    Distribution points need more than a name (cloud? Connected Cache?), so readers build
    `DistributionPoint`, `CloudDistributionPoint` or `ConnectedCacheDistributionPoint` directly.
    """
    for cls in ROLE_CLASSES:
        if cls.ROLE_NAME.lower() == role_name.lower():
            return cls()
    if role_name.lower() == DistributionPoint.ROLE_NAME.lower():
        return DistributionPoint()
    return OtherRole(role_name=role_name)
