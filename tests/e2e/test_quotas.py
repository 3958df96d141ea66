"""WinRM shell quotas from the SDK's side: pools capped, quota faults handled, pools closed.

The endpoint is the emulator, whose quotas follow Windows ("Quota Management for Remote
Shells", learn.microsoft.com/windows/win32/winrm/quotas; the Microsoft.PowerShell plug-in's
MaxShellsPerUser 25), lowered here to keep the tests small. Each test counts the shells the
account holds on the endpoint itself (`WSManService.shells_of`), not through the SDK.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pypsrp.exceptions import WSManFaultError as PSRPFault
from pypsrp.powershell import RunspacePool
from pypsrp.wsman import WSMan
from winrm.exceptions import WSManFaultError as WinRMFault

import cmproxy
from cmproxy import ConnectionInfo, QuotaExceededError, Session, TransportError, ValidationError
from cmproxy.emulator.api import Emulator
from cmproxy.quotas import read_quotas
from cmproxy.retry import is_transient
from cmproxy.slots import ShellSlots
from cmproxy.transports.base import translate_exception
from cmproxy.transports.psrp import PSRPTransport

from .targets import connection_info

pytestmark = pytest.mark.e2e

QUOTA_TEXT = (
    "The WS-Management service cannot process the request. This user is allowed a maximum "
    "number of 25 concurrent shells, which has been exceeded. Close existing shells or raise "
    "the quota for this user."
)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(
        allow_basic=True, allow_unencrypted=True, seed="demo", receive_timeout=3.0
    ) as emu:
        yield emu


def info_for(emu: Emulator, transport: str = "psrp", **extra: Any) -> ConnectionInfo:
    """NTLM over HTTP with message encryption at PS1; a short operation timeout."""
    return connection_info(emu, transport, "ntlm").evolve(operation_timeout=5, **extra)


def shells(emu: Emulator) -> int:
    assert emu.service is not None
    return len(emu.service.shells_of(emu.username))


def hold_shell(emu: Emulator) -> RunspacePool:
    """A shell of the same account opened by someone else (a raw pypsrp client)."""
    wsman = WSMan(
        emu.host,
        port=emu.port,
        username=emu.username,
        password=emu.password,
        ssl=False,
        auth="basic",
        encryption="never",
        no_proxy=True,
    )
    pool = RunspacePool(wsman)
    pool.open()
    return pool


# -- classification -------------------------------------------------------------------------


def test_quota_faults_of_both_clients_become_quota_exceeded() -> None:
    info = ConnectionInfo(server="cm01", username="CONTOSO\\a", password="pw")
    psrp = PSRPFault(2150859236, "cm01", QUOTA_TEXT, None, None, None)
    winrs = WinRMFault(500, "Bad HTTP response", "", QUOTA_TEXT, "s:Sender", "w:QuotaLimit", None)
    for fault in (psrp, winrs):
        error = translate_exception(fault, info, stage="opening the PowerShell runspace")
        assert isinstance(error, QuotaExceededError)
        assert error.limit == 25
        assert "MaxShellsPerUser" in str(error) and "'CONTOSO\\\\a'" in str(error)
        assert "pw" not in str(error).replace("opening", "")
        assert is_transient(error)
    assert translate_exception(psrp, info).code == 2150859236  # type: ignore[attr-defined]
    other = PSRPFault(2150858843, "cm01", "The shell was not found", None, None, None)
    assert not isinstance(translate_exception(other, info), QuotaExceededError)


def test_connection_options_are_validated() -> None:
    base: dict[str, Any] = {"server": "cm01", "username": "u", "password": "p"}
    info = ConnectionInfo(**base)
    assert (info.max_pools, info.account_max_shells, info.quota_wait) == (12, 20, 120.0)
    bad: list[tuple[str, Any]] = [("max_pools", 0), ("account_max_shells", -1), ("quota_wait", -1)]
    for field, value in bad:
        with pytest.raises(ValidationError) as err:
            ConnectionInfo(**base, **{field: value})
        assert err.value.field == field and err.value.value == value
    with pytest.raises(ValidationError, match="max_pools"):
        ConnectionInfo(**base, max_pools="many")
    env = {"CMPROXY_SERVER": "cm01", "CMPROXY_USERNAME": "u", "CMPROXY_ACCOUNT_MAX_SHELLS": "8"}
    assert ConnectionInfo.from_env(environ=env).account_max_shells == 8


# -- slots ----------------------------------------------------------------------------------


def test_slots_are_shared_and_freed_when_their_process_dies(tmp_path: Path) -> None:
    slots = ShellSlots("http://cm01:5985/wsman", "CONTOSO\\a", 2, tmp_path)
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from pathlib import Path
                from cmproxy.slots import ShellSlots
                slots = ShellSlots(sys.argv[1], sys.argv[2], 2, Path(sys.argv[3]))
                slot = slots.try_acquire()
                print("held" if slot else "none", flush=True)
                time.sleep(300)
                """
            ),
            slots.endpoint,
            slots.account,
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        mine = slots.try_acquire()
        assert mine is not None
        assert slots.try_acquire() is None  # the child's and mine: both taken
        assert slots.in_use() == 2
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    again = slots.try_acquire()  # the dead child's lock went with it
    assert again is not None
    assert slots.in_use() == 2
    mine.release()
    again.release()
    assert slots.in_use() == 0


def test_sessions_of_one_account_share_the_account_cap(emu: Emulator) -> None:
    info = info_for(emu, account_max_shells=3)
    with Session(info) as one, Session(info) as two:
        one.warm(3)
        two.warm(3)
        assert shells(emu) == 3  # not 6: the second session got what was left
        read = one.read_state(["cm-ps1-mp01.contoso.com"])
        assert two.read_state(["cm-ps1-mp01.contoso.com"]) == read
    assert shells(emu) == 0


# -- quota faults ---------------------------------------------------------------------------


def test_fewer_pools_when_the_endpoint_refuses_more(emu: Emulator) -> None:
    emu.settings.quotas.plugin_max_shells_per_user = 3
    with Session(info_for(emu)) as session:
        session.warm(8)
        transport = session._transport
        assert isinstance(transport, PSRPTransport)
        assert transport.pools == 3
        names = [f"cm-ps1-{n}.contoso.com" for n in ("mp01", "mp02", "dp01", "dp02", "fsp01")]
        with ThreadPoolExecutor(8) as pool:
            reads = list(
                pool.map(
                    lambda n: session.run("Get-SiteState", SiteSystemServerName=[n]), names * 2
                )
            )
        assert all(r.records() for r in reads)
        assert shells(emu) == 3
    assert emu.service is not None and emu.service.quota_refusals > 0
    assert shells(emu) == 0


def test_the_first_pool_waits_for_a_shell_then_opens(emu: Emulator) -> None:
    emu.settings.quotas.plugin_max_shells_per_user = 1
    other = hold_shell(emu)
    assert emu.service is not None
    refused = threading.Event()
    service = emu.service
    admit = service._admit

    def watch(user: str, plugin: bool) -> None:
        try:
            admit(user, plugin)
        except Exception:
            refused.set()  # the session asked and was refused: now free the shell
            raise

    service._admit = watch  # type: ignore[method-assign]
    result: list[Any] = []
    opener = threading.Thread(
        target=lambda: result.append(Session(info_for(emu, quota_wait=60)).open())
    )
    opener.start()
    assert refused.wait(30)
    other.close()
    opener.join(60)
    session = result[0]
    assert session.is_open
    session.close()
    assert shells(emu) == 0


def test_the_wait_is_bounded(emu: Emulator) -> None:
    emu.settings.quotas.plugin_max_shells_per_user = 1
    other = hold_shell(emu)
    try:
        with pytest.raises(QuotaExceededError) as err:
            Session(info_for(emu, quota_wait=0.5)).open()
        assert err.value.limit == 1
        assert "allowed a maximum number of 1 concurrent shells" in str(err.value)
        assert shells(emu) == 1  # only the other client's
    finally:
        other.close()


# -- pools always closed --------------------------------------------------------------------


def test_no_shell_remains_after_a_with_block_or_a_failure(emu: Emulator) -> None:
    with cmproxy.connect(info_for(emu)) as session:
        session.warm(4)
        assert shells(emu) == 4
    assert shells(emu) == 0

    def fail_inside() -> None:
        with Session(info_for(emu)) as session:
            session.warm(2)
            raise RuntimeError("the caller's own failure")

    with pytest.raises(RuntimeError):
        fail_inside()
    assert shells(emu) == 0
    with pytest.raises(cmproxy.SiteDriveError):  # the bootstrap fails: nothing is kept
        Session(info_for(emu).evolve(site_code="ZZ9")).open()
    assert shells(emu) == 0


def test_a_broken_pool_does_not_keep_its_shell(emu: Emulator) -> None:
    with Session(info_for(emu)) as session:
        assert shells(emu) == 1
        with emu.settings.lock:
            emu.settings.request_count = 0
            emu.settings.faults.drop_connection_on_request = 1
        with pytest.raises((TransportError, cmproxy.ConnectionError)):
            session.read_state(["cm-ps1-mp01.contoso.com"])
        emu.settings.reset_faults()
        # The pool whose connection broke is never used again, and its shell is deleted:
        # left there it would hold one of the account's shells for the idle timeout (2 h).
        assert shells(emu) == 0
        assert session.read_state(["cm-ps1-mp01.contoso.com"]).servers
        assert shells(emu) == 1
    assert shells(emu) == 0


def test_a_forgotten_session_closes_its_pools(emu: Emulator) -> None:
    session = Session(info_for(emu))
    session.open()
    session.warm(2)
    assert shells(emu) == 2
    del session
    gc.collect()
    assert shells(emu) == 0


def test_pools_are_closed_at_interpreter_exit(emu: Emulator) -> None:
    script = textwrap.dedent(
        f"""
        from cmproxy import ConnectionInfo, Session
        info = ConnectionInfo(server={emu.host!r}, port={emu.port}, scheme="http", auth="ntlm",
            username={emu.username!r}, password={emu.password!r}, message_encryption="always",
            site_code="PS1", ignore_proxy=True)
        keep = Session(info).open()
        keep.warm(2)
        print("open", flush=True)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert out.stdout.strip() == "open", out.stderr
    assert shells(emu) == 0


# -- WinRS ----------------------------------------------------------------------------------


def test_winrs_waits_for_a_shell_and_never_leaves_one(emu: Emulator) -> None:
    emu.settings.quotas.winrs_max_shells_per_user = 1
    other = hold_shell(emu)  # the WinRS quota counts PowerShell shells too
    try:
        with pytest.raises(QuotaExceededError) as err:
            Session(info_for(emu, transport="winrm", quota_wait=0.5)).open()
        assert err.value.limit == 1
    finally:
        other.close()
    with Session(info_for(emu, transport="winrm")) as session:
        assert session.read_state(["cm-ps1-mp01.contoso.com"]).servers
        assert shells(emu) == 1
    assert shells(emu) == 0
    forgotten = Session(info_for(emu, transport="winrm")).open()
    assert shells(emu) == 1
    del forgotten
    gc.collect()
    assert shells(emu) == 0


# -- idle timeout ---------------------------------------------------------------------------


def test_a_pool_the_endpoint_deleted_when_idle_is_replaced(emu: Emulator) -> None:
    now = [1000.0]
    emu.config.clock = lambda: now[0]
    emu.settings.quotas.plugin_max_shells_per_user = 1
    with Session(info_for(emu)) as session:
        assert session.read_state(["cm-ps1-mp01.contoso.com"]).servers
        now[0] += 7200.0  # the plug-in's IdleTimeoutms (7,200,000): the endpoint deletes it
        assert shells(emu) == 0
        # The next step finds its pool gone, opens a new one (the quota has room again).
        assert session.read_state(["cm-ps1-mp01.contoso.com"]).servers
        assert shells(emu) == 1
    assert shells(emu) == 0


# -- what the endpoint advertises (for `cmproxy doctor`) ------------------------------------


def test_the_endpoints_quotas_are_read_where_readable(emu: Emulator) -> None:
    emu.settings.quotas.plugin_max_shells_per_user = 12
    info = info_for(emu, account_max_shells=15)
    with Session(info) as session:
        session.warm(2)
        quotas = read_quotas(info)
    assert quotas.plugin is not None and quotas.plugin["MaxShellsPerUser"] == 12
    assert quotas.plugin["IdleTimeoutms"] == 7_200_000
    assert quotas.winrs is not None and quotas.winrs["MaxShellsPerUser"] == 30
    assert quotas.max_shells_per_user == 12
    assert quotas.cap_fits is False  # 15 shells for cmproxy, 12 allowed: lower the cap
    assert quotas.shells_held_here == 2
    # A configuration the endpoint does not know: that part is not readable, not guessed.
    other = read_quotas(info.evolve(configuration_name="Contoso.JEA"))
    assert other.plugin is None and other.max_shells_per_user == 30
