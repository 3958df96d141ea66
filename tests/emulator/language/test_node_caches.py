"""What the evaluator derives once per parse-tree node (the tree of a script text is parsed
once and shared) must never stand in for what a run computes: variables, functions, splatted
values and the site's rows are read afresh every run (about_Variables, about_Functions,
about_Splatting, about_Scopes)."""

from __future__ import annotations

import random

from cmproxy.emulator.engine.language import conv
from cmproxy.emulator.engine.values import PSObj

from ..conftest import Run, out


def test_the_same_script_text_sees_each_runs_variables(run: Run) -> None:
    script = '$r = $x * 2; $r; "v=$x"; $X'
    out(run, "$x = 1")
    assert out(run, script) == [2, "v=1", 1]
    out(run, "$x = 5")
    assert out(run, script) == [10, "v=5", 5]


def test_a_redefined_function_runs_its_new_body(run: Run) -> None:
    """about_Functions: a later definition of the same name replaces the earlier one."""
    out(run, "function f { 'one' }")
    assert out(run, "f") == ["one"]
    out(run, 'function f { param($a) "two $a" }')
    assert out(run, "f") == ["two "]
    assert out(run, "f -a:3") == ["two 3"]
    assert out(run, "f -a 4") == ["two 4"]


def test_splatting_reads_the_variable_each_run(run: Run) -> None:
    """about_Splatting: a hashtable splats by name, an array by position."""
    out(run, 'function f { param($a) "got $a" }')
    out(run, "$h = @{ a = 1 }")
    assert out(run, "f @h") == ["got 1"]
    out(run, "$h = @{ a = 'z' }")
    assert out(run, "f @h") == ["got z"]
    out(run, "$h = @(7)")
    assert out(run, "f @h") == ["got 7"]


def test_variable_names_keep_their_scope_rules_run_after_run(run: Run) -> None:
    """about_Scopes: an unqualified name reads the nearest scope, `$global:` the global one;
    about_Automatic_Variables: $PWD is the location until a variable of that name is set."""
    script = "function g { $y = 'l'; $y; $global:y; $Y }; g; $y"
    out(run, "$global:y = 'g'")
    for _ in range(2):
        assert out(run, script) == ["l", "g", "l", "g"]
    assert conv.to_str(out(run, "$pwd")[0]) == "PS1:\\"
    out(run, "$pwd = 'mine'")
    assert out(run, "$pwd") == ["mine"]
    assert out(run, "$true; $null; $env:NO_SUCH_VARIABLE_HERE") == [True, None, None]
    # about_Variables: a type-constrained variable converts every later assignment
    for _ in range(2):
        assert out(run, "[int]$n = 1; $n = '5'; $n + 1; $m = '5'; $m + 1") == [6, "51"]


def test_a_refused_variable_is_refused_every_run(run: Run) -> None:
    for _ in range(2):
        res = run("$using:x")
        assert res.terminating is not None
        assert "$using:" in res.terminating.message


def test_rows_read_after_a_write_show_the_write(run: Run) -> None:
    """Props parsed once per row text: a write makes new text, so a read shows it."""
    server = "cm-ps1-dp02.contoso.com"
    read = (
        f"(Get-CMSiteRole -SiteSystemServerName {server} -SiteCode PS1 -RoleName "
        "'SMS Site System').Props | Where-Object { $_.PropertyName -eq 'ProxyName' } | "
        "ForEach-Object { $_.Value2 }"
    )
    for name in ("first.contoso.com", "second.contoso.com"):
        out(
            run,
            f"Set-CMSiteSystemServer -SiteSystemServerName {server} -SiteCode PS1 "
            f"-EnableProxy $true -ProxyServerName {name} -ProxyServerPort 3128",
        )
        assert out(run, read) == [name]


def _rows(run: Run, script: str) -> list[PSObj]:
    rows = out(run, script)
    assert all(isinstance(r, PSObj) for r in rows)
    return [r for r in rows if isinstance(r, PSObj)]


def test_role_count_of_one_server_matches_the_site_listing(run: Run) -> None:
    """RoleCount (SMS_SCI_SysResUse): the server's roles, whether one server or the whole
    site is listed."""
    listed = _rows(run, "Get-CMSiteRole -SiteCode PS1")
    paths = [str(r.properties["NetworkOSPath"]).lower() for r in listed]
    assert len(set(paths)) > 4
    for path in sorted(set(paths)):
        server = path.lstrip("\\")
        one = _rows(run, f"Get-CMSiteRole -SiteSystemServerName {server} -SiteCode PS1")
        counts = {r.properties["RoleCount"] for r in one}
        assert counts == {paths.count(path)} == {len(one)}


def _json_str_per_character(s: str) -> str:
    """JavaScriptSerializer's string escaping, written out a character at a time."""
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
    short["\t"] = "\\t"
    out = ['"']
    for c in s:
        if c in short:
            out.append(short[c])
        elif c in "<>'&" or ord(c) < 0x20:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out) + '"'


def test_convertto_json_string_escaping_matches_the_per_character_rule() -> None:
    alphabet = [chr(i) for i in range(0x80)] + ["é", "\u2028", "😀", "\x7f", "\x85"]
    rng = random.Random(7)
    samples = ["", "plain", "a<b>'&\"\\\t\x01é", *alphabet]
    samples += ["".join(rng.choice(alphabet) for _ in range(20)) for _ in range(500)]
    for s in samples:
        assert conv._json_str(s) == _json_str_per_character(s), repr(s)


def test_big_hashtables_stay_case_insensitive(run: Run) -> None:
    """about_Hash_Tables: keys are case-insensitive, whatever the table's size (a large
    table is searched another way)."""
    script = """
    $h = @{}
    foreach ($i in 1..20) { $h["Key$i"] = $i }
    $h['KEY7']; $h.key12
    $h['kEy3'] = 'x'
    $h['Key3']; $h.Count
    $h['KEY21'] = 21
    $h.Count; ($h.Keys | Where-Object { $_ -eq 'key21' })
    """
    assert out(run, script) == [7, 12, "x", 20, 21, "KEY21"]
