"""Fixtures for the SDK's end-to-end tests: an emulated site per test, reached through every
transport × authentication combination the SDK promises (Basic over HTTPS, NTLM and
Negotiate with message encryption over HTTP), and a session opened on it.

Only 127.0.0.1 is contacted; the top-level conftest sets NO_PROXY.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

from cmproxy.connection import ConnectionInfo
from cmproxy.emulator.api import Emulator
from cmproxy.session import Session

RECEIVE_TIMEOUT = 3.0

#: (auth, https?) — Basic only over TLS; NTLM/Negotiate over HTTP with message encryption.
AUTH_MODES = {
    "basic-https": ("basic", True),
    "ntlm-http-encrypted": ("ntlm", False),
    "negotiate-http-encrypted": ("negotiate", False),
}
TRANSPORTS = ("psrp", "winrm")
COMBOS = [(t, a) for t in TRANSPORTS for a in AUTH_MODES]


# -- test-only workaround for an emulator engine bug ----------------------------------------
#
# EMULATOR BUG (reported): `Command @hashtable` is bound as one positional hashtable argument,
# because tree-sitter wraps a splatted variable in array_literal_expression > unary_expression
# and the engine's `Evaluator.command_args` only recognises a bare `variable` child. The WinRS
# bootstrap relies on splatting (real PowerShell does it), so until the engine is fixed these
# tests teach it splatting. The probe below switches the patch off once the engine gets it.


def _engine_splats() -> bool:
    from cmproxy.emulator.engine.runspace import SiteEngine
    from cmproxy.emulator.state import SiteState

    with SiteState(":memory:") as state:
        runspace = SiteEngine(state).open_runspace("probe")
        result = runspace.run_script("function F { param($A) $A }\n$h = @{ A = 7 }\nF @h")
    return [int(x) for x in result.output if isinstance(x, int)] == [7]


@attrs.define
class _Splat:
    value: Any


def _patch_splatting(monkeypatch: pytest.MonkeyPatch) -> None:
    from cmproxy.emulator.engine import interp
    from cmproxy.emulator.engine.binding import Arg

    original_argument = interp.Evaluator.argument
    original_args = interp.Evaluator.command_args

    def argument(self: Any, n: Any) -> Any:
        text = self.text(n)
        if text.startswith("@") and text[1:].replace("_", "").isalnum():
            return _Splat(self.variable_value(text[1:]))
        return original_argument(self, n)

    def command_args(self: Any, elements: Any) -> list[Any]:
        out: list[Any] = []
        for arg in original_args(self, elements):
            if arg.name is None and isinstance(arg.value, _Splat):
                value = arg.value.value
                if isinstance(value, dict):
                    out += [Arg(str(k), v, text=f"-{k}") for k, v in value.items()]
                elif isinstance(value, list):
                    out += [Arg(None, v) for v in value]
                continue
            out.append(arg)
        return out

    monkeypatch.setattr(interp.Evaluator, "argument", argument)
    monkeypatch.setattr(interp.Evaluator, "command_args", command_args)


_SPLATS: bool | None = None


@pytest.fixture
def engine_splatting(monkeypatch: pytest.MonkeyPatch) -> None:
    global _SPLATS  # noqa: PLW0603 - probe once per run
    if _SPLATS is None:
        _SPLATS = _engine_splats()
    if not _SPLATS:
        _patch_splatting(monkeypatch)


# -- sites and sessions ---------------------------------------------------------------------


@attrs.frozen
class Target:
    """A running emulator and how to reach it."""

    emulator: Emulator
    info: ConnectionInfo

    def session(self, **changes: Any) -> Session:
        return Session(self.info.evolve(**changes) if changes else self.info)


def connection_info(emu: Emulator, transport: str, auth: str, **extra: Any) -> ConnectionInfo:
    return ConnectionInfo(
        server=emu.host,
        port=emu.port,
        scheme=emu.scheme,
        auth=auth,
        username=emu.username,
        password=emu.password,
        ca_cert=emu.cert_path,
        message_encryption="auto" if emu.https else "always",
        transport=transport,
        site_code="PS1",
        read_timeout=30,
        operation_timeout=10,
        ignore_proxy=True,
        **extra,
    )


@pytest.fixture(params=COMBOS, ids=[f"{t}-{a}" for t, a in COMBOS])
def target(request: pytest.FixtureRequest, engine_splatting: None) -> Iterator[Target]:
    transport, mode = request.param
    auth, https = AUTH_MODES[mode]
    with Emulator(seed="demo", https=https, receive_timeout=RECEIVE_TIMEOUT) as emu:
        yield Target(emu, connection_info(emu, transport, auth))


@pytest.fixture(params=TRANSPORTS)
def transport_name(request: pytest.FixtureRequest, engine_splatting: None) -> str:
    return str(request.param)


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


EngineFactory = Callable[[Any, Any], Any]


def engine_without_console(state: Any, settings: Any) -> Any:
    """An emulated server where the ConfigMgr console (and its module) is not installed.

    EMULATOR GAP (reported): the emulator has no setting for this, so the test replaces
    Import-Module with one that finds no ConfigurationManager module, as Windows would.
    """
    from cmproxy.emulator.engine.runspace import SiteEngine

    engine = SiteEngine(state, settings)
    command = engine.builtins["import-module"]

    def not_found(ctx: Any, a: dict[str, Any], items: Any) -> Any:
        for name in a["Name"]:
            ctx.write_error(
                ctx.error(
                    f"The specified module '{name}' was not loaded because no valid module "
                    "file was found in any module directory.",
                    "Modules_ModuleNotFound",
                    category="ResourceUnavailable",
                    exception="System.IO.FileNotFoundException",
                    target=name,
                )
            )

    engine.builtins["import-module"] = attrs.evolve(command, run=not_found)
    return engine


def live_info() -> ConnectionInfo | None:
    """The real site of the live contract suite, when CMPROXY_LIVE_SERVER is set."""
    if not os.environ.get("CMPROXY_LIVE_SERVER"):
        return None
    return ConnectionInfo.from_env("CMPROXY_LIVE_")
