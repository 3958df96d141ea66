"""The ports a site offers the engine (issue 16 point 2): declared protocols, not probes.

A `Session` states every capability the engine uses (mypy checks the assignments below; the
`isinstance` checks are the ones the engine makes); the in-memory test site states only the
`SiteClient` protocol, so the engine takes its one-change-at-a-time path. A `Step` is a pure
value: building one reads no template file.
"""

from __future__ import annotations

import pytest

from cmproxy.connection import ConnectionInfo
from cmproxy.model import SiteState
from cmproxy.ports import (
    AppliesMany,
    HoldsShells,
    Identified,
    RecordsPipelines,
    SiteClient,
    StopsShells,
    Warms,
)
from cmproxy.session import Session
from cmproxy.steps import Script, Step
from cmproxy.testing import InMemorySite
from cmproxy.transports.base import FakeTransport


def _session() -> Session:
    info = ConnectionInfo(server="sms01.contoso.com", username="CONTOSO\\cm", password="pw")
    return Session(info, transport=FakeTransport(lambda step: [], info))


def test_a_session_declares_every_capability_the_engine_uses() -> None:
    session = _session()
    # Static: mypy fails here if Session stops matching a protocol.
    declared: tuple[
        SiteClient, AppliesMany, Warms, RecordsPipelines, StopsShells, HoldsShells, Identified
    ] = (session, session, session, session, session, session, session)
    assert all(d is session for d in declared)
    for port in (AppliesMany, Warms, RecordsPipelines, StopsShells, HoldsShells, Identified):
        assert isinstance(session, port), port.__name__


def test_the_in_memory_site_is_a_plain_site_client() -> None:
    site: SiteClient = InMemorySite(SiteState())
    for port in (AppliesMany, Warms, RecordsPipelines, StopsShells, HoldsShells):
        assert not isinstance(site, port), port.__name__


def test_a_step_names_its_template_and_reads_it_only_when_sent() -> None:
    step = Step.of("No-Such-Template", Server="a")  # no file read: no error yet
    assert step.script == Script("No-Such-Template")
    assert step.describe() == "No-Such-Template(Server='a')"
    with pytest.raises(KeyError, match="No-Such-Template"):
        _ = step.script.text  # the edge (a transport) reads the text


def test_a_template_step_carries_the_template_text_at_the_edge() -> None:
    text = Step.of("Get-SiteState").script.text
    assert "param(" in text.lower()
