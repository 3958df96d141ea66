"""Regression tests: splatting, `foreach` over nothing, the call operator and script blocks,
method arguments, one-line functions, the "console not installed" machine, WinRS stdin lines,
and concurrent writes under the cost model (behaviour as Windows PowerShell 5.1)."""

from __future__ import annotations

import threading
import time

import pytest

from cmproxy.emulator.api import Emulator
from cmproxy.emulator.cmd_shell import stdin_lines
from cmproxy.emulator.engine import SiteEngine, SiteRunspace
from cmproxy.emulator.engine.values import InvocationResult
from cmproxy.emulator.serve import build_parser
from cmproxy.emulator.settings import EmulatorSettings
from cmproxy.emulator.state import SiteState

from .conftest import Run

F = 'function F {\n  param($A, $B)\n  "$A-$B"\n}\n'


def ids(res: InvocationResult) -> list[str]:
    return [e.fully_qualified_error_id for e in res.errors]


# -- splatting ------------------------------------------------------------------------------


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


def test_one_line_function_with_param_block(run: Run) -> None:
    """The probe tests/sdk used: `function F { param($A) $A }` on one line is valid."""
    res = run("function F { param($A) $A }\n$h = @{ A = 7 }\nF @h")
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == [7]


def test_simple_function_collects_args(run: Run) -> None:
    res = run('function G { "[$args]" }\nG 1 2 -X 3')
    assert res.output == ["[1 2 -X 3]"]
    advanced = run("function H {\n  [CmdletBinding()]\n  param($A)\n  $A\n}\nH 1 2")
    assert ids(advanced) == ["PositionalParameterNotFound"]


# -- foreach over nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    ["$null", "(Write-Output)", "Nothing", "$undefined", "(Nothing)", "Get-CMSite -SiteCode XXX"],
)
def test_foreach_over_nothing_iterates_zero_times(run: Run, source: str) -> None:
    res = run(f"function Nothing {{ }}\n$n = 0\nforeach ($x in {source}) {{ $n++ }}\n$n")
    assert res.output == [0]


@pytest.mark.parametrize(("source", "count"), [("@($null)", 1), ("1, 2", 2), ("'a'", 1)])
def test_foreach_over_values(run: Run, source: str, count: int) -> None:
    res = run(f"$n = 0\nforeach ($x in {source}) {{ $n++ }}\n$n")
    assert res.output == [count]


@pytest.mark.parametrize(
    "body",
    [
        "$h[$x.Name] = $x",  # the indexing idiom (one Python loop in the emulator)
        "$h[$x.Name] = $x; $null = 0",  # the same, evaluated statement by statement
    ],
)
def test_indexing_objects_by_a_property(run: Run, body: str) -> None:
    """Keys are case-insensitive (the later object wins, under the first key's spelling),
    and the loop variable keeps the last item, as in PowerShell."""
    res = run(
        "$items = @([pscustomobject]@{Name = 'A'; V = 1}, [pscustomobject]@{Name = 'b'; V = 2},"
        " [pscustomobject]@{Name = 'a'; V = 3})\n"
        f"$h = @{{}}\nforeach ($x in $items) {{ {body} }}\n"
        "$h.Count; $h['A'].V; $h['B'].V; ($h.Keys | Sort-Object) -join ','; $x.V"
    )
    assert res.terminating is None
    assert res.output == [2, 3, 2, "A,b", 3]


def test_literals_are_constant_and_expandable_strings_are_not(run: Run) -> None:
    """Literal values are derived once per node; a string with `$x` or `$( )` inside is
    evaluated every time (here, on each pass of the loop)."""
    res = run(
        "$out = @()\nforeach ($x in 1, 2) {\n"
        '    $out += "v$x"; $out += "s$($x * 10)"; $out += "plain"; $out += \'q\'; $out += 7\n'
        "}\n$out -join ','"
    )
    assert res.output == ["v1,s10,plain,q,7,v2,s20,plain,q,7"]


# -- call operator and script blocks --------------------------------------------------------


def test_call_operator_on_script_blocks(run: Run) -> None:
    res = run(
        '$sb = { param($A, [int]$B = 2) "$A $B [$args]" }\n'
        "$h = @{ A = 'x' }\n"
        "& $sb @h\n"
        "& $sb 1 3 4\n"
        '& { "plain $args" } p q\n'
        "1, 2 | & { $input | ForEach-Object { $_ * 10 } }\n"
        "& 'Write-Output' direct\n"
        "$t = @{ sb = { 'member' } }\n"
        "& $t.sb"
    )
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == ["x 2 []", "1 3 [4]", "plain p q", 10, 20, "direct", "member"]


def test_call_operator_scope_and_bad_callee(run: Run) -> None:
    res = run("$v = 1\n& { $v = 2; $v }\n$v\n& $null\n'after'")
    assert res.output == [2, 1, "after"]
    assert ids(res) == ["BadExpression"]


def test_scriptblock_create_binds_values_as_parameters(run: Run) -> None:
    """The text comes from the package; values reach it only through parameter binding."""
    res = run(
        "$text = 'param([string]$Name, [int]$Port) \"$Name`:$Port\"'\n"
        "$sb = [scriptblock]::Create($text)\n"
        "$p = @{ Name = \"x'; Remove-Item y; '\"; Port = 80 }\n"
        "& $sb @p\n"
        "$sb.Invoke('inv', 1)\n"
        "& ([scriptblock]::Create('Get-Location | Out-Null; \"ok\"'))"
    )
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == ["x'; Remove-Item y; ':80", "inv:1", "ok"]


def test_scriptblock_create_syntax_error(run: Run) -> None:
    res = run("try { [scriptblock]::Create('if (') } catch { $_.FullyQualifiedErrorId }")
    assert res.output == ["ParseException"]


def test_scriptblock_create_empty(run: Run) -> None:
    res = run("$sb = [scriptblock]::Create('')\n& $sb\n\"[$sb]\"")
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == ["[]"]


def test_serve_no_console_flag() -> None:
    assert build_parser().parse_args(["serve", "--no-console"]).no_console is True
    assert build_parser().parse_args(["serve"]).no_console is False


def test_bool_parameter_refuses_strings(run: Run) -> None:
    res = run(
        "$sb = { param([bool]$Flag) $Flag }\n& $sb -Flag 'True'\n& $sb -Flag $true\n& $sb -Flag 0"
    )
    assert res.output == [True, False]
    assert ids(res) == ["ParameterArgumentTransformationError"]


def test_method_arguments(run: Run) -> None:
    res = run(
        "$t = 'abcdef'\n"
        "[string]::IsNullOrEmpty($t)\n"
        "[string]::Join('-', 'a', 'b')\n"
        "$t.Substring(1, 1 + 1)\n"
        "$t.Replace('a', 'X')"
    )
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == [False, "a-b", "bc", "Xbcdef"]


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


# -- WinRS stdin ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("a\r\nb\r\n", ["a", "b"]),
        ("a\nb\rc", ["a", "b", "c"]),
        ("a\r\n\r\nb", ["a", "", "b"]),
        ("", []),
        ("\r\n", [""]),
        # Only CR/LF end a line; splitlines() would also split at all of these.
        (
            "x\vy\fz\x1c1\x1d2\x1e3\x854\u20285\u20296\r\n",
            ["x\vy\fz\x1c1\x1d2\x1e3\x854\u20285\u20296"],
        ),
    ],
)
def test_stdin_lines(text: str, lines: list[str]) -> None:
    assert stdin_lines(text) == lines


# -- concurrent writes under the cost model -----------------------------------------------


def _timed_writes(state: SiteState, targets: list[tuple[str, str]], serialise: bool) -> float:
    settings = EmulatorSettings()
    settings.costs.set_cmdlet = 0.3
    settings.costs.serialise_site_writes = serialise
    engine = SiteEngine(state, settings)
    runspaces = []
    for site, _server in targets:
        rs = engine.open_runspace("CONTOSO\\admin")
        assert not rs.run_script(
            f"Import-Module ConfigurationManager; Set-Location {site}:"
        ).had_errors
        runspaces.append(rs)
    results: list[InvocationResult] = []

    def write(rs: SiteRunspace, site: str, server: str) -> None:
        script = (
            f"Set-CMSiteSystemServer -SiteSystemServerName {server} -SiteCode {site} "
            "-EnableProxy $true -ProxyServerName proxy.example.com -ProxyServerPort 3128"
        )
        results.append(rs.run_script(script))

    threads = [
        threading.Thread(target=write, args=(rs, site, server))
        for rs, (site, server) in zip(runspaces, targets, strict=True)
    ]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert all(not r.had_errors for r in results), [r.errors for r in results]
    for site, server in targets:
        assert state.server_props(site, server)["ProxyName"].value2 == "proxy.example.com"
    return elapsed


def test_writes_to_different_sites_run_in_parallel(demo_state: SiteState) -> None:
    targets = [("PS1", "cm-ps1-dp01.contoso.com"), ("PS2", "cm-ps2-dp01.contoso.com")]
    assert _timed_writes(demo_state, targets, serialise=True) < 0.5


def test_writes_to_one_site_are_serialised(demo_state: SiteState) -> None:
    targets = [("PS1", "cm-ps1-dp01.contoso.com"), ("PS1", "cm-ps1-dp02.contoso.com")]
    assert _timed_writes(demo_state, targets, serialise=True) >= 0.6
    assert _timed_writes(demo_state, targets, serialise=False) < 0.5


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


def test_output_before_return_is_kept(run: Run) -> None:
    """PowerShell keeps what a script wrote before `return`, in loops too."""
    script = "'a'\nforeach ($i in 1..3) { $i; if ($i -eq 2) { return 'r' } }\n'never'"
    assert run(script).output == ["a", 1, 2, "r"]
