"""The template gate: every construct a `ps_templates/*.ps1` uses must be one the conformance
corpus covers, and none may be newer than Windows PowerShell 5.1.

A template runs on real site servers with Windows PowerShell 5.1 and, in tests, on the
emulator's interpreter. The emulator is trusted only where the corpus (`conformance/*.yaml`)
holds a sourced case for the construct, so a template that starts using a new operator, command,
parameter, type, member or automatic variable fails here until a case covers it. Constructs
are read from the syntax tree of tree-sitter-powershell (the parser the emulator runs), for the
templates and for every corpus script alike; the templates are read at test time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs
import pytest
import tree_sitter
import tree_sitter_powershell
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "ps_templates"
CORPUS = Path(__file__).parent / "conformance"

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))

#: Named nodes that carry no behaviour of their own.
_INERT_NODES = {"comment", "command_argument_sep", "empty_statement", "ERROR"}
#: Anonymous tokens that are punctuation, not operators or keywords.
_PUNCTUATION = {"(", ")", "{", "}", "[", "]", "@{", "@(", "$(", ";", " ", '"', "'", "\n", "\r\n"}
#: Automatic and preference variables (about_Automatic_Variables, about_Preference_Variables):
#: the variables whose meaning comes from PowerShell rather than from the script.
_AUTOMATIC = {
    "$",
    "?",
    "^",
    "_",
    "args",
    "confirmpreference",
    "consolefilename",
    "debugpreference",
    "error",
    "erroractionpreference",
    "errorview",
    "event",
    "executioncontext",
    "false",
    "foreach",
    "formatenumerationlimit",
    "home",
    "host",
    "informationpreference",
    "input",
    "lastexitcode",
    "matches",
    "myinvocation",
    "nestedpromptlevel",
    "null",
    "ofs",
    "pid",
    "profile",
    "progresspreference",
    "psboundparameters",
    "pscmdlet",
    "pscommandpath",
    "psculture",
    "psdebugcontext",
    "pshome",
    "psitem",
    "psscriptroot",
    "pssenderinfo",
    "psuiculture",
    "psversiontable",
    "pwd",
    "shellid",
    "stacktrace",
    "switch",
    "this",
    "true",
    "verbosepreference",
    "warningpreference",
    "whatifpreference",
}


@attrs.frozen
class Construct:
    """One construct of a script: its key (e.g. `command:get-cmsite`) and its 1-based line."""

    key: str
    line: int


def _line(n: tree_sitter.Node) -> int:
    return n.start_point[0] + 1


def _text(n: tree_sitter.Node) -> str:
    return (n.text or b"").decode("utf-8", errors="replace")


def _walk(n: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    yield n
    for c in n.children:
        yield from _walk(c)


def _command_name(cmd: tree_sitter.Node) -> str | None:
    name = next((c for c in cmd.named_children if c.type == "command_name"), None)
    return _text(name).lower() if name is not None else None


def _variable(n: tree_sitter.Node) -> str | None:
    """The construct of a variable: automatic ones and drive-qualified ones (`$env:NAME`);
    a script's own variables are not constructs."""
    raw = _text(n)
    name = raw[2:-1] if raw.startswith("${") else raw[1:]
    low = name.lower()
    for scope in ("global:", "script:", "local:", "private:"):
        low = low.removeprefix(scope)
    key = f"variable:${low}"
    return key if ":" in low or low in _AUTOMATIC or key in NEWER_VARIABLES else None


def functions_of(script: str) -> set[str]:
    """The names of the functions a script defines (lower case)."""
    root = _PARSER.parse(script.encode("utf-8")).root_node
    return {
        _text(c).lower()
        for n in _walk(root)
        if n.type == "function_statement"
        for c in n.named_children
        if c.type == "function_name"
    }


def constructs(script: str, also_own: Iterable[str] = ()) -> list[Construct]:
    """Every construct of a script, with the line it is on. `also_own`: functions defined
    elsewhere that the script calls (the prelude's)."""
    root = _PARSER.parse(script.encode("utf-8")).root_node
    # The script's own functions are not constructs: their bodies are.
    own = functions_of(script) | set(also_own)
    found: list[Construct] = []
    for n in _walk(root):
        line = _line(n)
        if not n.is_named:
            parent = n.parent.type if n.parent is not None else ""
            if n.type not in _PUNCTUATION and parent not in ("hash_entry", "command_argument_sep"):
                found.append(Construct(f"token:{n.type.lower()}", line))
            continue
        if n.type in _INERT_NODES:
            continue
        found.append(Construct(f"node:{n.type}", line))
        if n.type == "command":
            found += _command_constructs(n, own, line)
        elif n.type == "type_literal":
            type_name = re.sub(r"\s+", "", _text(n)).lower()
            found.append(Construct(f"type:{type_name}", line))
        elif n.type == "attribute":
            found += _attribute_constructs(n, line)
        elif n.type == "member_name" and n.parent is not None:
            kind = "method" if n.parent.type == "invokation_expression" else "member"
            static = any(c.type == "::" for c in n.parent.children)
            found.append(Construct(f"{'static ' if static else ''}{kind}:{_text(n).lower()}", line))
        elif n.type == "variable":
            key = _variable(n)
            if key is not None:
                found.append(Construct(key, line))
    return found


def _command_constructs(n: tree_sitter.Node, own: set[str], line: int) -> list[Construct]:
    """A command and the parameters it names; none for a function of the script's own."""
    name = _command_name(n)
    if name is None or name in own:
        return []
    found = [Construct(f"command:{name}", line)]
    elements = next((c for c in n.named_children if c.type == "command_elements"), None)
    for e in elements.named_children if elements is not None else []:
        if e.type == "command_parameter":
            param = _text(e).lower().rstrip(":")
            found.append(Construct(f"parameter:{name} {param}", _line(e)))
    return found


def _attribute_constructs(n: tree_sitter.Node, line: int) -> list[Construct]:
    """An attribute and the named arguments it is given ([Parameter(Mandatory)])."""
    name_node = next((c for c in n.named_children if c.type == "attribute_name"), None)
    if name_node is None:
        return []
    attr = _text(name_node).lower()
    found = [Construct(f"attribute:{attr}", line)]
    for arg in (a for c in n.named_children for a in c.named_children):
        kids = arg.named_children
        if arg.type == "attribute_argument" and kids and kids[0].type == "simple_name":
            found.append(Construct(f"attribute:{attr}({_text(kids[0]).lower()})", line))
    return found


# -- constructs Windows PowerShell 5.1 lacks --------------------------------------------------

#: Commands that Windows PowerShell 5.1 does not ship (each cmdlet reference says which version
#: introduced it).
NEWER_COMMANDS = {
    "join-string": "Join-String (PowerShell 6.2)",
    "get-error": "Get-Error (PowerShell 7.0)",
    "test-json": "Test-Json (PowerShell 6.1)",
    "convertfrom-markdown": "ConvertFrom-Markdown (PowerShell 6.1)",
    "show-markdown": "Show-Markdown (PowerShell 6.1)",
    "get-markdownoption": "Get-MarkdownOption (PowerShell 6.1)",
    "set-markdownoption": "Set-MarkdownOption (PowerShell 6.1)",
    "get-uptime": "Get-Uptime (PowerShell 6.0)",
    "remove-alias": "Remove-Alias (PowerShell 6.0)",
    "remove-service": "Remove-Service (PowerShell 6.0)",
    "get-experimentalfeature": "Get-ExperimentalFeature (PowerShell 6.2)",
    "enable-experimentalfeature": "Enable-ExperimentalFeature (PowerShell 6.2)",
    "disable-experimentalfeature": "Disable-ExperimentalFeature (PowerShell 6.2)",
}
#: Parameters that Windows PowerShell 5.1's version of a cmdlet lacks (the 5.1 view of each
#: cmdlet reference has no such parameter).
NEWER_PARAMETERS = {
    "foreach-object -parallel": "ForEach-Object -Parallel (PowerShell 7.0)",
    "foreach-object -throttlelimit": "ForEach-Object -ThrottleLimit (PowerShell 7.0)",
    "foreach-object -asjob": "ForEach-Object -AsJob (PowerShell 7.0)",
    "convertfrom-json -ashashtable": "ConvertFrom-Json -AsHashtable (PowerShell 6.0)",
    "convertfrom-json -depth": "ConvertFrom-Json -Depth (PowerShell 6.2)",
    "convertfrom-json -noenumerate": "ConvertFrom-Json -NoEnumerate (PowerShell 7.0)",
    "convertto-json -asarray": "ConvertTo-Json -AsArray (PowerShell 6.1; PowerShell#6438)",
    "convertto-json -enumsasstrings": "ConvertTo-Json -EnumsAsStrings (PowerShell 6+)",
    "convertto-json -escapehandling": "ConvertTo-Json -EscapeHandling (PowerShell 6+)",
    "get-content -asbytestream": "Get-Content -AsByteStream (PowerShell 6.0)",
    "set-content -asbytestream": "Set-Content -AsByteStream (PowerShell 6.0)",
    "split-path -extension": "Split-Path -Extension (PowerShell 6.0)",
    "split-path -leafbase": "Split-Path -LeafBase (PowerShell 6.0)",
    "join-path -additionalchildpath": "Join-Path -AdditionalChildPath (PowerShell 6.0)",
    "select-object -skipindex": "Select-Object -SkipIndex (PowerShell 6+)",
    "import-module -usewindowspowershell": "Import-Module -UseWindowsPowerShell (PowerShell 7.0)",
    "invoke-webrequest -skipcertificatecheck": "Invoke-WebRequest -SkipCertificateCheck (6.0)",
    "invoke-restmethod -skipcertificatecheck": "Invoke-RestMethod -SkipCertificateCheck (6.0)",
    "get-childitem -followsymlink": "Get-ChildItem -FollowSymlink (PowerShell 6.0)",
}
#: Automatic variables that Windows PowerShell 5.1 does not have (about_Automatic_Variables,
#: about_Preference_Variables of 7.x: each says the version that added it).
NEWER_VARIABLES = {
    "variable:$psstyle": "$PSStyle (PowerShell 7.2; about_ANSI_Terminals)",
    "variable:$iswindows": "$IsWindows (PowerShell 6.0; about_Automatic_Variables)",
    "variable:$islinux": "$IsLinux (PowerShell 6.0; about_Automatic_Variables)",
    "variable:$ismacos": "$IsMacOS (PowerShell 6.0; about_Automatic_Variables)",
    "variable:$iscoreclr": "$IsCoreCLR (PowerShell 6.0; about_Automatic_Variables)",
    "variable:$psnativecommandargumentpassing": "$PSNativeCommandArgumentPassing (PowerShell 7.3)",
    "variable:$psnativecommanduseerroractionpreference": (
        "$PSNativeCommandUseErrorActionPreference (PowerShell 7.4)"
    ),
}
#: Tokens of syntax added after 5.1.
NEWER_TOKENS = {
    "token:&&": "pipeline chain operator && (PowerShell 7.0; about_Pipeline_Chain_Operators)",
    "token:||": "pipeline chain operator || (PowerShell 7.0; about_Pipeline_Chain_Operators)",
}
_CLEAN = "clean { } block (PowerShell 7.3; about_Functions_Advanced_Methods)"
_QUESTION = (
    "'?' operator syntax: ternary a ? b : c, ?? / ??= (PowerShell 7.0) or ?. / ?[] (PowerShell "
    "7.1) (about_Operators); Windows PowerShell 5.1 cannot parse it"
)


def _unparsed(text: str) -> str:
    """What a span the grammar cannot parse most likely is."""
    if re.search(r"\bclean\b", text, re.IGNORECASE):
        return _CLEAN
    if "?" in text:
        return _QUESTION
    return f"syntax the grammar cannot parse ({text[:40]!r})"


def newer_than_51(script: str) -> list[tuple[str, int]]:
    """(what, line) for every construct of `script` that Windows PowerShell 5.1 lacks, and every
    spot the grammar cannot parse (5.1 could not either, or the gate cannot see what it is)."""
    root = _PARSER.parse(script.encode("utf-8")).root_node
    found: list[tuple[str, int]] = []
    for c in constructs(script):
        key = c.key
        for table, prefix in (
            (NEWER_COMMANDS, "command:"),
            (NEWER_PARAMETERS, "parameter:"),
        ):
            if key.startswith(prefix) and key[len(prefix) :] in table:
                found.append((table[key[len(prefix) :]], c.line))
        if key in NEWER_VARIABLES:
            found.append((NEWER_VARIABLES[key], c.line))
        if key in NEWER_TOKENS:
            found.append((NEWER_TOKENS[key], c.line))
    for n in _walk(root):
        if n.type == "command" and _command_name(n) == "clean":
            elements = next((c for c in n.named_children if c.type == "command_elements"), None)
            if elements is not None and "script_block_expression" in {
                x.type for x in _walk(elements)
            }:
                found.append((_CLEAN, _line(n)))
        elif n.type in ("expandable_string_literal", "expandable_here_string_literal"):
            if re.search(r"`u\{", _text(n)):
                found.append(
                    ("`u{...} escape (PowerShell 6.0; about_Special_Characters)", _line(n))
                )
        elif n.type == "ERROR" or n.is_missing:
            found.append((_unparsed(_text(n)), _line(n)))
    return found


def corpus_scripts() -> list[str]:
    scripts: list[str] = []
    for path in sorted(CORPUS.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text("utf-8")) or []:
            steps = case.get("pipelines", [case])
            scripts += [str(step["script"]) for step in steps]
    return scripts


def gate(
    templates: dict[str, str], corpus: Iterable[str], prelude: Iterable[str] = ()
) -> list[str]:
    """The gate's findings, one message per (template, construct, line). `prelude`: the
    functions the prelude defines (their bodies are gated as the prelude's)."""
    covered = {c.key for script in corpus for c in constructs(script)}
    failures: list[str] = []
    for name, script in sorted(templates.items()):
        seen: set[tuple[str, int]] = set()
        for c in constructs(script, prelude):
            if c.key not in covered and (c.key, c.line) not in seen:
                seen.add((c.key, c.line))
                failures.append(
                    f"{name}:{c.line}: {c.key} is not covered by the conformance corpus "
                    "(add a sourced case to tests/emulator/conformance/)"
                )
        for what, line in newer_than_51(script):
            failures.append(f"{name}:{line}: {what} is not Windows PowerShell 5.1")
    return failures


def _templates() -> dict[str, str]:
    return {p.name: p.read_text("utf-8") for p in sorted(TEMPLATES.glob("*.ps1"))}


def _prelude() -> str:
    (path,) = sorted((TEMPLATES / "prelude").glob("*.ps1"))
    return path.read_text("utf-8")


def test_the_prelude_is_covered_and_5_1() -> None:
    """The prelude (ps_templates/prelude/) runs ahead of every template: the same gate."""
    failures = gate({"prelude": _prelude()}, corpus_scripts())
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", sorted(_templates()))
def test_template_is_covered_and_5_1(name: str) -> None:
    prelude = functions_of(_prelude())
    failures = gate({name: (TEMPLATES / name).read_text("utf-8")}, corpus_scripts(), prelude)
    assert not failures, "\n".join(failures)


def test_the_gate_reads_the_templates() -> None:
    """An empty or unparsed template set would pass vacuously."""
    templates = _templates()
    assert len(templates) >= 1
    for name, script in templates.items():
        keys = {c.key for c in constructs(script)}
        assert "node:param_block" in keys, name
        assert any(k.startswith("command:") for k in keys), name


def test_gate_flags_an_uncovered_construct() -> None:
    corpus = ["$s = 'x'\n$s.ToUpper()\nGet-Date -UFormat o\n$s.ToLower(3)"]
    script = "$s = 'x'\n$s.ToUpper()\nGet-Date -Format o\n$s.PadLeft(3)"
    failures = gate({"t.ps1": script}, corpus)
    assert failures == [
        "t.ps1:3: parameter:get-date -format is not covered by the conformance corpus "
        "(add a sourced case to tests/emulator/conformance/)",
        "t.ps1:4: method:padleft is not covered by the conformance corpus "
        "(add a sourced case to tests/emulator/conformance/)",
    ]
    assert gate({"t.ps1": script}, [*corpus, "Get-Date -Format o; 'a'.PadLeft(3)"]) == []


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("$a = $true\n$b = $a ? 1 : 2", "ternary"),
        ("$b = $null ?? 1", "??"),
        ("$a = @{}\n$a?.Count", "?."),
        ("Get-Item x && Get-Item y", "&&"),
        ("Get-Item x || Get-Item y", "||"),
        ("1..3 | ForEach-Object -Parallel { $_ }", "ForEach-Object -Parallel"),
        ("'{}' | ConvertFrom-Json -AsHashtable", "ConvertFrom-Json -AsHashtable"),
        ("'{}' | ConvertFrom-Json -Depth 3", "ConvertFrom-Json -Depth"),
        ("'a','b' | Join-String", "Join-String"),
        ("Get-Error", "Get-Error"),
        ("$PSStyle.Reset", "$PSStyle"),
        ("function F {\n  process { 1 }\n  clean { 2 }\n}", "clean { } block"),
        ('"`u{2195}"', "`u{...}"),
    ],
)
def test_gate_flags_syntax_newer_than_5_1(script: str, expected: str) -> None:
    findings = newer_than_51(script)
    assert any(expected in what for what, _ in findings), findings
    failures = gate({"t.ps1": script}, [script])  # covered, still not 5.1
    assert failures and all("is not Windows PowerShell 5.1" in f for f in failures), failures
    assert any(expected in f for f in failures), failures


def test_gate_passes_5_1_syntax() -> None:
    script = "$a = @(1, 2)\nif ($a -contains 1) { 'y' }\n$h = @{}\n$h['k'] = [string]$a[0]"
    assert newer_than_51(script) == []
