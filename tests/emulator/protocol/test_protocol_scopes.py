"""UseLocalScope over the wire: the real pypsrp client sends CreatePipeline Commands with and
without it, and the emulated runspace scopes the script as PowerShell does
(src/System.Management.Automation/engine/hostifaces/Command.cs: `UseLocalScope =>
_useLocalScope ?? false`; absent or false, the script is dot-sourced into the global scope)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pypsrp.powershell import PowerShell, RunspacePool

from cmproxy.emulator.api import Emulator

from ..clients import psrp_wsman

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(receive_timeout=3) as emulator:
        yield emulator


def _run(pool: RunspacePool, script: str, local: bool | None, **params: Any) -> list[Any]:
    ps = PowerShell(pool)
    ps.add_script(script, use_local_scope=local)
    for name, value in params.items():
        ps.add_parameter(name, value)
    out = ps.invoke()
    errors = [str(e) for e in ps.streams.error]
    return [*out, *errors]


@pytest.mark.parametrize(("local", "left_behind"), [(None, True), (False, True), (True, False)])
def test_a_scripts_typed_parameter_outlives_it_unless_local(
    emu: Emulator, local: bool | None, left_behind: bool
) -> None:
    wsman = psrp_wsman(emu, auth="ntlm", read_timeout=30, no_proxy=False)
    with RunspacePool(wsman) as pool:
        assert _run(pool, "param([int]$Port) $Port", local, Port=80) == [80]
        assert _run(pool, "$null -eq $Port", None) == [not left_behind]
        # Left behind, the variable keeps its [int] constraint in the global scope.
        after = _run(pool, "$Port = 1, 2; 'next'", None)
        if left_behind:
            assert after[0] == "next"
            assert after[1] == (
                'Cannot convert the "System.Object[]" value of type "System.Object[]" to type '
                '"System.Int32".'
            )
        else:
            assert after == ["next"]
