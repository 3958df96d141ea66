"""The proxy settings table (issue 16 point 1): one `Setting` per knob, declared by roles.

The writer's templates, the transaction's checks and the snapshots read it; these tests pin
what the table promises them.
"""

from __future__ import annotations

from cmproxy.model import ProxySettings, SiteSystemServer, SupFlags
from cmproxy.outcomes import ServerSnapshot
from cmproxy.plan import ChangeKind
from cmproxy.roles import ROLE_CLASSES, ManagementPoint, SoftwareUpdatePoint
from cmproxy.settings import SERVER_PROXY, SETTINGS, SUP_OPTIONS, setting_for
from cmproxy.writer import WRITE_TEMPLATES

PROXY = ProxySettings(server="proxy.contoso.com", port=8080)


def test_every_setting_a_role_declares_is_in_the_table() -> None:
    names = {s.name for s in SETTINGS}
    declared = {name for role in ROLE_CLASSES for name in role.SETTINGS}
    assert declared <= names
    assert SoftwareUpdatePoint.SETTINGS == ("sup",)


def test_a_server_carries_its_proxy_and_what_its_roles_declare() -> None:
    plain = SiteSystemServer("mp01.contoso.com", "PS1", PROXY, [ManagementPoint()])
    sup = SiteSystemServer("sup01.contoso.com", "PS1", PROXY, [SoftwareUpdatePoint(use_proxy=True)])
    assert [s.name for s in SETTINGS if s.carried(plain)] == ["proxy"]
    assert [s.name for s in SETTINGS if s.carried(sup)] == ["proxy", "sup"]
    assert SUP_OPTIONS.value(plain) is None
    assert SUP_OPTIONS.value(sup) == SupFlags(True, False)
    assert SERVER_PROXY.value(sup) == PROXY


def test_a_snapshot_holds_each_setting_under_its_name() -> None:
    snap = ServerSnapshot(PROXY, SupFlags(False, False))
    moved = SUP_OPTIONS.into_snapshot(snap, SupFlags(True, True))
    assert SUP_OPTIONS.in_snapshot(moved) == SupFlags(True, True)
    assert SERVER_PROXY.in_snapshot(moved) == PROXY


def test_each_change_kind_maps_to_its_setting_and_template() -> None:
    assert setting_for(ChangeKind.SET_SERVER_PROXY) is SERVER_PROXY
    assert setting_for(ChangeKind.SET_SUP_FLAGS) is SUP_OPTIONS
    assert setting_for(ChangeKind.CREATE_ACCOUNT) is None
    for setting in SETTINGS:
        assert WRITE_TEMPLATES[setting.cmdlet] == setting.template


def test_proxy_values_compare_in_effect() -> None:
    """Disabled proxies are the same whatever stale fields they keep (`ProxySettings.same_as`);
    a value of another setting is never the same."""
    stale = ProxySettings(enabled=False, server="old.contoso.com", port=3128)
    assert SERVER_PROXY.same(ProxySettings.disabled(), stale)
    assert not SERVER_PROXY.same(PROXY, stale)
    assert not SERVER_PROXY.same(PROXY, SupFlags(True, True))
