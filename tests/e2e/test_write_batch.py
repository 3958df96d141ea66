"""Writes at one site coalesced into one pipeline (`Set-ProxyBatch.ps1`, `WriteCoalescer`).

Each write of a batch runs once, in its own try/catch; each caller gets its own result or its
own exception; a transport failure of a batch reaches every caller as a transient
`TransportError`; a caller never joins a batch that has started.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from emulator.meeting import WAIT, Meeting, until

from cmproxy._exceptions import ItemNotFoundError, PlanError, PowerShellError, TransportError
from cmproxy.emulator.api import Emulator
from cmproxy.emulator.engine import SiteEngine
from cmproxy.emulator.settings import EmulatorSettings, HostFacts
from cmproxy.model import ProxySettings, SiteState, SupFlags
from cmproxy.plan import Change
from cmproxy.retry import is_transient
from cmproxy.session import Session, WriteCoalescer
from cmproxy.transports.psrp import PSRPTransport
from cmproxy.tuning import Tuning
from cmproxy.writer import (
    BATCH_TEMPLATE,
    WriteResult,
    batch_results,
    batch_step,
    step_for_invocation,
)

from .targets import (
    BATCH_ACCOUNT,
    RECEIVE_TIMEOUT,
    account_change,
    connection_info,
    proxy_change,
    sup_change,
)

DP1 = "cm-ps1-dp01.contoso.com"
DP2 = "cm-ps1-dp02.contoso.com"
SUP = "cm-ps1-sup01.contoso.com"


def proxy_of(state: SiteState, server: str) -> ProxySettings:
    found = state.server(server)
    assert found is not None
    return found.proxy


def test_batch_step_binds_one_column_per_parameter() -> None:
    step = batch_step("PS1", [proxy_change(DP1), sup_change(SUP, True, False)], groups=[4, 4])
    assert step.script.name == BATCH_TEMPLATE
    bound = dict(step.parameters)
    assert set(bound) == {"SiteCode", "Items"}  # one JSON string, not a parameter per column
    assert bound["SiteCode"] == "PS1"
    items = json.loads(bound["Items"])
    assert items["Kind"] == ["Proxy", "Sup"]
    assert items["SiteSystemServerName"] == [DP1, SUP]
    assert items["ProxyAccessAccountName"] == [BATCH_ACCOUNT, ""]
    assert items["ProxyServerPort"] == [3128, 80]
    assert items["UseProxy"] == [False, True]
    assert items["Group"] == [4, 4]
    assert "Group" not in json.loads(
        dict(batch_step("PS1", [proxy_change(DP1)]).parameters)["Items"]
    )
    with pytest.raises(PlanError):
        batch_step("PS2", [proxy_change(DP1)])


@pytest.mark.parametrize(
    ("groups", "expected"),
    [
        # Contiguous groups: a group is read back before the next group writes.
        ([1, 1, 2], ["Set DP1", "Set SUP", "Get DP1", "Get SUP", "Set DP2", "Get DP2"]),
        # A group whose writes are not contiguous is read back after its last one.
        ([1, 2, 1], ["Set DP1", "Set DP2", "Get DP2", "Set SUP", "Get DP1", "Get SUP"]),
        # Without groups each item is its own group.
        (None, ["Set DP1", "Get DP1", "Set SUP", "Get SUP", "Set DP2", "Get DP2"]),
    ],
)
def test_a_group_is_read_back_after_its_last_write(
    groups: list[int] | None, expected: list[str]
) -> None:
    """The read-back of a transaction's servers follows all of its writes (what lets it skip
    its final read), and comes before later groups' writes where it can: the site takes
    those writes while the batch reads, instead of one read-back after the pipeline's last
    write."""
    changes = [proxy_change(DP1), sup_change(SUP, True, False), proxy_change(DP2)]
    if groups == [1, 2, 1]:
        changes = [changes[0], changes[2], changes[1]]
    short = {DP1: "DP1", DP2: "DP2", SUP: "SUP"}
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, "psrp", "ntlm")) as session,
    ):
        before = len(emu.state.call_log())
        results = session._write_batch("PS1", changes, groups)
        calls = [
            f"{'Set' if c.wrote else 'Get'} {short[c.params['SiteSystemServerName']]}"
            for c in emu.state.call_log()[before:]
            if c.command.endswith(("-CMSiteSystemServer", "-CMSoftwareUpdatePoint"))
        ]
    assert all(isinstance(r, WriteResult) and r.matches for r in results)
    assert calls == expected


@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_a_batch_read_back_by_listing_its_site_finds_every_written_server(transport: str) -> None:
    """-ReadBackBySite: after the last write the site's roles are listed once (one Get) and
    each written server's row is picked from that listing, for both kinds of write."""
    changes = [proxy_change(DP1), sup_change(SUP, True, True), proxy_change(DP2, account=None)]
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, transport, "ntlm")) as session,
    ):
        step = batch_step("PS1", changes, read_back_by_site=True)
        before = len(emu.state.call_log())
        results = batch_results(changes, session.run_step(step))
        gets = [c for c in emu.state.call_log()[before:] if c.command.startswith("Get-CM")]
    assert all(isinstance(r, WriteResult) and r.matches for r in results), results
    assert [r.read_back for r in results if isinstance(r, WriteResult)] == [
        ProxySettings(server="p.contoso.com", port=3128, account=BATCH_ACCOUNT),
        SupFlags(use_proxy=True, use_proxy_for_adr=True),
        ProxySettings(server="p.contoso.com", port=3128, account=None),
    ]
    listings = [
        c for c in gets if c.command == "Get-CMSiteRole" and "SiteSystemServerName" not in c.params
    ]
    assert len(listings) == 1  # the site listed once, no Get by name for the read-back
    assert not [
        c for c in gets if c.command in ("Get-CMSiteSystemServer", "Get-CMSoftwareUpdatePoint")
    ]


@pytest.mark.parametrize("transport", ["psrp", "winrm"])
def test_one_pipeline_each_item_its_own_result_or_error(transport: str) -> None:
    changes = [
        proxy_change(DP1),
        proxy_change(DP2, account="CONTOSO\\nobody"),  # its own ItemNotFoundError
        sup_change(SUP, True, False),
        proxy_change("cm-ps1-nothere.contoso.com"),  # its own error; the others still written
        proxy_change(DP2, account=None, host="q.contoso.com"),  # after the failed one
    ]
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, transport, "ntlm")) as session,
    ):
        before = len(emu.state.call_log())
        results = session._write_batch("PS1", changes)
        sets = [c for c in emu.state.call_log()[before:] if c.wrote]
        state = session.read_state([DP1, DP2, SUP])
    ok0, bad1, ok2, bad3, ok4 = results
    assert isinstance(ok0, WriteResult) and ok0.matches
    assert isinstance(bad1, ItemNotFoundError) and "CONTOSO\\nobody" in str(bad1)
    assert isinstance(ok2, WriteResult) and ok2.matches
    assert isinstance(bad3, PowerShellError)
    assert isinstance(ok4, WriteResult) and ok4.matches
    assert ok4.read_back == ProxySettings(server="q.contoso.com", port=3128, account=None)
    assert len(sets) == 3  # each write once; the failed ones wrote nothing
    assert proxy_of(state, DP1).server == "p.contoso.com"
    assert proxy_of(state, DP2).server == "q.contoso.com"


def test_concurrent_applies_share_a_pipeline_over_the_emulator() -> None:
    servers = [f"cm-ps1-dp0{i}.contoso.com" for i in (1, 2, 3)] + [
        f"cm-ps1-mp0{i}.contoso.com" for i in (1, 2)
    ]
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, "psrp", "ntlm")) as session,
        ThreadPoolExecutor(len(servers)) as pool,
    ):
        results = list(pool.map(session.apply, [proxy_change(s) for s in servers]))
        state = session.read_state(servers)
    assert all(r.matches for r in results)
    assert [r.change.target for r in results] == servers
    assert session._writes.requests == len(servers)
    for s in servers:
        assert proxy_of(state, s).server == "p.contoso.com"


# -- the coalescer alone -----------------------------------------------------------------------


class Recorder:
    """Stand-ins for the session's single and batch writers, gated so batches can collect."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.gate = threading.Event()
        self.calls: list[list[str]] = []
        self.fail = fail
        self.lock = threading.Lock()

    def one(self, change: Change) -> WriteResult:
        return self.many(change.site_code, [change])[0]  # type: ignore[return-value]

    def many(self, site: str, changes: list[Change]) -> list[WriteResult | BaseException]:
        with self.lock:
            self.calls.append([c.target for c in changes])
        self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        out: list[WriteResult | BaseException] = []
        for c in changes:
            if "bad" in c.target:
                out.append(ItemNotFoundError(f"{c.target} not found"))
            else:
                out.append(WriteResult(change=c, read_back=c.after, matches=True))
        return out


def run_concurrently(
    coalescer: WriteCoalescer, rec: Recorder, changes: list[Change]
) -> list[WriteResult | BaseException]:
    """The first change's batch starts and is held (at the recorder's gate); every other
    caller then asks while it runs; then the gate opens. Each step waits for the coalescer's
    own count of callers, not for a pause: the order is the test's, not the scheduler's."""

    def call(change: Change) -> WriteResult | BaseException:
        try:
            return coalescer.apply(change)
        except BaseException as exc:  # collected for the assertions
            return exc

    with ThreadPoolExecutor(len(changes)) as pool:
        futures = [pool.submit(call, changes[0])]
        until(lambda: len(rec.calls) == 1, "the first batch started")
        futures += [pool.submit(call, c) for c in changes[1:]]
        until(lambda: coalescer.requests == len(changes), "every caller asked")
        rec.gate.set()
        return [f.result() for f in futures]


def test_callers_join_only_a_batch_that_has_not_started() -> None:
    rec = Recorder()
    coalescer = WriteCoalescer(rec.one, rec.many, in_flight=1)
    changes = [proxy_change(f"s{i}.contoso.com") for i in range(6)]
    results = run_concurrently(coalescer, rec, changes)
    assert [r.change.target for r in results if isinstance(r, WriteResult)] == [
        c.target for c in changes
    ]
    # The first caller's batch started alone (nobody could join it); the others collected.
    assert len(rec.calls) == 2
    assert len(rec.calls[0]) == 1
    assert sorted(rec.calls[1]) == sorted(c.target for c in changes if c not in changes[:1])
    assert sum(len(c) for c in rec.calls) == len(changes)  # each write once


def test_each_caller_gets_its_own_error_and_sites_do_not_mix() -> None:
    rec = Recorder()
    coalescer = WriteCoalescer(rec.one, rec.many, in_flight=1)
    changes = [
        proxy_change("a.contoso.com"),
        proxy_change("bad.contoso.com"),
        proxy_change("c.contoso.com", site="PS2"),
        proxy_change("a.contoso.com"),  # the same server and kind never share a batch
    ]
    results = run_concurrently(coalescer, rec, changes)
    assert isinstance(results[0], WriteResult)
    assert isinstance(results[1], ItemNotFoundError)
    assert isinstance(results[2], WriteResult)
    assert isinstance(results[3], WriteResult)
    for batch in rec.calls:
        assert len(set(batch)) == len(batch)
    assert ["c.contoso.com"] in rec.calls


def test_a_transport_failure_is_a_transient_error_for_every_caller() -> None:
    rec = Recorder(fail=TransportError("connection reset"))
    coalescer = WriteCoalescer(rec.one, rec.many, in_flight=1)
    changes = [proxy_change(f"s{i}.contoso.com") for i in range(4)]
    results = run_concurrently(coalescer, rec, changes)
    assert all(isinstance(r, TransportError) and is_transient(r) for r in results)
    assert len({id(r) for r in results}) == len(results)  # each caller its own exception
    assert sum(len(c) for c in rec.calls) == len(changes)  # nothing was run twice


def test_warm_opens_pools_at_once_and_steps_use_them() -> None:
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        Session(connection_info(emu, "psrp", "ntlm")) as session,
    ):
        session.warm(3)
        transport = session._transport
        assert transport is not None
        assert getattr(transport, "pools", None) == 3
        session.warm(2)  # never closes or adds beyond what is asked
        assert getattr(transport, "pools", None) == 3
        assert session.read_state([DP1]).server(DP1) is not None


def test_warm_with_secrets_exchanges_each_pools_key_during_its_bootstrap() -> None:
    """With passwords to come, every warmed pool has its SecureString key before any step
    carries one (the RSA work rides on the module import), and a password then lands."""
    password = "Warm-Pa55-7c2d"
    change = account_change("CONTOSO\\svc-warm", password)
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        contextlib.closing(Session(connection_info(emu, "psrp", "ntlm"))) as session,
    ):
        session.warm(2, secrets=True)  # unopened: opens on the first pool ready
        transport = session._transport
        assert isinstance(transport, PSRPTransport)
        transport.warm(2)  # returns once no pool is warming any more
        lanes = transport._lanes
        assert len(lanes) == 2 and all(lane.keys_exchanged for lane in lanes)
        assert session.write(change).matches
        assert emu.state.check_password("PS1", "CONTOSO\\svc-warm", password)


def test_every_pool_of_a_transport_sends_one_rsa_key_and_each_decrypts_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SecureString key exchange (MS-PSRP 2.2.2.3 PUBLIC_KEY / 2.2.2.4
    ENCRYPTED_SESSION_KEY): the pools of one transport all send the same RSA public key, so
    warming three with passwords to come generates one key, not three (about 60 ms of CPU
    each); each pool still gets its own session key, and a password sent on each lands."""
    generated: list[int] = []
    generate = rsa.generate_private_key

    def counted(*args: Any, **kwargs: Any) -> rsa.RSAPrivateKey:
        generated.append(1)
        return generate(*args, **kwargs)

    monkeypatch.setattr(rsa, "generate_private_key", counted)  # counts, then generates
    with (
        Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu,
        contextlib.closing(Session(connection_info(emu, "psrp", "ntlm"))) as session,
    ):
        session.warm(3, secrets=True)
        transport = session._transport
        assert isinstance(transport, PSRPTransport)
        transport.warm(3)
        lanes = list(transport._lanes)
        assert len(lanes) == 3 and all(lane.keys_exchanged for lane in lanes)
        assert len(generated) == 1
        for i, lane in enumerate(lanes):  # one SecureString through each pool's session key
            user, password = f"CONTOSO\\svc-key{i}", f"Key-Pa55-{i}-9e1f"
            transport._run_on(lane, step_for_invocation(account_change(user, password).invocation))
            assert emu.state.check_password("PS1", user, password)
        assert len(generated) == 1


def test_an_unopened_session_opens_on_its_first_warm_pool_and_steps_wait_for_the_others() -> None:
    """`warm` on an unopened session returns once one pool is ready; steps arriving while the
    others still import wait for them instead of opening (and importing in) more pools."""
    settings = EmulatorSettings()
    settings.costs.module_import = 0.5
    with (
        Emulator(seed="demo", settings=settings, receive_timeout=RECEIVE_TIMEOUT) as emu,
        contextlib.closing(Session(connection_info(emu, "psrp", "ntlm"))) as session,
    ):
        session.warm(3)
        transport = session._transport
        assert isinstance(transport, PSRPTransport)
        assert transport._warming > 0  # returned before every pool had imported
        with ThreadPoolExecutor(6) as pool:
            states = list(pool.map(lambda _: session.read_state([DP1]), range(6)))
        assert all(s.server(DP1) is not None for s in states)
        assert transport.pools == 3


def _emulator_sleeping(settings: EmulatorSettings, sleep: Callable[[float], None]) -> Emulator:
    """The demo site whose modelled costs pass through `sleep` (SiteEngine's sleep parameter)."""
    return Emulator(
        seed="demo",
        settings=settings,
        receive_timeout=RECEIVE_TIMEOUT,
        engine_factory=lambda state, cfg: SiteEngine(state, cfg, sleep=sleep),
    )


def _imports_meeting(
    imports_at_once: int | None, parties: int, wait: float, *, provider_cores: int = 16
) -> tuple[Meeting, int | None]:
    """Warm three pools of an unopened session, each pool's `Import-Module` cost (the only
    non-zero cost here) standing at a `Meeting` of `parties`: the imports that are in their
    cost together meet, and `most_at_once` says how many were, without timing anything. A
    barrier broken by an import that waited alone is reset for the next import, so each one
    may meet another. `provider_cores`: the emulated provider's logical processors
    (`[Environment]::ProcessorCount`); returned with the count the transport learned."""
    settings = EmulatorSettings(host=HostFacts(logical_processors=provider_cores))
    settings.costs.module_import = 0.3
    tuning = Tuning() if imports_at_once is None else Tuning(imports_at_once=imports_at_once)
    meeting = Meeting(parties, wait)

    def sleep(seconds: float) -> None:
        if seconds <= 0:
            return  # the zero-cost Get calls: not imports
        if meeting.barrier.broken:
            meeting.barrier.reset()
        meeting.sleep(seconds)

    with (
        _emulator_sleeping(settings, sleep) as emu,
        contextlib.closing(Session(connection_info(emu, "psrp", "ntlm"), tuning=tuning)) as s,
    ):
        s.warm(3)
        transport = s._transport
        assert isinstance(transport, PSRPTransport)
        transport.warm(3)  # returns once no pool is warming any more
        assert transport.pools == 3
        assert s.read_state([DP1]).server(DP1) is not None
        learned = transport.provider_cores
    return meeting, learned


def test_warm_imports_at_most_tuning_imports_at_once_at_a_time() -> None:
    """`Tuning.imports_at_once`: the warmed pools bootstrap in turns of that many (imports
    that share a provider's cores are slower together); by default, here all three at once.
    Shown with a `Meeting` at the import's cost (tests/emulator/meeting.py), not by timing:
    one at a time, no import ever finds another in its cost (each waits for one in vain);
    by default, the three meet."""
    one_by_one, _ = _imports_meeting(1, parties=2, wait=1.0)
    assert len(one_by_one.met) == 3 and not any(one_by_one.met), one_by_one.met
    assert one_by_one.most_at_once == 1
    together, _ = _imports_meeting(3, parties=3, wait=WAIT)
    assert together.met == [True, True, True]
    assert together.most_at_once == 3


def test_warm_imports_in_turns_of_the_providers_logical_processors() -> None:
    """By default (`Tuning.imports_at_once` None) the first pool asks the provider its logical
    processors (`[Environment]::ProcessorCount`) before it imports, and the pools import in
    turns of that many: with one processor, no import ever finds another in its cost; with
    sixteen (the emulated host's default), the three meet. Imports that share a provider's
    cores take longer together ([UNCONFIRMED] that they are CPU-bound; docs/sessions.md)."""
    one_core, learned = _imports_meeting(None, parties=2, wait=1.0, provider_cores=1)
    assert learned == 1
    assert len(one_core.met) == 3 and not any(one_core.met), one_core.met
    assert one_core.most_at_once == 1
    many, learned = _imports_meeting(None, parties=3, wait=WAIT, provider_cores=16)
    assert learned == 16
    assert many.met == [True, True, True]
    assert many.most_at_once == 3


def test_lanes_ready_counts_the_pools_imported_while_others_still_warm() -> None:
    """`Session.lanes_ready()` (what a bulk run starts no more batches than): with pools
    imported one at a time, one ready at first, then two, and None once none warms. Each
    import's cost is held until the test lets it end, so every stage is seen in turn, not
    caught by polling while it lasts."""
    settings = EmulatorSettings()
    settings.costs.module_import = 1.0  # the only non-zero cost: each import's sleep
    entered: queue.Queue[threading.Event] = queue.Queue()

    def held(seconds: float) -> None:
        if seconds <= 0:
            return
        release = threading.Event()
        entered.put(release)
        assert release.wait(WAIT), "the test never let this import end"

    def next_import() -> threading.Event:
        return entered.get(timeout=WAIT)

    with (
        _emulator_sleeping(settings, held) as emu,
        contextlib.closing(
            Session(connection_info(emu, "psrp", "ntlm"), tuning=Tuning(imports_at_once=1))
        ) as session,
        ThreadPoolExecutor(1) as pool,
    ):
        # Opens on the first pool ready; the two others import after it, one at a time.
        warmed = pool.submit(session.warm, 3)
        next_import().set()
        warmed.result(timeout=WAIT)
        second = next_import()
        assert session.lanes_ready() == 1
        second.set()
        third = next_import()  # the second pool's turn ended; it counts once marked ready
        until(lambda: session.lanes_ready() == 2, "two pools ready while the third imports")
        third.set()
        after: list[int | None] = []

        def none_warms() -> bool:
            after.append(session.lanes_ready())
            return after[-1] is None

        until(none_warms, "no pool warms any more")
        assert set(after) <= {2, None}, after  # never 3 while one still warms
        assert entered.empty()  # three imports in all
        transport = session._transport
        assert isinstance(transport, PSRPTransport) and transport.pools == 3


def test_a_whole_read_in_shards_is_the_read_in_one_pipeline() -> None:
    """PSRP reads the hierarchy in several pipelines at once (`-Shard i -Shards n`: three
    before the sites are known, then one per site); together they are exactly what one
    pipeline reads (WinRS runs `Get-SiteState` whole)."""
    with Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu:
        with Session(connection_info(emu, "winrm", "ntlm")) as single:
            whole = single.read_state()
        with Session(connection_info(emu, "psrp", "ntlm")) as sharded:
            first, again = sharded.read_state(), sharded.read_state()
    assert first == whole and again == whole
    assert len(whole.sites) == 4 and len(whole.servers) > 10
