"""Each role states its Get-CMSiteRole name, what it connects to, its proxy source and account."""

from __future__ import annotations

import pytest

import cmproxy
from cmproxy import (
    AssetIntelligenceSyncPoint,
    CloudDistributionPoint,
    CMGConnectionPoint,
    ConnectedCacheDistributionPoint,
    ExchangeServerConnector,
    ManagementPoint,
    OtherRole,
    ProxySettings,
    ProxySource,
    Role,
    ServiceConnectionPoint,
    SoftwareUpdatePoint,
)
from cmproxy.roles import role_for_name

INTERNET_ROLES: list[tuple[type[Role], str, ProxySource, str]] = [
    (AssetIntelligenceSyncPoint, "AI Update Service Point", ProxySource.SERVER, "R4"),
    (CloudDistributionPoint, "SMS Distribution Point", ProxySource.MANAGING_SITE_SERVER, "R5"),
    (CMGConnectionPoint, "SMS Cloud Proxy Connector", ProxySource.SERVER, "R1"),
    (ServiceConnectionPoint, "SMS Dmp Connector", ProxySource.SERVER, "R6, R8"),
    (ExchangeServerConnector, "SMS Exchange Server Connector", ProxySource.SERVER, "R7"),
    (SoftwareUpdatePoint, "SMS Software Update Point", ProxySource.OPT_IN, "R9"),
    (ConnectedCacheDistributionPoint, "SMS Distribution Point", ProxySource.SERVER, "R1"),
    (ManagementPoint, "SMS Management Point", ProxySource.NOT_SITE_SYSTEM_PROXY, ""),
]


@pytest.mark.parametrize(("cls", "role_name", "source", "rule"), INTERNET_ROLES)
def test_role_states_its_proxy_semantics(
    cls: type[Role], role_name: str, source: ProxySource, rule: str
) -> None:
    role = cls()
    assert role_name == role.ROLE_NAME
    assert role.PROXY_SOURCE is source
    assert rule == role.RULE
    assert role.CONNECTS_TO
    assert role.CONNECTING_ACCOUNT
    assert cls.__doc__ or cls.DISPLAY_NAME


def test_every_account_statement_cites_r3_or_explains_itself() -> None:
    for cls, *_ in INTERNET_ROLES:
        text = cls.CONNECTING_ACCOUNT
        assert "R3" in text or "System" in text, cls


def test_asset_intelligence_is_deprecated() -> None:
    assert AssetIntelligenceSyncPoint.DEPRECATED


def test_sup_carries_its_two_flags() -> None:
    sup = SoftwareUpdatePoint(use_proxy=True)
    assert sup.any_flag
    assert not SoftwareUpdatePoint().any_flag
    assert sup.uses_server_proxy


def test_cloud_dp_refuses_a_proxy_on_itself_but_not_removal() -> None:
    dp = CloudDistributionPoint()
    assert "primary site server" in (dp.refusal(ProxySettings(server="p")) or "")
    assert dp.refusal(ProxySettings.disabled()) is None
    assert not dp.uses_server_proxy


def test_connected_cache_refuses_authenticated_proxy() -> None:
    mcc = ConnectedCacheDistributionPoint()
    assert mcc.refusal(ProxySettings(server="p")) is None
    assert "unauthenticated" in (mcc.refusal(ProxySettings(server="p", account="C\\u")) or "")


def test_management_point_2603_caveat_points_to_wininet() -> None:
    note = " ".join(ManagementPoint.NOTES)
    assert "2603" in note
    assert "WinINET" in note
    assert not ManagementPoint().uses_server_proxy


def test_role_for_name_maps_known_names_and_keeps_others() -> None:
    assert isinstance(role_for_name("SMS Dmp Connector"), ServiceConnectionPoint)
    assert isinstance(role_for_name("sms software update point"), SoftwareUpdatePoint)
    other = role_for_name("SMS Fallback Status Point")
    assert isinstance(other, OtherRole)
    assert other.name == "SMS Fallback Status Point"


def test_every_public_name_has_a_docstring() -> None:
    missing = [
        name
        for name in cmproxy.__all__
        if not name.startswith("_")
        and callable(getattr(cmproxy, name))
        and not (getattr(cmproxy, name).__doc__ or "").strip()
    ]
    assert missing == []
