"""The script subset: evaluated by a real parser, never pattern-matched."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmproxy.emulator.engine import SiteRunspace
from cmproxy.emulator.engine.values import PSObj
from cmproxy.emulator.state import SiteState

from ..conftest import Run, ids, out, unsupported

#: Windows PowerShell 5.1's texts of two ParserStrings (5.1 console output; PowerShell 7 gave
#: `&&` and `||` a meaning, about_Pipeline_Chain_Operators).
_CHAIN = "The token '{}' is not a valid statement separator in this version."
_FIRST = "Expressions are only allowed as the first element of a pipeline."


def test_literals_and_arithmetic(run: Run) -> None:
    assert out(run, "1 + 2; 'a' + 'b'; 5 - 7; 2 * 3; 7 % 4; -3") == [3, "ab", -2, 6, 3, -3]
    assert out(run, "'it''s'; \"tab`t$null!\"") == ["it's", "tab\t!"]
    assert out(run, "@'\nraw $x\n'@") == ["raw $x"]
    assert out(run, '$n = "w"; @"\nhi $n\n"@') == ["hi w"]


def test_variables_arrays_hashtables(run: Run) -> None:
    script = """
    $a = @(1, 2)
    $a += 3
    $h = @{ Name = 'x'; 'Port' = 80 }
    $h.Extra = $true
    $a.Count; $a[2]; $h.name; $h['PORT']; $h.Count; ,$a | ForEach-Object { $_.Count }
    """
    assert out(run, script) == [3, 3, "x", 80, 3, 3]


def test_expandable_strings_and_subexpressions(run: Run) -> None:
    script = "$o = [pscustomobject]@{ Z = 'zed'; N = 2 }; \"a $($o.Z) b $($o.N + 1)\""
    assert out(run, script) == ["a zed b 3"]


def test_pscustomobject_is_ordered(run: Run) -> None:
    [o] = out(run, "[pscustomobject]@{ B = 1; A = 2; C = 3 }")
    assert isinstance(o, PSObj)
    assert list(o.properties) == ["B", "A", "C"]


def test_casts(run: Run) -> None:
    assert out(run, "[int]'42'; [string]5; [bool]''; [bool]'x'; [uint32]'80'") == [
        42,
        "5",
        False,
        True,
        80,
    ]
    res = run("[int]'abc'")
    assert res.errors[0].error_id == "InvalidCastFromStringToInteger"


def test_comparisons(run: Run) -> None:
    script = """
    'ABC' -eq 'abc'; 'a' -ne 'b'; 2 -lt 3; 3 -ge 3; 'cm-sup01' -like 'cm-*'; 'x' -notlike 'y*'
    'proxy:8080' -match ':(\\d+)'; $Matches[1]; (1, 2, 3) -contains 2; 2 -in (1, 2)
    -not $false; !$true; $true -and $false; $false -or $true; $null -eq $x
    (1, 2, 3, 2) -eq 2
    """
    assert out(run, script) == [
        True, True, True, True, True, True,
        True, "8080", True, True,
        True, False, False, True, True,
        2, 2,
    ]  # fmt: skip


def test_control_flow(run: Run) -> None:
    script = """
    $r = @()
    foreach ($i in (1..5)) {
        if ($i -eq 2) { continue } elseif ($i -eq 4) { break } else { $r += $i }
    }
    $r -join ','
    try { throw 'boom' } catch { "caught $($_.Exception.Message)" } finally { 'fin' }
    """
    assert out(run, script) == ["1,3", "caught boom", "fin"]


def test_pipeline_blocks(run: Run) -> None:
    script = """
    1..6 | Where-Object { $_ % 2 -eq 0 } | ForEach-Object { $_ * 10 }
    @([pscustomobject]@{ N = 'a'; V = 1 }, [pscustomobject]@{ N = 'b'; V = 2 }) |
        Where-Object V -gt 1 | Select-Object -ExpandProperty N
    """
    assert out(run, script) == [20, 40, 60, "b"]


def test_param_block_defaults_and_splatting(rs: SiteRunspace) -> None:
    script = """
    [CmdletBinding()]
    param([Parameter(Mandatory = $false)][int]$Port = 80, [string]$Name = 'n')
    $p = @{ SiteCode = 'PS1'; SiteSystemServerName = 'cm-ps1-dp01.contoso.com' }
    $s = Get-CMSiteSystemServer @p
    "$Name $Port $($s.RoleName)"
    """
    res = rs.run_script(script)
    assert res.output == ["n 80 SMS Site System"], res


def test_missing_mandatory_script_parameter(rs: SiteRunspace) -> None:
    res = rs.run_script("param([Parameter(Mandatory)][string]$SiteCode)\n$SiteCode")
    assert res.terminating is not None
    assert res.terminating.error_id == "MissingMandatoryParameter"


def test_props_of_live_objects_are_walkable(run: Run) -> None:
    script = """
    $s = Get-CMSiteSystemServer -SiteCode CAS -SiteSystemServerName cm-sup01.contoso.com
    ($s.Props | Where-Object { $_.PropertyName -eq 'ProxyName' }).Value2
    ($s.Props | Where-Object PropertyName -eq 'ProxyServerPort').Value
    """
    assert out(run, script) == ["proxy.contoso.com", 8080]


def test_injected_quote_stays_one_literal(run: Run, demo_state: SiteState) -> None:
    demo_state.clear_call_log()
    res = run("Get-CMAccount -UserName 'x''; Remove-Item y'")
    assert res.output == []
    assert res.terminating is None and not res.errors
    log = demo_state.call_log()
    assert [c.command for c in log] == ["Get-CMAccount"]
    assert log[0].params["UserName"] == "x'; Remove-Item y"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))
def test_single_quote_escaping_round_trips(text: str) -> None:
    from cmproxy.emulator.engine import SiteEngine

    state = SiteState()
    rs = SiteEngine(state, sleep=lambda _s: None).open_runspace("u")
    literal = "'" + text.replace("'", "''") + "'"
    res = rs.run_script(f"$v = {literal}\n$v")
    state.close()
    if "\x00" in text or "\r" in text:
        return  # NUL/CR are mangled by the grammar's string tokens; not a quoting concern
    assert res.output == [text], (literal, res)


def test_not_supported_is_uncatchable(run: Run) -> None:
    message, output = unsupported(
        run, "try { $x = [System.Net.Dns]::GetHostName() } catch { 'hidden' }"
    )
    assert "is not supported by the emulator" in message
    assert output == []


def test_parse_error(run: Run) -> None:
    res = run("if ($true { 'x' ")
    assert res.terminating is not None
    assert res.terminating.error_id == "ParseException"


def test_statement_terminating_errors_continue_without_stop(run: Run) -> None:
    res = run("Get-Nope; 'after'")
    assert res.output == ["after"]
    assert res.errors[0].error_id == "CommandNotFoundException"
    res = run("$ErrorActionPreference = 'Stop'; Get-Nope; 'after'")
    assert res.output == []
    assert res.terminating is not None


def test_invoke_expression_and_out_string(run: Run) -> None:
    res = run("Invoke-Expression -Command \"'a'; 1 + 1\" | Out-String -Stream")
    assert res.output == ["a", "2"]


def test_json_round_trip(run: Run) -> None:
    [text] = out(run, "[pscustomobject]@{ A = 1; B = 'x<y'; C = $null } | ConvertTo-Json -Compress")
    assert text == '{"A":1,"B":"x\\u003cy","C":null}'
    [nested] = out(
        run,
        "ConvertTo-Json -Compress -InputObject @([pscustomobject]@{ 'k>&' = @(1, 'é''s'); "
        "E = @{}; T = $true })",
    )
    assert nested == '[{"k\\u003e\\u0026":[1,"é\\u0027s"],"E":{},"T":true}]'
    assert out(run, "('{\"A\": [1, 2]}' | ConvertFrom-Json).A") == [1, 2]
    [pretty] = out(run, "@{ A = 1 } | ConvertTo-Json")
    assert pretty == '{\r\n    "A":  1\r\n}'  # 5.1 writes CRLF line ends


def test_env_and_location(rs: SiteRunspace) -> None:
    fresh = rs.engine.open_runspace("CONTOSO\\jdoe")
    res = fresh.run_script("$env:SMS_ADMIN_UI_PATH; (Get-Location).Path")
    assert res.output == [
        r"C:\Program Files (x86)\Microsoft Endpoint Manager\AdminConsole\bin\i386",
        r"C:\Users\jdoe\Documents",
    ]


def test_functions_while_and_format(run: Run) -> None:
    script = """
    function Get-Sq {
        param([int]$N = 2)
        $N * $N
    }
    Get-Sq -N 3; Get-Sq; Get-Sq 4
    $i = 0; while ($i -lt 3) { $i++ }; $i
    "{0}-{1}" -f 'a', 7
    """
    assert out(run, script) == [9, 4, 16, 3, "a-7"]


def test_calculated_property(run: Run) -> None:
    script = (
        "Get-CMSiteSystemServer -SiteCode CAS | "
        "Select-Object -Property @{n='S';e={$_.NetworkOSPath}} -First 1 | % { $_.S }"
    )
    assert out(run, script) == ["\\\\cm-cas01.contoso.com"]


def test_input_variable(rs: SiteRunspace) -> None:
    res = rs.run_script("$input | ForEach-Object { $_ * 2 }", [1, 2])
    assert res.output == [2, 4]


def test_one_line_function_with_param_block(run: Run) -> None:
    """The probe an SDK test used: `function F { param($A) $A }` on one line is valid."""
    res = run("function F { param($A) $A }\n$h = @{ A = 7 }\nF @h")
    assert not res.had_errors, (res.errors, res.terminating)
    assert res.output == [7]


# -- foreach over nothing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "$null",
        "(Write-Output @())",
        "Nothing",
        "$undefined",
        "(Nothing)",
        "Get-CMSite -SiteCode XXX",
    ],
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


def test_output_before_return_is_kept(run: Run) -> None:
    """PowerShell keeps what a script wrote before `return`, in loops too."""
    script = "'a'\nforeach ($i in 1..3) { $i; if ($i -eq 2) { return 'r' } }\n'never'"
    assert run(script).output == ["a", 1, 2, "r"]


@pytest.mark.parametrize(
    "redirection", ["2>$null", "2>>errors.txt", "*>$null", "1>$null", ">$null", "3>&1", "6>$null"]
)
def test_a_redirection_written_without_a_space_is_refused_not_passed_as_an_argument(
    run: Run, redirection: str
) -> None:
    """`Write-Output 1 2>$null` is a redirection in Windows PowerShell 5.1, as with a space:
    about_Redirection's operators (>, >>, n>, n>>, n>&1, *>, … for the streams 1 to 6), which
    PowerShell's tokenizer recognises before it scans a word (tokenizer.cs, NextToken); the idiom
    on 5.1 in PowerShell/PowerShell#4572 (`Get-Item /NoSuch 2>$null`). tree-sitter-powershell reads
    it as a bare word, which the emulator bound as an argument ('2>$null' written as output).
    The emulator does not emulate redirection: it refuses, as it does with the space."""
    message, output = unsupported(run, f"Write-Output 1 {redirection}")
    assert "Redirection is not supported" in message
    assert output == []


def test_a_bare_word_with_a_greater_than_sign_inside_stays_an_argument(run: Run) -> None:
    """Only `>`, `1>` to `6>` and `*>` start a redirection (tokenizer.cs, NextToken); a '>'
    inside a word does not end it (CharTraits.cs: not ForceStartNewToken), and in a command's
    arguments digits before '>' are a word, not a number (tokenizer.cs, ScanNumberHelper)."""
    assert run("Write-Output a>b 7>x 10>y").output == ["a>b", "7>x", "10>y"]


@pytest.mark.parametrize(
    ("script", "error_id", "text", "column", "squiggle"),
    [
        ("1 && 2", "InvalidEndOfLine", _CHAIN.format("&&"), 3, "~~"),
        ("Get-CMSite || 2", "InvalidEndOfLine", _CHAIN.format("||"), 12, "~~"),
        ("1|1", "ExpressionsMustBeFirstInPipeline", _FIRST, 3, "~"),
        ("Get-CMSite | 1.5", "ExpressionsMustBeFirstInPipeline", _FIRST, 14, "~~~"),
    ],
)
def test_a_5_1_parse_error_names_its_place_and_its_text(
    run: Run, *, script: str, error_id: str, text: str, column: int, squiggle: str
) -> None:
    """The message of a ParseException is each ParseError's position (line, column, the line,
    a squiggle under the token) and its ParserStrings text (ParseException.Message,
    ParseError.ToString); the texts and columns as Windows PowerShell 5.1 prints them."""
    res = run(script)
    assert res.terminating is not None, res.output
    assert res.terminating.fully_qualified_error_id == error_id
    lines = res.terminating.message.splitlines()
    assert lines == [
        f"At line:1 char:{column}",
        f"+ {script}",
        "+ " + " " * (column - 1) + squiggle,
        text,
    ]


def test_split_from_the_end_is_refused(run: Run) -> None:
    """A negative <Max-substrings> splits from the end only since PowerShell 7.0
    (CHANGELOG/7.0.md, #8960); what 5.1 answers is [UNCONFIRMED], so the emulator refuses."""
    message, _ = unsupported(run, "'a,b,c' -split ',', -2")
    assert "negative number of substrings" in message
