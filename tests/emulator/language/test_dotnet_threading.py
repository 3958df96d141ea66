"""The emulator's System.Threading.Mutex across threads, runspaces and accounts of one host
(engine/dotnet_threading.py), and Set-ProxyBatch.ps1's per-server lock on top of it.

What one runspace shows is in conformance/threading.yaml; here are the behaviours that need a
second thread or account. Each test names where the behaviour is stated (learn.microsoft.com
unless said). A "thread" is a script run (`SiteRunspace.run_script` / `invoke`), run here in a
Python thread where it must block.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from cmproxy.emulator.engine import SiteEngine, SiteRunspace
from cmproxy.emulator.engine.values import CommandSpec, InvocationResult
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.emulator.state import SiteState
from cmproxy.templates import load_prelude, load_template

from ..meeting import until

NAME = "Global\\cmproxy-test"
SERVER = "cm-ps1-mp01.contoso.com"
LOCK = "Global\\cmproxy-ps1-" + SERVER

_OPEN = "$mutex = New-Object -TypeName System.Threading.Mutex -ArgumentList $false, '{name}'\n"
_SECURED = (
    "$created = $false\n"
    "$security = New-Object -TypeName System.Security.AccessControl.MutexSecurity\n"
    "$who = New-Object -TypeName System.Security.Principal.SecurityIdentifier "
    "-ArgumentList 'S-1-5-11'\n"
    "$rule = New-Object -TypeName System.Security.AccessControl.MutexAccessRule "
    "-ArgumentList $who, '{rights}', 'Allow'\n"
    "$security.AddAccessRule($rule)\n"
    "$mutex = New-Object -TypeName System.Threading.Mutex "
    "-ArgumentList $false, '{name}', ([ref]$created), $security\n"
)


@pytest.fixture
def host(demo_state: SiteState) -> SiteEngine:
    """One emulated host, real sleeps (a script holding a mutex must really hold it)."""
    return SiteEngine(demo_state, EmulatorSettings())


def _rs(engine: SiteEngine, user: str = "CONTOSO\\admin") -> SiteRunspace:
    runspace = engine.open_runspace(user)
    res = runspace.run_script("Import-Module ConfigurationManager; Set-Location PS1:")
    assert not res.had_errors, res
    return runspace


def _errors(res: InvocationResult) -> list[str]:
    found = ([res.terminating] if res.terminating else []) + list(res.errors)
    return [r.fully_qualified_error_id for r in found]


class _Thread:
    """Another thread of the host, driven step by step by the test: it makes the calls a
    script's New-Object / WaitOne / ReleaseMutex make, and ends when the test says."""

    def __init__(self, engine: SiteEngine, user: str = "CONTOSO\\admin") -> None:
        self.space = engine.named_objects
        self.rs = engine.open_runspace(user)
        self.rs.current = InvocationResult()  # this thread's identity

    def open(self, name: str = NAME) -> Any:
        handle, _ = self.space.open(self.rs, name, False, None, 2)
        return handle

    def take(self, name: str = NAME) -> Any:
        handle = self.open(name)
        assert handle.call(self.rs, "WaitOne", [0]) is True
        return handle

    def release(self, handle: Any) -> None:
        handle.call(self.rs, "ReleaseMutex", [])

    def end(self) -> None:
        self.space.thread_ended(self.rs.current)


def _in_thread(run: Callable[[], InvocationResult]) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(run()))
    thread.start()
    return thread, got


def test_a_named_mutex_is_shared_by_every_runspace_of_the_host(host: SiteEngine) -> None:
    """Named kernel objects are machine-wide: another process opening the name gets the same
    mutex (CreateMutexW; "Object Names"); WaitOne(Int32) returns false when the timeout
    passes before it is owned (WaitHandle.WaitOne(Int32))."""
    other = _Thread(host)
    held = other.take()
    res = _rs(host).run_script(_OPEN.format(name=NAME) + "$mutex.WaitOne(50)")
    assert res.output == [False]
    other.release(held)
    res = _rs(host).run_script(_OPEN.format(name=NAME) + "$mutex.WaitOne(0)")
    assert res.output == [True]


def test_a_waiter_gets_the_mutex_when_its_owner_releases_it(host: SiteEngine) -> None:
    """WaitOne blocks until the mutex is signalled, i.e. released by its owner
    (WaitHandle.WaitOne; Mutex class remarks)."""
    other = _Thread(host)
    held = other.take()
    waiter, got = _in_thread(
        lambda: _rs(host).run_script(
            _OPEN.format(name=NAME) + "$mutex.WaitOne(20000)\n$mutex.ReleaseMutex()"
        )
    )
    until(lambda: host.named_objects.waiting(NAME) == 1, "the script waits")
    other.release(held)
    waiter.join(30)
    assert got[0].output == [True] and not got[0].had_errors


def test_a_thread_that_ends_owning_it_abandons_it(host: SiteEngine) -> None:
    """A thread that exits without releasing abandons the mutex: the next thread to acquire it
    gets AbandonedMutexException and owns it (AbandonedMutexException class; Mutex class
    remarks); the error id is the exception's type name (PowerShell's ExceptionHandlingOps
    .ConvertToMethodInvocationException)."""
    other = _Thread(host)
    other.take()
    script = (
        _OPEN.format(name=NAME)
        + "try { $mutex.WaitOne(20000) } catch { $_.FullyQualifiedErrorId }\n"
        + "$mutex.ReleaseMutex()\n'released'"
    )
    waiter, got = _in_thread(lambda: _rs(host).run_script(script))
    until(lambda: host.named_objects.waiting(NAME) == 1, "the script waits")
    other.end()
    waiter.join(30)
    assert got[0].output == ["AbandonedMutexException", "released"], _errors(got[0])


def test_a_script_that_ends_owning_a_mutex_abandons_it(host: SiteEngine) -> None:
    """The same when the owner is a script: its thread ends with it (a powershell.exe run)."""
    keeper = _Thread(host)
    handle = keeper.open()  # keeps the object alive once the script's thread has ended
    res = _rs(host).run_script(_OPEN.format(name=NAME) + "$mutex.WaitOne(0)")
    assert res.output == [True]
    with pytest.raises(Exception, match="abandoned mutex"):
        handle.call(keeper.rs, "WaitOne", [0])
    keeper.release(handle)  # owned all the same


def test_release_by_another_thread_is_an_application_exception(host: SiteEngine) -> None:
    """ReleaseMutex by a thread that does not own the mutex: ApplicationException
    (Mutex.ReleaseMutex, Exceptions)."""
    other = _Thread(host)
    other.take()
    res = _rs(host).run_script(_OPEN.format(name=NAME) + "$mutex.ReleaseMutex()")
    assert _errors(res) == ["ApplicationException"]


def test_the_object_goes_with_its_last_handle(host: SiteEngine) -> None:
    """A named object exists while a handle to it is open: after the last Dispose the name
    creates a new mutex again (CreateMutexW: createdNew true only when created; CloseHandle:
    the object is deleted when its last handle is closed)."""
    runspace = _rs(host)
    first = runspace.run_script(
        "$created = $false\n$a = New-Object -TypeName System.Threading.Mutex "
        f"-ArgumentList $false, '{NAME}', ([ref]$created)\n$created\n$a.Dispose()"
    )
    again = runspace.run_script(
        "$created = $false\n$b = New-Object -TypeName System.Threading.Mutex "
        f"-ArgumentList $false, '{NAME}', ([ref]$created)\n$created"
    )
    assert first.output == [True] and again.output == [True]


def test_another_account_cannot_open_a_mutex_with_the_default_security(
    host: SiteEngine,
) -> None:
    """Without a MutexSecurity the mutex gets the default security descriptor of its creator's
    token (CreateMutexW); another account opening it is refused: UnauthorizedAccessException
    (Mutex constructor, Exceptions), through New-Object the terminating
    ConstructorInvokedThrowException (PowerShell's NewObjectCommand.CallConstructor). Whether
    that descriptor admits other accounts is [UNCONFIRMED] (HostFacts.mutex_default_dacl_shared)."""
    _Thread(host).open()
    res = _rs(host, "CONTOSO\\operator").run_script(
        "try { "
        + _OPEN.format(name=NAME)
        + " } catch { $_.FullyQualifiedErrorId; $_.Exception.Message }"
    )
    assert res.output == [
        "ConstructorInvokedThrowException,Microsoft.PowerShell.Commands.NewObjectCommand",
        'Exception calling ".ctor" with "2" argument(s): '
        f"\"Access to the path '{NAME}' is denied.\"",
    ]
    host.settings.host.mutex_default_dacl_shared = True
    assert not _rs(host, "CONTOSO\\operator").run_script(_OPEN.format(name=NAME)).had_errors


@pytest.mark.parametrize(
    ("rights", "opens"), [("Synchronize, Modify", True), ("Synchronize", False)]
)
def test_another_account_opens_it_with_synchronize_and_modify(
    host: SiteEngine, rights: str, opens: bool
) -> None:
    """An existing mutex opens with full access, or else with MUTEX_MODIFY_STATE | SYNCHRONIZE
    (referencesource mutex.cs CreateMutexHandle: OpenMutex after ERROR_ACCESS_DENIED);
    Authenticated Users (S-1-5-11) holds every signed-in account (Well-known SIDs)."""
    first = _rs(host).run_script(_SECURED.format(name=NAME, rights=rights) + "$global:m = $mutex")
    assert not first.had_errors
    script = _SECURED.format(name=NAME, rights=rights)
    if opens:
        res = _rs(host, "CONTOSO\\operator").run_script(script + "$created\n$mutex.WaitOne(0)")
        assert res.output == [False, True] and not res.had_errors
    else:
        res = _rs(host, "CONTOSO\\operator").run_script(script)
        assert _errors(res) == [
            "ConstructorInvokedThrowException,Microsoft.PowerShell.Commands.NewObjectCommand"
        ]


# -- Set-ProxyBatch.ps1's lock ---------------------------------------------------------------


def _batch(engine: SiteEngine, lock_timeout_ms: int) -> InvocationResult:
    """Set-ProxyBatch.ps1 writing one server proxy, compared with the seed's value (off)."""
    items = {
        "Kind": ["Proxy"],
        "SiteSystemServerName": [SERVER],
        "EnableProxy": [True],
        "ProxyServerName": ["proxy.contoso.com"],
        "ProxyServerPort": [8080],
        "ProxyAccessAccountName": [""],
        "UseProxy": [False],
        "UseProxyForAutoDeploymentRule": [False],
        "ProxyOk": ["\noff\non|proxy.contoso.com|8080|\n"],
        "SupOk": [""],
    }
    spec = CommandSpec(
        name=load_template("Set-ProxyBatch"),
        is_script=True,
        parameters=(
            ("SiteCode", "PS1"),
            ("Items", json.dumps(items)),
            ("LockTimeoutMs", lock_timeout_ms),
        ),
    )
    prelude = CommandSpec(name=load_prelude(), is_script=True)  # as the transports send it
    return _rs(engine).invoke([prelude, spec])


def _records(res: InvocationResult) -> list[dict[str, Any]]:
    return [dict(o.properties) for o in res.output]


@pytest.fixture
def proxy_off(host: SiteEngine) -> SiteEngine:
    props = host.state.server_props("PS1", SERVER)
    assert props["UseProxy"].value == 0, "the seed's server has no proxy"
    return host


def test_the_batch_waits_for_the_lock_and_reports_a_held_one(proxy_off: SiteEngine) -> None:
    """While another writer holds the server's lock the batch writes nothing and says so
    (a Conflict record with Locked); once it is free, the batch writes, and releases it."""
    other = _Thread(proxy_off)
    held = other.take(LOCK)
    (record,) = _records(_batch(proxy_off, 100))
    assert record["Kind"] == "Conflict" and SERVER in record["Locked"]
    assert proxy_off.state.call_log("Set-CMSiteSystemServer") == []
    assert proxy_off.state.server_props("PS1", SERVER)["UseProxy"].value == 0
    other.release(held)
    (record,) = _records(_batch(proxy_off, 100))
    assert record["Kind"] == "Role" and record["ProxyName"] == "proxy.contoso.com"
    assert other.take(LOCK) is not None  # released by the batch


def test_the_batch_takes_an_abandoned_lock_and_compares(proxy_off: SiteEngine) -> None:
    """A lock whose holder died is the batch's (AbandonedMutexException): the compare decides."""
    other = _Thread(proxy_off)
    keep = _Thread(proxy_off).open(LOCK)  # a third handle keeps the object
    other.take(LOCK)
    other.end()
    (record,) = _records(_batch(proxy_off, 100))
    assert record["Kind"] == "Role" and record["ProxyName"] == "proxy.contoso.com"
    assert keep is not None


def test_a_single_write_template_waits_for_the_servers_lock(proxy_off: SiteEngine) -> None:
    """Set-ServerProxy.ps1 (Session.write) takes the same lock as Set-ProxyBatch.ps1: while
    another writer holds it, its Set waits; once released, it writes, reads back and releases."""
    other = _Thread(proxy_off)
    held = other.take(LOCK)
    prelude = CommandSpec(name=load_prelude(), is_script=True)
    spec = CommandSpec(
        name=load_template("Set-ServerProxy"),
        is_script=True,
        parameters=(
            ("SiteCode", "PS1"),
            ("SiteSystemServerName", SERVER),
            ("EnableProxy", True),
            ("ProxyServerName", "proxy.contoso.com"),
            ("ProxyServerPort", 8080),
        ),
    )
    writer, got = _in_thread(lambda: _rs(proxy_off).invoke([prelude, spec]))
    until(lambda: proxy_off.named_objects.waiting(LOCK) == 1, "the template waits")
    assert proxy_off.state.call_log("Set-CMSiteSystemServer") == []
    other.release(held)
    writer.join(30)
    (record,) = _records(got[0])
    assert record["ProxyName"] == "proxy.contoso.com" and not got[0].had_errors
    assert other.take(LOCK) is not None  # released by the template


@pytest.mark.parametrize(
    "creator",
    [
        "$s = Get-CMProxyLockSecurity\n"
        "$global:m = Lock-CMProxyServer -SiteCode PS1 -Server $server -Security $s",
        "$global:m = Lock-CMProxyServer -SiteCode PS1 -Server $server",
        # the control: the same name created with the default security descriptor
        "$global:m = New-Object -TypeName System.Threading.Mutex -ArgumentList $false, "
        "('Global\\cmproxy-ps1-' + $server)",
    ],
    ids=["shared-descriptor", "built-per-lock", "default-descriptor"],
)
def test_a_lock_taken_under_one_account_opens_under_another(host: SiteEngine, creator: str) -> None:
    """Lock-CMProxyServer's descriptor (Get-CMProxyLockSecurity, built once per Set-ProxyBatch
    pipeline or per lock) lets another account open the lock it created: Authenticated Users,
    Synchronize | Modify (see the two tests above); the mutex created without it refuses them
    (ConstructorInvokedThrowException) unless HostFacts.mutex_default_dacl_shared."""
    first = _rs(host)
    first.run_script(load_prelude())
    made = first.run_script(f"$server = '{SERVER}'\n{creator}")
    assert not made.had_errors, made
    other = _rs(host, "CONTOSO\\operator")
    other.run_script(load_prelude())
    res = other.run_script(  # as the write templates run it
        "$ErrorActionPreference = 'Stop'\n"
        f"$m = Lock-CMProxyServer -SiteCode PS1 -Server '{SERVER}' -TimeoutMs 0\n$null -eq $m"
    )
    if "New-Object" in creator:
        assert _errors(res) == [
            "ConstructorInvokedThrowException,Microsoft.PowerShell.Commands.NewObjectCommand"
        ]
    else:
        # The creator's script ended owning it (abandoned): the other account takes it.
        assert res.output == [False] and not res.had_errors, res


def test_a_ref_argument_shows_as_a_psreference(host: SiteEngine, demo_state: SiteState) -> None:
    """`[ref]$created` passed to New-Object is a PSReference: Windows PowerShell 5.1's class is
    not generic and does not override ToString (System.Management.Automation.dll, class
    PSReference), so its text is its type's full name; the call log shows that, not a Python
    object address that differs from run to run."""
    rs = _rs(host)
    demo_state.clear_call_log()
    res = rs.run_script(
        _SECURED.format(name=NAME, rights="Synchronize, Modify") + "$mutex.Dispose()\n"
    )
    assert not _errors(res), res
    (made,) = [
        c for c in demo_state.call_log("New-Object") if c.params["TypeName"].endswith(".Mutex")
    ]
    assert "System.Management.Automation.PSReference" in made.params["ArgumentList"]
    assert " at 0x" not in json.dumps(made.params)
