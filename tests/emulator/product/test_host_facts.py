"""`HostFacts`: the emulated machine fails the way a real one does when the module is blocked, the
.NET Framework is old, the account is refused or the SMS Provider is on another machine.

Sources: Import-Module under an execution policy — `UnauthorizedAccess`, SecurityError,
PSSecurityException (Windows PowerShell 5.1 transcripts; texts from PowerShell's
Authenticode.resx: Reason_RestrictedMode, Reason_DoNotRun, "is not digitally signed");
`Modules_InsufficientDotNetFrameworkVersion` (ModuleCmdletBase of Windows PowerShell 5.1,
ResourceUnavailable, InvalidOperationException; the module needs 4.7.2 from 2103, PSOV);
CIM errors as `HRESULT 0x…` ids with CimException (WBEM_E_ACCESS_DENIED 0x80041003,
E_ACCESSDENIED 0x80070005); the second hop ("Making the second hop in PowerShell Remoting").
"""

from __future__ import annotations

import pytest

from cmproxy.emulator.api import Emulator
from cmproxy.emulator.engine import SiteEngine, SiteRunspace
from cmproxy.emulator.settings import EmulatorSettings, HostFacts
from cmproxy.emulator.state import SiteState

from ..conftest import ids

IMPORT = "Import-Module ConfigurationManager"


def _runspace(state: SiteState, **host: str | bool) -> SiteRunspace:
    settings = EmulatorSettings(host=HostFacts(**host))  # type: ignore[arg-type]
    return SiteEngine(state, settings, sleep=lambda _s: None).open_runspace("CONTOSO\\admin")


def test_restricted_policy_refuses_the_module(demo_state: SiteState) -> None:
    rs = _runspace(demo_state, execution_policy="Restricted")
    res = rs.run_script(IMPORT)
    (err,) = res.errors
    assert err.fully_qualified_error_id == (
        "UnauthorizedAccess,Microsoft.PowerShell.Commands.ImportModuleCommand"
    )
    assert (err.category, err.exception_type) == (
        "SecurityError",
        "System.Management.Automation.PSSecurityException",
    )
    assert "running scripts is disabled on this system" in err.message
    assert rs.run_script("Get-Module ConfigurationManager").output == []


def test_allsigned_untrusted_publisher_and_unsigned_module(demo_state: SiteState) -> None:
    rs = _runspace(demo_state, execution_policy="AllSigned")
    (err,) = rs.run_script(IMPORT).errors
    assert err.error_id == "UnauthorizedAccess" and "opted not to run" in err.message
    rs = _runspace(demo_state, execution_policy="AllSigned", module_signed=False)
    (err,) = rs.run_script(IMPORT).errors
    assert "is not digitally signed" in err.message
    trusted = _runspace(demo_state, execution_policy="AllSigned", module_publisher_trusted=True)
    assert not trusted.run_script(IMPORT).had_errors
    res = trusted.run_script("Get-ExecutionPolicy")
    assert res.output == ["AllSigned"]


def test_old_dotnet_framework(demo_state: SiteState) -> None:
    rs = _runspace(demo_state, dotnet_framework_version="4.6.2")
    (err,) = rs.run_script(IMPORT).errors
    assert err.error_id == "Modules_InsufficientDotNetFrameworkVersion"
    assert (err.category, err.exception_type) == (
        "ResourceUnavailable",
        "System.InvalidOperationException",
    )
    assert not _runspace(demo_state, dotnet_framework_version="4.7.2").run_script(IMPORT).had_errors


def test_refused_account(demo_state: SiteState) -> None:
    rs = _runspace(demo_state, provider_access_denied=True)
    res = rs.run_script(
        IMPORT + "\nGet-CimInstance -Namespace root\\sms -ClassName SMS_ProviderLocation"
    )
    (err,) = res.errors
    assert err.fully_qualified_error_id.startswith("HRESULT 0x80041003,")
    assert err.category == "PermissionDenied"
    res = rs.run_script("New-PSDrive -Name PS1 -PSProvider CMSite -Root cm-ps1.contoso.com")
    assert "E_ACCESSDENIED" in res.errors[0].message


def test_provider_on_another_machine(demo_state: SiteState) -> None:
    rs = _runspace(demo_state, sms_provider_machine="cm-prov01.contoso.com")
    res = rs.run_script(
        IMPORT + "\n(Get-CimInstance -Namespace root\\sms -ClassName SMS_ProviderLocation).Machine"
        "\n@(Get-PSDrive -Name PS1 -ErrorAction SilentlyContinue).Count"
    )
    assert res.output == ["cm-prov01.contoso.com", 0]  # the drive could not be connected
    res = rs.run_script(
        "Get-CimInstance -ComputerName cm-prov01.contoso.com -Namespace root\\sms "
        "-ClassName SMS_ProviderLocation"
    )
    assert res.errors[0].fully_qualified_error_id.startswith("HRESULT 0x80070005,")
    assert res.errors[0].category == "PermissionDenied"
    delegated = _runspace(
        demo_state, sms_provider_machine="cm-prov01.contoso.com", credentials_delegated=True
    )
    res = delegated.run_script(IMPORT + "\n(Get-PSDrive -Name PS1).Root")
    assert res.output == ["cm-prov01.contoso.com"]


def test_a_blocked_module_is_not_autoloaded_either(demo_state: SiteState) -> None:
    settings = EmulatorSettings(host=HostFacts(execution_policy="AllSigned"))
    engine = SiteEngine(demo_state, settings, sleep=lambda _s: None, autoload_module=True)
    (err,) = engine.open_runspace("u").run_script("Get-CMSite").errors
    assert err.error_id == "CommandNotFoundException"


# -- a machine without the ConfigMgr console ----------------------------------------------


def test_console_not_installed(demo_state: SiteState) -> None:
    engine = SiteEngine(demo_state, sleep=lambda _s: None, console_installed=False)
    rs = engine.open_runspace("CONTOSO\\admin")
    res = rs.run_script(
        "Import-Module ConfigurationManager\n"
        "Import-Module ($env:SMS_ADMIN_UI_PATH + '\\..\\ConfigurationManager.psd1')\n"
        "[string]::IsNullOrEmpty($env:SMS_ADMIN_UI_PATH)\n"
        "Test-Path Env:SMS_ADMIN_UI_PATH\n"
        "@(Get-Module -ListAvailable ConfigurationManager).Count"
    )
    assert res.output == [True, False, 0]
    assert len(res.errors) == 2
    err = res.errors[0]
    assert err.fully_qualified_error_id == (
        "Modules_ModuleNotFound,Microsoft.PowerShell.Commands.ImportModuleCommand"
    )
    assert err.exception_type == "System.IO.FileNotFoundException"
    assert err.category == "ResourceUnavailable"
    assert err.message == (
        "The specified module 'ConfigurationManager' was not loaded because no valid module "
        "file was found in any module directory."
    )
    assert "configurationmanager" not in rs.modules
    assert ids(rs.run_script("Get-CMSite")) == ["CommandNotFoundException"]


def test_console_installed_by_default(engine: SiteEngine) -> None:
    res = engine.open_runspace("u").run_script("$env:SMS_ADMIN_UI_PATH")
    assert res.output and str(res.output[0]).endswith("AdminConsole\\bin\\i386")


def test_emulator_console_option() -> None:
    with pytest.raises(ValueError, match="default engine"):
        Emulator(console_installed=False, engine_factory=SiteEngine)


def test_processor_count_is_the_machines_or_the_cores_imports_share(
    demo_state: SiteState,
) -> None:
    """`[Environment]::ProcessorCount` (.NET Environment.ProcessorCount: the logical processors
    available to the process) answers the host's `logical_processors` (16 by default:
    Microsoft's recommended hardware for a stand-alone primary site server with its database),
    or, when the costs model imports sharing the provider's cores, those cores: one machine,
    one count."""
    script = "[Environment]::ProcessorCount"
    assert _runspace(demo_state).run_script(script).output == [16]
    settings = EmulatorSettings(host=HostFacts(logical_processors=6))
    rs = SiteEngine(demo_state, settings, sleep=lambda _s: None).open_runspace("CONTOSO\\admin")
    assert rs.run_script(script).output == [6]
    settings.costs.provider_cores = 4
    assert rs.run_script(script).output == [4]
    (err,) = [rs.run_script("[Environment]::NoSuchProperty").terminating]
    assert err is not None and err.fully_qualified_error_id == "NotSupportedByEmulator"
