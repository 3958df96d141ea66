"""Worked example (issue 16 point 1): a role with a proxy setting of its own, added in one place.

Everything the SDK needs to know about the new knob is the `Setting` registered below; the
role names it in its `SETTINGS`. Nothing else of the SDK changes: the reader maps its role row,
the planner plans it from a `SettingRequest`, the writer binds its template, the read-back
projection verifies it, the snapshot journals it, a failed transaction rolls it back, and a
bulk run carries it; its `row` is its read projection, which the prelude's
ConvertTo-CMProxyRow runs for its role's rows (no read template is edited). This test defines
both in its own file; a real role adds its class to `cmproxy/roles.py` and its setting to
`cmproxy/settings.py`, plus its write template in `ps_templates/` and its cmdlet in the
emulator: four files (docs/architecture.md, "Where each kind of change goes").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest

from cmproxy._exceptions import ValidationError
from cmproxy.bulk import apply_bulk
from cmproxy.emulator.engine import SiteEngine
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.emulator.state import SiteState as EmulatedSite
from cmproxy.invocation import Invocation
from cmproxy.journal import Journal
from cmproxy.kinds import ChangeKind
from cmproxy.model import (
    ProxySettings,
    ProxySource,
    Role,
    Site,
    SiteState,
    SiteSystemServer,
)
from cmproxy.outcomes import Outcome, ServerSnapshot
from cmproxy.plan import DesiredState, SettingRequest, plan
from cmproxy.reader import read_site_state
from cmproxy.retry import RetryPolicy
from cmproxy.settings import Setting, register, role_settings, setting_for
from cmproxy.steps import Result
from cmproxy.templates import load_prelude
from cmproxy.testing import InMemorySite
from cmproxy.transaction import run_transaction
from cmproxy.writer import batchable, read_back, step_for_invocation

PROXY = ProxySettings(server="proxy.contoso.com", port=8080)
GW1, GW2 = "gw01.contoso.com", "gw02.contoso.com"


@attrs.frozen
class ExampleGateway(Role):
    """A test-only role that sends its traffic through the server proxy only when told to."""

    ROLE_NAME: ClassVar[str] = "SMS Example Gateway"
    DISPLAY_NAME: ClassVar[str] = "example gateway"
    CONNECTS_TO: ClassVar[str] = "an example cloud service"
    PROXY_SOURCE: ClassVar[ProxySource] = ProxySource.OPT_IN
    SETTINGS: ClassVar[tuple[str, ...]] = ("gateway_proxy",)

    use_proxy: bool = False


def _gateway(server: SiteSystemServer) -> ExampleGateway:
    role = server.role(ExampleGateway)
    assert isinstance(role, ExampleGateway)
    return role


def _show(server: SiteSystemServer, value: Any) -> SiteSystemServer:
    roles = tuple(
        attrs.evolve(r, use_proxy=bool(value)) if isinstance(r, ExampleGateway) else r
        for r in server.roles
    )
    return attrs.evolve(server, roles=roles)


GATEWAY = register(
    Setting(
        name="gateway_proxy",
        per_server=False,
        kind=ChangeKind.SET_ROLE_SETTING,
        cmdlet="Set-CMExampleGateway",
        template="Set-ExampleGatewayProxy",
        parameters={
            "SiteCode": "SiteCode",
            "SiteSystemServerName": "SiteSystemServerName",
            "UseProxy": "UseProxy",
        },
        batch_kind="",
        batch_column="",
        same=lambda a, b: a == b,
        from_record=lambda record: bool(record.get("UseProxy")),
        key=str,
        read=lambda server: _gateway(server).use_proxy,
        show=_show,
        role=ExampleGateway,
        row={"UseProxy": "Value"},
        invocation=lambda server, value: Invocation.of(
            "Set-CMExampleGateway",
            SiteCode=server.site_code,
            SiteSystemServerName=server.name,
            UseProxy=bool(value),
        ),
    )
)


@pytest.fixture
def state() -> SiteState:
    return SiteState(
        sites=[Site("PS1", "primary", server="cm-ps1.contoso.com")],
        servers=[
            SiteSystemServer(GW1, "PS1", proxy=PROXY, roles=[ExampleGateway()]),
            SiteSystemServer(GW2, "PS1", proxy=PROXY, roles=[ExampleGateway()]),
            SiteSystemServer("cm-ps1.contoso.com", "PS1", proxy=PROXY),
        ],
    )


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def _on(*servers: str) -> DesiredState:
    return DesiredState(settings=[SettingRequest(s, "gateway_proxy", True) for s in servers])


def test_the_reader_maps_its_role_row() -> None:
    def row(name: str, **props: object) -> dict[str, object]:
        return {
            "Kind": "Role",
            "SiteCode": "PS1",
            "ServerName": f"\\\\{GW1}",
            "RoleName": name,
            **props,
        }

    records = [
        {"Kind": "Site", "SiteCode": "PS1", "Type": 2, "ServerName": "cm-ps1.contoso.com"},
        row("SMS Site System", UseProxy=0),
        row("SMS Example Gateway", UseProxy=1),
    ]
    assert read_site_state(records).state.server(GW1).has_role(ExampleGateway) is False  # type: ignore[union-attr]
    server = read_site_state(records, role_settings()).state.server(GW1)
    assert server is not None
    assert [r.name for r in server.roles] == ["example gateway"]
    assert _gateway(server).use_proxy is True


def test_the_prelude_projects_its_role_row_as_its_setting_declares() -> None:
    """The read projection is the setting's `row`, run by the prelude's ConvertTo-CMProxyRow
    (the one Get-SiteState.ps1 and the write templates call), here in the emulator's
    interpreter on a role row shaped like Get-CMSiteRole's (embedded Props, `Value`)."""
    site = EmulatedSite()
    runspace = SiteEngine(site, EmulatorSettings(), sleep=lambda _s: None).open_runspace("admin")
    try:
        script = load_prelude() + (
            "\n$prop = [pscustomobject]@{ PropertyName = 'UseProxy'; Value = 1; Value2 = '' }\n"
            "$role = [pscustomobject]@{ RoleName = 'SMS Example Gateway';"
            " NetworkOSPath = '\\\\gw01.contoso.com'; Props = @($prop) }\n"
            "ConvertTo-CMProxyRow -Role $role -SiteCode PS1\n"
        )
        result = runspace.run_script(script)
    finally:
        site.close()
    assert not result.had_errors, result
    (row,) = result.output
    assert row.properties["UseProxy"] == 1
    assert read_site_state(
        [
            {"Kind": "Site", "SiteCode": "PS1", "Type": 2, "ServerName": "cm-ps1.contoso.com"},
            dict(row.properties),
        ],
        role_settings(),
    ).state.server(GW1).role(ExampleGateway) == ExampleGateway(use_proxy=True)  # type: ignore[union-attr]


def test_a_read_projection_must_name_properties_of_a_role() -> None:
    bad = attrs.evolve(GATEWAY, name="other", cmdlet="Set-CMOther", row={"Use Proxy": "Value"})
    with pytest.raises(ValidationError, match="is not a property name"):
        register(bad)
    with pytest.raises(ValidationError, match="neither Value nor Value2"):
        register(attrs.evolve(bad, row={"UseProxy": "Value3"}))


def test_it_is_planned_from_a_request_and_only_where_a_role_carries_it(
    state: SiteState,
) -> None:
    (change,) = plan(state, _on(GW1)).changes
    assert change.kind is ChangeKind.SET_ROLE_SETTING
    assert setting_for(change) is GATEWAY
    assert (change.before, change.after) == (False, True)
    assert change.invocation.command == "Set-CMExampleGateway"
    assert plan(state.with_server(_show(state.server(GW1), True)), _on(GW1)).is_empty  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no role that carries it"):
        plan(state, _on("cm-ps1.contoso.com"))


def test_it_is_written_through_its_template_and_verified_by_its_projection(
    state: SiteState,
) -> None:
    (change,) = plan(state, _on(GW1)).changes
    step = step_for_invocation(change.invocation)
    assert step.script.name == "Set-ExampleGatewayProxy"
    assert dict(step.parameters) == {
        "SiteCode": "PS1",
        "SiteSystemServerName": GW1,
        "UseProxy": True,
    }
    assert not batchable(change)  # its own template, not Set-ProxyBatch
    assert read_back(change, Result(output=({"UseProxy": True},))) == (True, True)
    assert read_back(change, Result(output=({"UseProxy": False},))) == (False, False)


def test_a_transaction_applies_verifies_and_journals_it(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    result = run_transaction(site, _on(GW1), journal=journal, policy=RetryPolicy.for_tests())
    assert result.ok and result.changed
    assert _gateway(site.state.server(GW1)).use_proxy is True  # type: ignore[arg-type]
    outcome = result.outcome(GW1)
    assert outcome.before == ServerSnapshot(PROXY, None, (("gateway_proxy", False),))
    assert outcome.after == ServerSnapshot(PROXY, None, (("gateway_proxy", True),))
    assert ServerSnapshot.from_dict(outcome.after.to_dict()) == outcome.after
    assert journal.open_transactions() == []


def test_a_failed_transaction_puts_it_back(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    site.fail_for(GW2)  # the second server's write fails: the first one is rolled back
    result = run_transaction(site, _on(GW1, GW2), journal=journal, policy=RetryPolicy.for_tests())
    assert result.outcome(GW1).outcome is Outcome.ROLLED_BACK
    assert _gateway(site.state.server(GW1)).use_proxy is False  # type: ignore[arg-type]
    assert [c.target for c in site.applied] == [GW1, GW1]  # written, then put back


def test_a_bulk_run_carries_it(state: SiteState, journal: Journal) -> None:
    site = InMemorySite(state)
    results = apply_bulk([site], _on(GW1, GW2), journal=journal, progress=False)
    assert results.ok
    assert all(_gateway(s).use_proxy for s in site.state.servers if s.has_role(ExampleGateway))
