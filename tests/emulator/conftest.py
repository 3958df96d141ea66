"""Engine-level fixtures (no network): a seeded state, an engine and a runspace on `PS1:`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from cmproxy.emulator.engine import SiteEngine, SiteRunspace
from cmproxy.emulator.engine.values import InvocationResult
from cmproxy.emulator.seeds import apply_seed
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.emulator.state import SiteState

Run = Callable[[str], InvocationResult]


def out(run: Run, script: str) -> list[object]:
    """What `script` wrote to the output; it must run without any error."""
    res = run(script)
    assert res.terminating is None, res.terminating
    assert not res.errors, res.errors
    return res.output


def unsupported(run: Run, script: str) -> tuple[str, list[object]]:
    """The message of the NotSupportedByEmulator `script` must stop with, and what it wrote
    before."""
    res = run(script)
    assert res.terminating is not None, res
    assert res.terminating.fully_qualified_error_id == "NotSupportedByEmulator"
    return res.terminating.message, res.output


def ids(res: InvocationResult) -> list[str]:
    """The FullyQualifiedErrorId of each non-terminating error a script wrote, in order."""
    return [e.fully_qualified_error_id for e in res.errors]


@pytest.fixture
def demo_state() -> Iterator[SiteState]:
    state = SiteState()
    apply_seed(state, "demo")
    yield state
    state.close()


@pytest.fixture
def emu_settings() -> EmulatorSettings:
    return EmulatorSettings()


@pytest.fixture
def engine(demo_state: SiteState, emu_settings: EmulatorSettings) -> SiteEngine:
    return SiteEngine(demo_state, emu_settings, sleep=lambda _s: None)


@pytest.fixture
def rs(engine: SiteEngine) -> SiteRunspace:
    """A runspace with the module imported and the location on `PS1:`."""
    runspace = engine.open_runspace("CONTOSO\\admin")
    res = runspace.run_script("Import-Module ConfigurationManager; Set-Location PS1:")
    assert not res.had_errors, res
    return runspace


@pytest.fixture
def run(rs: SiteRunspace) -> Run:
    return rs.run_script
