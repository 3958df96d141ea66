"""A small hierarchy for planner tests: a CAS, a primary with a secondary, typed roles."""

from __future__ import annotations

import pytest

from cmproxy import (
    CloudDistributionPoint,
    ConnectedCacheDistributionPoint,
    KnownAccount,
    ProxySettings,
    ServiceConnectionPoint,
    Site,
    SiteServer,
    SiteState,
    SiteSystemServer,
    SiteType,
    SoftwareUpdatePoint,
    SupSyncSource,
)

OLD = ProxySettings(server="proxy-old.contoso.com", port=8080, account="CONTOSO\\svc-proxy")


@pytest.fixture
def state() -> SiteState:
    return SiteState(
        sites=[
            Site("CAS", "cas", server="cm-cas.contoso.com"),
            Site("PS1", "primary", parent="CAS", server="cm-ps1.contoso.com"),
            Site("SS1", SiteType.SECONDARY, parent="PS1", server="cm-ss1.contoso.com"),
        ],
        servers=[
            SiteSystemServer("cm-cas.contoso.com", "CAS", roles=[SiteServer()]),
            SiteSystemServer(
                "cm-ps1.contoso.com", "PS1", proxy=OLD, roles=[SiteServer(), SoftwareUpdatePoint()]
            ),
            SiteSystemServer(
                "cm-sup01.contoso.com",
                "PS1",
                proxy=OLD,
                roles=[SoftwareUpdatePoint(use_proxy=True, use_proxy_for_adr=True)],
            ),
            SiteSystemServer(
                "cm-scp01.contoso.com",
                "PS1",
                roles=[ServiceConnectionPoint(), SoftwareUpdatePoint()],
            ),
            SiteSystemServer("cm-ss1.contoso.com", "SS1", roles=[SoftwareUpdatePoint()]),
            SiteSystemServer(
                "cm-sup-up.contoso.com",
                "PS1",
                proxy=OLD,
                roles=[
                    SoftwareUpdatePoint(
                        sync_source=SupSyncSource.UPSTREAM, upstream_server="cm-cas.contoso.com"
                    )
                ],
            ),
            SiteSystemServer(
                "cdp01.cloudapp.net",
                "PS1",
                roles=[CloudDistributionPoint(managing_site_server="cm-ps1.contoso.com")],
            ),
            SiteSystemServer("cdp02.cloudapp.net", "PS1", roles=[CloudDistributionPoint()]),
            SiteSystemServer(
                "cm-mcc01.contoso.com", "PS1", roles=[ConnectedCacheDistributionPoint()]
            ),
        ],
        accounts=[KnownAccount("CONTOSO\\svc-proxy", "PS1")],
    )
