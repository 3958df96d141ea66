"""The session bootstrap says exactly what is wrong: one exception class per failure mode, its
message naming the cause and the fix, through the real pypsrp / pywinrm clients against an
emulator set up to fail that way (`HostFacts`, docs/emulator.md). And when it works,
`Session.bootstrap` says which path it took (for `cmproxy doctor`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest

from cmproxy import (
    BootstrapInfo,
    ConsoleNotInstalledError,
    DotNetFrameworkError,
    ModuleBlockedError,
    ProviderAccessDeniedError,
    SecondHopError,
    SessionError,
    SiteDriveError,
)
from cmproxy.emulator.api import Emulator
from cmproxy.emulator.engine import SiteEngine
from cmproxy.emulator.settings import EmulatorSettings, HostFacts
from cmproxy.session import Session

from .targets import RECEIVE_TIMEOUT, connection_info

MODULE = (
    r"C:\Program Files (x86)\Microsoft Endpoint Manager\AdminConsole\bin\ConfigurationManager.psd1"
)


def _no_auto_drive(state: Any, settings: EmulatorSettings) -> SiteEngine:
    """A machine whose account never opened the console: no site drive after the import."""
    return SiteEngine(state, settings, auto_site_drive=False)


def _open_fails(
    transport: str,
    error: type[SessionError],
    *,
    host: HostFacts | None = None,
    engine_factory: Callable[[Any, EmulatorSettings], Any] | None = None,
    console_installed: bool = True,
    **info: Any,
) -> str:
    settings = EmulatorSettings(host=host or HostFacts())
    with Emulator(
        seed="demo",
        receive_timeout=RECEIVE_TIMEOUT,
        settings=settings,
        engine_factory=engine_factory,
        console_installed=console_installed,
    ) as emu:
        with pytest.raises(SessionError) as caught:
            Session(connection_info(emu, transport, "ntlm", **info)).open()
        assert not [c for c in emu.state.call_log() if c.wrote]
    assert type(caught.value) is error, caught.value
    return str(caught.value)


def _opened(transport: str, *, host: HostFacts | None = None, **kwargs: Any) -> BootstrapInfo:
    settings = EmulatorSettings(host=host or HostFacts())
    factory = kwargs.pop("engine_factory", None)
    with (
        Emulator(
            seed="demo", receive_timeout=RECEIVE_TIMEOUT, settings=settings, engine_factory=factory
        ) as emu,
        Session(connection_info(emu, transport, "ntlm", **kwargs)) as session,
    ):
        assert session.bootstrap is not None
        session.read_state(["cm-ps1-dp01.contoso.com"])  # the cmdlets work
        return session.bootstrap


# -- failure modes ------------------------------------------------------------------------------


def test_module_missing(transport_name: str) -> None:
    message = _open_fails(transport_name, ConsoleNotInstalledError, console_installed=False)
    assert "module was not found" in message  # cause
    assert "Install the Configuration Manager console" in message and "module_path" in message


def test_allsigned_with_an_untrusted_publisher(transport_name: str) -> None:
    host = HostFacts(execution_policy="AllSigned")
    message = _open_fails(transport_name, ModuleBlockedError, host=host)
    assert "AllSigned" in message and "opted not to run" in message  # cause, as PowerShell says
    assert "TrustedPublisher" in message and "RemoteSigned" in message  # fixes


def test_allsigned_with_an_unsigned_module(transport_name: str) -> None:
    host = HostFacts(execution_policy="AllSigned", module_signed=False)
    message = _open_fails(transport_name, ModuleBlockedError, host=host)
    assert "is not digitally signed" in message and "RemoteSigned" in message


def test_dotnet_framework_too_old(transport_name: str) -> None:
    host = HostFacts(dotnet_framework_version="4.6.2")
    message = _open_fails(transport_name, DotNetFrameworkError, host=host)
    assert "4.6.2" in message and "4.7.2" in message  # what is there, what is needed
    assert "install .NET Framework 4.8" in message


def test_site_drive_missing_and_cannot_be_created(transport_name: str) -> None:
    message = _open_fails(
        transport_name,
        SiteDriveError,
        engine_factory=_no_auto_drive,
        provider_machine_name="cm-nosuch.contoso.com",
    )
    assert "could not create the PS1: drive on cm-nosuch.contoso.com" in message
    assert "provider_machine_name" in message


def test_access_denied_by_the_sms_provider(transport_name: str) -> None:
    host = HostFacts(provider_access_denied=True)
    message = _open_fails(transport_name, ProviderAccessDeniedError, host=host)
    assert "refused the account" in message and "Access denied" in message
    assert "administrative user" in message


def test_sms_provider_on_another_machine_is_a_second_hop(transport_name: str) -> None:
    host = HostFacts(sms_provider_machine="cm-prov01.contoso.com")
    message = _open_fails(transport_name, SecondHopError, host=host)
    assert "cm-prov01.contoso.com" in message and "second hop" in message  # cause
    assert "directly" in message and "CredSSP" in message and "delegation" in message  # fix


# -- the path taken -----------------------------------------------------------------------------


def test_bootstrap_says_where_the_module_and_drive_came_from(transport_name: str) -> None:
    boot = _opened(transport_name)
    assert boot.module_source == "SMS_ADMIN_UI_PATH"
    assert boot.drive_source == "Existing"  # the module connected it at import
    assert boot.computer_name == "CM-PS1"
    assert (boot.provider_machine, boot.provider_is_local) == ("cm-ps1.contoso.com", True)
    assert boot.execution_policy == "RemoteSigned"
    assert boot.to_dict()["site_code"] == "PS1"


def test_bootstrap_with_module_path_and_a_created_drive(transport_name: str) -> None:
    boot = _opened(transport_name, module_path=MODULE, engine_factory=_no_auto_drive)
    assert boot.module_source == "ModulePath"
    assert boot.drive_source == "Created" and boot.drive_root == "cm-ps1.contoso.com"


def test_a_remote_provider_with_delegation_works_and_is_named(transport_name: str) -> None:
    host = HostFacts(sms_provider_machine="cm-prov01.contoso.com", credentials_delegated=True)
    boot = _opened(transport_name, host=host)
    assert (boot.provider_machine, boot.provider_is_local) == ("cm-prov01.contoso.com", False)
    assert boot.drive_root == "cm-prov01.contoso.com"


def test_later_bootstraps_reuse_the_provider_found_by_the_first(transport_name: str) -> None:
    """The first bootstrap finds the SMS Provider (SMS_ProviderLocation); the bootstraps of later
    runspaces (PSRP pools) and processes (every WinRS step) are given it, so they do not ask
    WMI again on every step."""
    with Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu:
        assert emu.state is not None
        with Session(connection_info(emu, transport_name, "ntlm")) as session:
            assert session.bootstrap is not None
            assert session.bootstrap.provider_machine == "cm-ps1.contoso.com"
            emu.state.clear_call_log()
            session.read_state(["cm-ps1-dp01.contoso.com"])
            session.warm(2)
            session.read_state(["cm-ps1-dp02.contoso.com"])
            commands = [c.command for c in emu.state.call_log()]
    assert "Get-CMSiteRole" in commands
    assert "Get-CimInstance" not in commands


def test_no_site_code_on_a_provider_of_several_sites_names_their_codes(
    transport_name: str,
) -> None:
    """The demo provider has three CMSite drives (CAS, PS1, PS2): without a site code the
    bootstrap cannot guess, and the error carries the codes it found (the CLI offers them)."""
    with Emulator(seed="demo", receive_timeout=RECEIVE_TIMEOUT) as emu:
        info = attrs.evolve(connection_info(emu, transport_name, "ntlm"), site_code=None)
        with pytest.raises(SiteDriveError) as caught:
            Session(info).open()
    assert caught.value.site_codes == ("CAS", "PS1", "PS2")
    assert "found 3 CMSite drives" in str(caught.value)
