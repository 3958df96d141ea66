"""Parameter binding: PowerShell's error ids and texts, sets, prefixes, aliases, positions."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cmproxy.emulator.engine import SiteRunspace
from cmproxy.emulator.engine.values import SWITCH_PRESENT, CommandSpec, InvocationResult
from cmproxy.emulator.state import SiteState

from ..conftest import ids, unsupported

Run = Callable[[str], InvocationResult]

SSS = "Microsoft.ConfigurationManagement.Cmdlets.HS.Commands.SetSiteSystemServerCommand"


def term(run: Run, script: str) -> str:
    """The FullyQualifiedErrorId of the (statement-)terminating error a one-liner raised."""
    res = run("$ErrorActionPreference = 'Stop'\n" + script)
    assert res.terminating is not None, res
    return res.terminating.fully_qualified_error_id


def test_named_parameter_not_found(run: Run) -> None:
    res = run("Set-CMSiteSystemServer -SiteSystemServerName x -Foo 1")
    [err] = res.errors
    assert err.fully_qualified_error_id == f"NamedParameterNotFound,{SSS}"
    assert err.message == "A parameter cannot be found that matches parameter name 'Foo'."
    assert err.exception_type == "System.Management.Automation.ParameterBindingException"


def test_ambiguous_parameter(run: Run) -> None:
    res = run("Set-CMSiteSystemServer -SiteSystemServerName x -E $true")
    [err] = res.errors
    assert err.error_id == "AmbiguousParameter"
    assert err.message.startswith(
        "Parameter cannot be processed because the parameter name 'E' is ambiguous. "
        "Possible matches include: -EnableProxy"
    )


def test_unambiguous_prefix_and_aliases(run: Run, demo_state: SiteState) -> None:
    res = run(
        "Set-CMSiteSystemServer -ServerName cm-ps1-dp02.contoso.com -SiteC PS1 -EnablePr $true "
        "-ProxyServerN p.contoso.com -ProxyServerP '3128'"
    )
    assert not res.had_errors, res
    props = demo_state.server_props("PS1", "cm-ps1-dp02.contoso.com")
    assert props["UseProxy"].value == 1
    assert props["ProxyName"].value2 == "p.contoso.com"
    assert props["ProxyServerPort"].value == 3128


def test_positional_parameter(run: Run) -> None:
    res = run("Get-CMSiteSystemServer cm-ps1-dp01.contoso.com | ForEach-Object { $_.SiteCode }")
    assert res.output == ["PS1"]
    res = run("Get-CMSiteSystemServer a b")
    assert res.errors[0].error_id == "PositionalParameterNotFound"


def test_ambiguous_parameter_set_input_object_with_site_code(run: Run) -> None:
    script = (
        "$s = Get-CMSiteSystemServer -SiteSystemServerName cm-ps1-dp01.contoso.com\n"
        "Set-CMSiteSystemServer -InputObject $s -SiteCode PS1 -EnableProxy $false"
    )
    res = run(script)
    [err] = res.errors
    assert err.fully_qualified_error_id == f"AmbiguousParameterSet,{SSS}"
    assert err.message == "Parameter set cannot be resolved using the specified named parameters."


def test_piped_input_with_site_code_misses_the_name(run: Run) -> None:
    script = (
        "Get-CMSiteSystemServer -SiteSystemServerName cm-ps1-dp01.contoso.com | "
        "Set-CMSiteSystemServer -SiteCode PS1 -EnableProxy $false"
    )
    res = run(script)
    assert res.errors[0].error_id == "MissingMandatoryParameter"


def test_validation_range(run: Run, demo_state: SiteState) -> None:
    res = run(
        "Set-CMSiteSystemServer -SiteSystemServerName cm-ps1-dp01.contoso.com -SiteCode PS1 "
        "-EnableProxy $true -ProxyServerName p -ProxyServerPort 0"
    )
    [err] = res.errors
    assert err.error_id == "ParameterArgumentValidationError"
    assert err.message == (
        "Cannot validate argument on parameter 'ProxyServerPort'. The 0 argument is less than "
        "the minimum allowed range of 1. Supply an argument that is greater than or equal to 1 "
        "and then try the command again."
    )
    res = run("Set-CMSiteSystemServer -SiteSystemServerName x -ProxyServerPort 70000")
    assert "greater than the maximum allowed range of 65535" in res.errors[0].message
    assert demo_state.server_props("PS1", "cm-ps1-dp01.contoso.com")["UseProxy"].value == 0


def test_validate_not_null_or_empty(run: Run) -> None:
    res = run("Set-CMSiteSystemServer -SiteSystemServerName x -ProxyServerName ''")
    assert res.errors[0].error_id == "ParameterArgumentValidationError"
    assert "The argument is null or empty." in res.errors[0].message


def test_missing_mandatory(rs: SiteRunspace) -> None:
    r = rs.invoke([CommandSpec("New-CMAccount", parameters=(("UserName", "CONTOSO\\a"),))])
    assert r.terminating is not None
    assert r.terminating.error_id == "MissingMandatoryParameter"
    assert r.terminating.message == (
        "Cannot process command because of one or more missing mandatory parameters: Password."
    )


def test_transformation_errors(run: Run) -> None:
    res = run("Set-CMSiteSystemServer -SiteSystemServerName x -ProxyServerPort abc")
    assert res.errors[0].error_id == "ParameterArgumentTransformationError"
    assert 'Cannot convert value "abc" to type "System.UInt32"' in res.errors[0].message
    res = run("Set-CMSiteSystemServer -SiteSystemServerName x -EnableProxy 'True'")
    assert res.errors[0].error_id == "ParameterArgumentTransformationError"
    assert "Boolean parameters accept only Boolean values and numbers" in res.errors[0].message


def test_secure_string_required(run: Run, demo_state: SiteState) -> None:
    res = run("New-CMAccount -UserName CONTOSO\\new -Password 'Sup3rSecret!'")
    [err] = res.errors
    assert err.error_id == "ParameterArgumentTransformationError"
    assert "Sup3rSecret" not in err.message
    assert "System.Security.SecureString" in err.message
    res = run(
        "$pw = ConvertTo-SecureString 'Sup3rSecret!' -AsPlainText -Force\n"
        "New-CMAccount -UserName CONTOSO\\new -Password $pw | ForEach-Object { $_.UserName }"
    )
    assert res.output == ["CONTOSO\\new"], res
    assert demo_state.check_password("PS1", "CONTOSO\\new", "Sup3rSecret!")
    dump = repr(demo_state.call_log()) + repr(demo_state.snapshot())
    assert "Sup3rSecret" not in dump


def test_ps_type_name_check(run: Run) -> None:
    res = run(
        "Set-CMSiteSystemServer -SiteSystemServerName x -ProxyAccessAccount 'CONTOSO\\svc-proxy'"
    )
    [err] = res.errors
    assert err.error_id == "MismatchedPSTypeName"
    assert "IResultObject#SMS_SCI_Reserved" in err.message


def test_command_not_found(run: Run) -> None:
    res = run("Get-Foo")
    [err] = res.errors
    assert err.fully_qualified_error_id == "CommandNotFoundException"
    assert err.message.startswith(
        "The term 'Get-Foo' is not recognized as the name of a cmdlet, function, script file, "
        "or operable program."
    )


def test_psrp_switch_and_typed_values(rs: SiteRunspace, demo_state: SiteState) -> None:
    r = rs.invoke(
        [
            CommandSpec(
                "Set-CMSiteSystemServer",
                parameters=(
                    ("SiteSystemServerName", "cm-ps1-dp03.contoso.com"),
                    ("SiteCode", "PS1"),
                    ("EnableProxy", True),
                    ("ProxyServerName", "p.contoso.com"),
                    ("ProxyServerPort", "8080"),
                    ("PassThru", SWITCH_PRESENT),
                ),
            )
        ]
    )
    assert r.terminating is None and not r.errors, r
    [obj] = r.output
    assert obj.type_names[0] == "IResultObject#SMS_SCI_SysResUse"
    assert obj.live
    assert (
        demo_state.server_props("PS1", "cm-ps1-dp03.contoso.com")["ProxyServerPort"].value == 8080
    )


def test_error_action_stop_makes_not_found_terminating(run: Run) -> None:
    res = run(
        "Set-CMSiteSystemServer -SiteSystemServerName nope.contoso.com -SiteCode PS1 "
        "-EnableProxy $false; 'after'"
    )
    assert res.output == ["after"]
    assert res.errors[0].error_id == "ItemNotFound"
    res = run(
        "try { Set-CMSiteSystemServer -SiteSystemServerName nope.contoso.com -SiteCode PS1 "
        "-EnableProxy $false -ErrorAction Stop; 'not here' } catch { 'caught' }"
    )
    assert res.output == ["caught"]


@pytest.mark.parametrize("value", ["Bogus"])
def test_error_action_value_validated(run: Run, value: str) -> None:
    res = run(f"Get-CMSite -ErrorAction {value}")
    assert res.errors[0].error_id == "CannotConvertArgumentNoMessage"


# -- splatting ------------------------------------------------------------------------------


F = 'function F {\n  param($A, $B)\n  "$A-$B"\n}\n'


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("$h = @{ A = 7 }\nF @h", ["7-"]),
        ("$h = @{ A = 7 }\nF @h -B 3", ["7-3"]),
        ("$h = @{ B = 7 }\nF 1 @h", ["1-7"]),
        ("$a = @(5, 6)\nF @a", ["5-6"]),
        ("$script:h = @{ A = 'x' }\nF @script:h", ["x-"]),
        ('$h = @{ A = 7 }\nF @h | ForEach-Object { "got $_" }', ["got 7-"]),
        ("$fn = 'F'\n$h = @{ B = 2 }\n& $fn @h", ["-2"]),
    ],
)
def test_splatting(run: Run, script: str, expected: list[str]) -> None:
    res = run(F + script)
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == expected


def test_splatting_into_a_cmdlet(run: Run) -> None:
    res = run(
        "$p = @{ SiteSystemServerName = 'cm-ps1-dp01.contoso.com'; SiteCode = 'PS1' }\n"
        "(Get-CMSiteSystemServer @p).NetworkOSPath"
    )
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == ["\\\\cm-ps1-dp01.contoso.com"]


def test_simple_function_collects_args(run: Run) -> None:
    res = run('function G { "[$args]" }\nG 1 2 -X 3')
    assert res.output == ["[1 2 -X 3]"]
    advanced = run("function H {\n  [CmdletBinding()]\n  param($A)\n  $A\n}\nH 1 2")
    assert ids(advanced) == ["PositionalParameterNotFound"]


def test_bool_parameter_refuses_strings(run: Run) -> None:
    res = run(
        "$sb = { param([bool]$Flag) $Flag }\n& $sb -Flag 'True'\n& $sb -Flag $true\n& $sb -Flag 0"
    )
    assert res.output == [True, False]
    assert ids(res) == ["ParameterArgumentTransformationError"]


def test_array_parameter_types_keep_their_brackets() -> None:
    """`[string[]]$A` takes several values (the SDK reads several servers at once)."""
    from cmproxy.emulator.engine.runspace import SiteEngine
    from cmproxy.emulator.state import SiteState

    with SiteState(":memory:") as state:
        runspace = SiteEngine(state).open_runspace("t")
        result = runspace.run_script(
            "function F {\n param([string[]]$A)\n $A.Count\n}\nF -A 'x','y'\n"
            "function G {\n param([string]$B)\n $B\n}\nG -B q"
        )
    assert result.output == [2, "q"]


# -- ValueFromRemainingArguments: what the corpus cannot source (tests/emulator/conformance/
# binding.yaml has the behaviours PowerShell's own tests state) --------------------------------


def test_a_typed_remaining_arguments_parameter_given_one_collection_is_not_guessed(
    run: Run,
) -> None:
    """Windows PowerShell 5.1 binds the remaining arguments' list first and unwraps its one
    element only if that fails; whether it fails for a typed parameter is [UNCONFIRMED], so the
    emulator says so instead of picking one reading."""
    script = (
        "function f { param([Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest) "
        "$Rest.Count }\n"
    )
    assert "[UNCONFIRMED]" in unsupported(run, script + "f 'a', 'b'")[0]
    # Several arguments, or one that is not a collection, are the list PowerShell binds.
    assert run(script + "f 'a' 'b' 'c'").output == [3]
    assert run(script + "f 'a'").output == [1]


def test_without_a_remaining_arguments_parameter_a_leftover_is_still_refused(run: Run) -> None:
    """An advanced function with no ValueFromRemainingArguments parameter refuses what nothing
    binds: the first leftover's error."""
    script = "function f { [CmdletBinding()] param($A) $A }\n"
    assert term(run, script + "f 1 2").startswith("PositionalParameterNotFound")
    assert term(run, script + "f 1 -Q 2").startswith("NamedParameterNotFound")
    # The first leftover in command-line order (VerifyArgumentsProcessed: UnboundArguments[0]),
    # though named arguments are bound before positional ones.
    assert term(run, script + "f 1 2 -Q 3").startswith("PositionalParameterNotFound")


def test_with_no_taker_the_first_leftover_on_the_command_line_is_the_error(run: Run) -> None:
    """ParameterBinderController.VerifyArgumentsProcessed reports UnboundArguments[0]: the
    first argument nothing bound, in command-line order, NamedParameterNotFound for a `-Name`
    and PositionalParameterNotFound for a value. Here the remaining-arguments parameter is in a
    set the named argument ruled out, so nothing takes the leftovers."""
    script = (
        "function f { param([Parameter(ParameterSetName = 'one')] $A, "
        "[Parameter(ParameterSetName = 'two', ValueFromRemainingArguments = $true)] $Rest) "
        "$A }\n"
    )
    assert term(run, script + "f -A 1 2 -Q 3").startswith("PositionalParameterNotFound")
    assert term(run, script + "f -A 1 -Q 3 2").startswith("NamedParameterNotFound")


def test_pipeline_input_by_property_name_is_refused_not_ignored(run: Run) -> None:
    """ValueFromPipelineByPropertyName binds a pipeline object's property of the parameter's
    name (ParameterBinding.Tests.ps1, "Value from pipeline by property name"). The emulator
    does not bind by property name; ignoring the attribute left the parameter silently empty,
    so pipeline input to such a command is refused (NotSupportedByEmulator). Named arguments
    bind as always."""
    script = (
        "function get-foo { param([Parameter(ValueFromPipelineByPropertyName = $true)] $foo) "
        "$foo }\n"
    )
    refused, _ = unsupported(run, script + "[pscustomobject]@{ foo = 10 } | get-foo")
    assert "ValueFromPipelineByPropertyName" in refused
    assert run(script + "get-foo -foo 11").output == [11]
