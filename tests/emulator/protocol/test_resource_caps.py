"""The emulator's resource caps: each is answered as Windows answers, never with Python's text.

- Call depth: `ScriptCallDepthException` — "The script failed due to call depth overflow.",
  error id `CallDepthOverflow`, category InvalidOperation (its ErrorRecord property). Windows
  PowerShell has no hard-coded maximum ("CallDepth: Always 0 - depth is not tracked as there is
  no hard coded maximum", learn.microsoft.com/dotnet/api/system.management.automation.
  scriptcalldepthexception); the limit is the thread's stack, so where it is hit is the
  emulator's own stack ([UNCONFIRMED] depth). PowerShell/PowerShell test/powershell/Host/
  ConsoleHost.Tests.ps1 "Should handle a CallDepthOverflow" runs `function recurse { recurse }`.
- Allocation: `'x' * n` is `new string(c, n)` / `ArrayOps.Multiply` (PowerShell's StringOps.cs,
  ArrayOps.cs); beyond what the CLR can allocate that throws OutOfMemoryException, reported as
  "Exception of type 'System.OutOfMemoryException' was thrown." The emulator's cap
  (`settings.limits.max_allocation`) stands in for the machine's memory [UNCONFIRMED].
- Connections: WinRM's service MaxConnections (default 300, `winrm get winrm/config/service`);
  beyond it, 503 (http.sys logs ConnLimit / QueueFull as 503, "Error logging in HTTP APIs").
- Slow headers: http.sys's HeaderWait timer (HTTP_TIMEOUT_LIMIT_INFO: "the time, in seconds,
  allowed for the server to parse the request header", default 120 s); on expiry the
  connection is dropped (httperr reason Timer_HeaderWait).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import requests
import winrm
from pypsrp.exceptions import WSManFaultError
from pypsrp.powershell import PowerShell, RunspacePool
from winrm.exceptions import WinRMError

from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER, Emulator

from ..clients import psrp_wsman, winrs_protocol

pytestmark = pytest.mark.e2e

PYTHON_TEXT = ("RecursionError", "Traceback", "MemoryError", "Emulator engine error", "Internal")


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(allow_basic=True, allow_unencrypted=True, receive_timeout=3) as e:
        yield e


def psrp(emu: Emulator, script: str) -> tuple[list[Any], list[Any]]:
    """(output, error records) of `script` over PSRP (pypsrp)."""
    wsman = psrp_wsman(emu)
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script(script)
        output = ps.invoke()
        return list(output), list(ps.streams.error)


def winrs(emu: Emulator, script: str) -> tuple[str, str, int]:
    """(stdout, stderr, exit code) of `script` over WinRS (pywinrm `run_ps`)."""
    session = winrm.Session(
        emu.endpoint,
        auth=(DEFAULT_USER, DEFAULT_PASSWORD),
        transport="basic",
        operation_timeout_sec=5,
        read_timeout_sec=10,
    )
    result = session.run_ps(script)
    return (
        result.std_out.decode("utf-8", "replace"),
        result.std_err.decode("utf-8", "replace"),
        int(result.status_code),
    )


def _error_ids(errors: list[Any]) -> list[str]:
    return [str(cast(Any, e).fq_error) for e in errors]


def _assert_no_python(*texts: str) -> None:
    for text in texts:
        for word in PYTHON_TEXT:
            assert word not in text, text


DEEP = {
    "function recursion": "function r { r }\nr",
    "900 nested parentheses": "(" * 900 + "1" + ")" * 900,
}


@pytest.mark.parametrize("script", DEEP.values(), ids=list(DEEP))
def test_call_depth_overflow_over_psrp(emu: Emulator, script: str) -> None:
    output, errors = psrp(emu, script)
    assert output == []
    assert _error_ids(errors) == ["CallDepthOverflow"]
    message = str(cast(Any, errors[0]).exception.adapted_properties["Message"])
    assert message == "The script failed due to call depth overflow."
    _assert_no_python(message)
    assert psrp(emu, "1 + 1")[0] == [2]  # the endpoint still works


@pytest.mark.parametrize("script", DEEP.values(), ids=list(DEEP))
def test_call_depth_overflow_over_winrs(emu: Emulator, script: str) -> None:
    stdout, stderr, code = winrs(emu, script)
    assert code == 1
    assert "The script failed due to call depth overflow." in stderr
    assert "CallDepthOverflow" in stderr
    _assert_no_python(stdout, stderr)


ALLOCATIONS = {
    "string": "$x = 'x' * 100000000\n$x.Length",
    "array": "$a = @(1, 2) * 100000000\n$a.Count",
}


@pytest.mark.parametrize("script", ALLOCATIONS.values(), ids=list(ALLOCATIONS))
def test_an_allocation_beyond_the_cap_is_out_of_memory(emu: Emulator, script: str) -> None:
    emu.settings.limits.max_allocation = 1_000_000
    try:
        output, errors = psrp(emu, script)
        stdout, stderr, code = winrs(emu, script)
    finally:
        emu.settings.limits.max_allocation = type(emu.settings.limits)().max_allocation
    # statement-terminating: the assignment never happened, the next statement ran
    assert output == [0]
    assert _error_ids(errors) == ["System.OutOfMemoryException"]
    message = str(cast(Any, errors[0]).exception.adapted_properties["Message"])
    assert message == "Exception of type 'System.OutOfMemoryException' was thrown."
    assert "System.OutOfMemoryException" in stderr
    assert code == 1
    _assert_no_python(message, stdout, stderr)


def test_an_allocation_under_the_cap_works(emu: Emulator) -> None:
    assert psrp(emu, "('ab' * 3).Length; (@(1, 2) * 3).Count")[0] == [6, 6]


def _raw_post_head() -> bytes:
    return b"POST /wsman HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def test_slow_headers_are_cut_after_header_wait(emu: Emulator) -> None:
    """A client that trickles its header (one byte well inside the idle timeout each time)
    is cut once HeaderWait has passed since its request began."""
    emu.config.header_wait = 1.0
    try:
        with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
            sock.sendall(_raw_post_head())
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 8:
                try:
                    sock.sendall(b"X")
                    time.sleep(0.2)
                    sock.setblocking(False)
                    try:
                        closed = sock.recv(1) == b""
                    except BlockingIOError:
                        pass
                    finally:
                        sock.setblocking(True)
                except OSError:
                    closed = True
                if closed:
                    break
            assert closed, "the trickled header was never cut"
    finally:
        emu.config.header_wait = 120.0
    assert psrp(emu, "1 + 1")[0] == [2]


def test_connections_beyond_max_connections_get_503() -> None:
    """Its own emulator: a keep-alive connection left by an earlier test (pywinrm's sessions
    close only when collected) holds a slot, so one held socket here would be the refused
    one, and the POST would pass once that leftover let go (CI saw 200; reproduced by
    closing a leftover between the holds and the POST)."""
    with Emulator(allow_basic=True, allow_unencrypted=True, receive_timeout=3) as emu:
        emu.settings.quotas.max_connections = 3
        held: list[socket.socket] = []
        try:
            for _ in range(3):  # idle keep-alive connections hold their slot
                held.append(socket.create_connection((emu.host, emu.port), timeout=10))
            # Accepted in order (the listener's queue is FIFO), so the POST comes fourth.
            refused = requests.post(
                emu.endpoint, data=b"", auth=(DEFAULT_USER, DEFAULT_PASSWORD), timeout=10
            )
            assert refused.status_code == 503
            for sock in held:  # each was taken, none answered with the 503
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)
        finally:
            for sock in held:
                sock.close()
            emu.settings.quotas.max_connections = type(emu.settings.quotas)().max_connections
        assert psrp(emu, "1 + 1")[0] == [2]


def test_commands_beyond_max_concurrent_commands_per_shell_are_refused_over_psrp(
    emu: Emulator,
) -> None:
    """The plug-in's MaxConcurrentCommandsPerShell: one more running pipeline of the shell is
    refused with ERROR_WSMAN_QUOTA_MAX_COMMANDS_PER_SHELL_PPQ (0x803381E9, wsmerror.h as
    PowerShell's CimChildJobBase.cs copies it), so one connection cannot start threads
    without bound."""
    emu.settings.quotas.plugin_max_concurrent_commands_per_shell = 2
    wsman = psrp_wsman(emu)
    try:
        with wsman, RunspacePool(wsman) as pool:
            running = []
            for _ in range(2):
                ps = PowerShell(pool)
                ps.add_script("Start-Sleep -Seconds 2; 'done'")
                ps.begin_invoke()
                running.append(ps)
            third = PowerShell(pool)
            third.add_script("'third'")
            with pytest.raises(WSManFaultError) as caught:
                third.begin_invoke()
            assert caught.value.code == 2150859241
            for ps in running:
                assert ps.end_invoke() == ["done"]
            again = PowerShell(pool)
            again.add_script("'again'")
            assert again.invoke() == ["again"]  # a slot is free once they ended
    finally:
        emu.settings.quotas.plugin_max_concurrent_commands_per_shell = type(
            emu.settings.quotas
        )().plugin_max_concurrent_commands_per_shell


def test_processes_beyond_max_processes_per_shell_are_refused_over_winrs(emu: Emulator) -> None:
    """WinRS MaxProcessesPerShell ("Quota Management for Remote Shells"): one more running
    command of the shell is refused with a WSMan fault ([UNCONFIRMED] code, a setting)."""
    emu.settings.quotas.winrs_max_processes_per_shell = 2
    protocol = winrs_protocol(emu)
    shell = protocol.open_shell()
    try:
        slow = [
            protocol.run_command(shell, "powershell", ["-Command", "Start-Sleep -Seconds 2"])
            for _ in range(2)
        ]
        with pytest.raises(WinRMError) as caught:
            protocol.run_command(shell, "powershell", ["-Command", "'third'"])
        assert str(emu.settings.quotas.winrs_max_processes_fault_code) in str(caught.value)
        for command in slow:
            protocol.get_command_output(shell, command)
            protocol.cleanup_command(shell, command)
    finally:
        protocol.close_shell(shell)
        emu.settings.quotas.winrs_max_processes_per_shell = type(
            emu.settings.quotas
        )().winrs_max_processes_per_shell
