"""Every template parses, binds exactly what Python binds, and calls only real parameters.

The cmdlet → parameter table below encodes configmgr-cmdlets.md §3 (cmdlet reference) and
§5.6 (the 1902 module stub's declared parameters), plus the Windows PowerShell 5.1 built-ins
the templates use (their documented parameters). A template that misspells a parameter, or
calls a cmdlet the reference does not know, fails here before it ever reaches a server.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tree_sitter
import tree_sitter_powershell

from cmproxy.doctor_facts import DOCTOR_TEMPLATE_PARAMETERS
from cmproxy.session import SESSION_TEMPLATE_PARAMETERS
from cmproxy.templates import load_prelude, load_template, template_names
from cmproxy.transports.winrm import BOOTSTRAP
from cmproxy.writer import WRITE_TEMPLATE_PARAMETERS

_COMMON = {"DisableWildcardHandling", "ForceWildcardHandling"}
_WRITE_COMMON = {"WhatIf", "Confirm"}
#: The reference gives Get-CMSiteSystemServer and Get-CMSoftwareUpdatePoint the same
#: parameters (a server by one of its names, a site, all sites, or a piped object).
_GET_BY_SERVER = {
    "SiteSystemServerName",
    "Name",
    "ServerName",
    "SiteCode",
    "AllSite",
    "AllSites",
    "InputObject",
} | _COMMON

#: configmgr-cmdlets.md §3.1-§3.10 and §5.6 (parameter names exactly as documented).
REFERENCE: dict[str, set[str]] = {
    "Get-CMSite": {"SiteCode", "Name", "SiteName"} | _COMMON,
    "Get-CMSiteRole": {"RoleName"} | _GET_BY_SERVER,
    "Get-CMSiteSystemServer": _GET_BY_SERVER,
    "Set-CMSiteSystemServer": {
        "InputObject",
        "SiteSystemServer",
        "SiteSystemServerName",
        "Name",
        "ServerName",
        "SiteCode",
        "EnableProxy",
        "ProxyServerName",
        "ProxyServerPort",
        "ProxyAccessAccount",
        "AccountName",
        "UseSiteServerAccount",
        "PublicFqdn",
        "FdmOperation",
        "PassThru",
    }
    | _COMMON
    | _WRITE_COMMON,
    "Get-CMSoftwareUpdatePoint": _GET_BY_SERVER,
    "Set-CMSoftwareUpdatePoint": {
        "HttpPort",
        "WsusIisPort",
        "HttpsPort",
        "WsusIisSslPort",
        "InputObject",
        "SoftwareUpdatePoint",
        "SiteSystemServerName",
        "Name",
        "ServerName",
        "SiteCode",
        "ClientConnectionType",
        "EnableSsl",
        "SslWsus",
        "WsusSsl",
        "EnableCloudGateway",
        "UseProxy",
        "UseProxyForAutoDeploymentRule",
        "AnonymousWsusAccess",
        "WsusAccessAccount",
        "NlbVirtualIP",
        "PublicVirtualIP",
        "PassThru",
    }
    | _COMMON
    | _WRITE_COMMON,
    "Get-CMSoftwareUpdatePointComponent": {
        "SiteSystemServerName",
        "Name",
        "SiteCode",
        "WsusSyncManager",
    }
    | _COMMON,
    "Get-CMAccount": {"UserName", "Name", "SiteCode"} | _COMMON,
    "New-CMAccount": {"Password", "UserName", "Name", "SiteCode"} | _COMMON | _WRITE_COMMON,
    # Windows PowerShell 5.1 built-ins (documented parameters, the ones worth checking).
    "Get-Content": {"Path", "LiteralPath", "Tail", "TotalCount", "Encoding", "Raw"},
    "Get-Module": {"Name", "ListAvailable", "All", "FullyQualifiedName"},
    "Get-ExecutionPolicy": {"Scope", "List"},
    "Get-CimInstance": {"ClassName", "Namespace", "ComputerName", "Filter", "Query", "CimSession"},
    "Import-Module": {"Name", "Global", "Force", "Prefix", "MinimumVersion", "Scope"},
    "Get-PSDrive": {"Name", "PSProvider", "Scope", "LiteralName"},
    "New-PSDrive": {"Name", "PSProvider", "Root", "Scope", "Description", "Persist"},
    "Set-Location": {"Path", "LiteralPath", "PassThru", "StackName"},
    "Get-Location": {"PSProvider", "PSDrive", "Stack", "StackName"},
    "Get-Item": {"Path", "LiteralPath", "Filter", "Include", "Exclude", "Force", "Credential"},
    "Split-Path": {"Path", "Parent", "Leaf", "Qualifier", "NoQualifier", "LiteralPath"},
    "Join-Path": {"Path", "ChildPath", "Resolve"},
    "ConvertFrom-Json": {"InputObject"},
    "Invoke-Expression": {"Command"},
    "Invoke-CMProxyStep": set(),
    "ConvertTo-Json": {"InputObject", "Depth", "Compress"},
    "ConvertTo-SecureString": {"String", "AsPlainText", "Force", "Key", "SecureKey"},
    "ForEach-Object": {"Process", "Begin", "End", "MemberName"},
    "Where-Object": {"FilterScript", "Property", "Value"},
    "New-Object": {"TypeName", "ArgumentList", "Property", "ComObject", "Strict"},
    "Sort-Object": {"Property", "Descending", "Unique", "CaseSensitive", "Culture", "InputObject"},
}

_LANGUAGE = tree_sitter.Language(tree_sitter_powershell.language())


def _parse(text: str) -> tree_sitter.Tree:
    return tree_sitter.Parser(_LANGUAGE).parse(text.encode("utf-8"))


def _nodes(node: tree_sitter.Node, kind: str) -> Iterator[tree_sitter.Node]:
    if node.type == kind:
        yield node
    for child in node.children:
        yield from _nodes(child, kind)


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def param_block(text: str) -> dict[str, bool]:
    """Parameter name → mandatory, from the script's top-level param() block."""
    tree = _parse(text)
    blocks = [n for n in tree.root_node.children if n.type == "param_block"]
    assert len(blocks) == 1, "a template has exactly one top-level param() block"
    params: dict[str, bool] = {}
    for p in _nodes(blocks[0], "script_parameter"):
        var = [c for c in p.children if c.type == "variable"][-1]
        mandatory = any(
            "mandatory" in _text(a).lower() and "$true" in _text(a).lower()
            for a in p.children
            if a.type == "attribute"
        )
        params[_text(var).lstrip("$")] = mandatory
    return params


def commands(text: str) -> list[tuple[str, list[str]]]:
    """Every command call: its name and the parameter names it passes."""
    found: list[tuple[str, list[str]]] = []
    for cmd in _nodes(_parse(text).root_node, "command"):
        name_nodes = [c for c in cmd.children if c.type == "command_name"]
        if not name_nodes:
            continue
        elements = [c for c in cmd.children if c.type == "command_elements"]
        names = [
            _text(p).lstrip("-").rstrip(":")
            for e in elements
            for p in e.children
            if p.type == "command_parameter"
        ]
        found.append((_text(name_nodes[0]), names))
    return found


def functions(text: str) -> dict[str, set[str]]:
    """The template's own functions and the parameters of their param() blocks."""
    found: dict[str, set[str]] = {}
    for fn in _nodes(_parse(text).root_node, "function_statement"):
        name = next(c for c in fn.children if c.type == "function_name")
        found[_text(name)] = {
            _text([c for c in p.children if c.type == "variable"][-1]).lstrip("$")
            for p in _nodes(fn, "script_parameter")
        }
    return found


#: Templates bound by other modules (cmproxy/diagnostics.py binds Get-SiteServerLog).
OTHER_BINDINGS = {"Get-SiteServerLog": frozenset({"ServerName", "SiteCode", "LogName", "Tail"})}
BOUND = {
    **SESSION_TEMPLATE_PARAMETERS,
    **WRITE_TEMPLATE_PARAMETERS,
    **DOCTOR_TEMPLATE_PARAMETERS,
    **OTHER_BINDINGS,
}


def test_every_template_is_bound_by_python() -> None:
    assert set(template_names()) == set(BOUND)


@pytest.mark.parametrize("name", template_names())
def test_template_parses(name: str) -> None:
    text = load_template(name)
    assert not _parse(text).root_node.has_error
    assert "[CmdletBinding()]" in text
    assert "$ErrorActionPreference = 'Stop'" in text


@pytest.mark.parametrize("name", template_names())
def test_param_block_matches_python(name: str) -> None:
    params = param_block(load_template(name))
    assert set(params) == set(BOUND[name])


@pytest.mark.parametrize("name", template_names())
def test_commands_and_parameters_exist_in_reference(name: str) -> None:
    text = load_template(name)
    # A template's own functions and the prelude's bind their params.
    known = {**REFERENCE, **functions(load_prelude()), **functions(text)}
    for command, parameters in commands(text):
        assert command in known, f"{name}: {command} is not in the reference table"
        unknown = set(parameters) - known[command]
        assert not unknown, f"{name}: {command} has no parameter(s) {sorted(unknown)}"


def test_the_prelude_parses_and_only_defines_functions() -> None:
    """Sent ahead of every template (dot-sourced over PSRP): it must run nothing itself."""
    text = load_prelude()
    tree = _parse(text)
    assert not tree.root_node.has_error
    statements = [
        c
        for n in tree.root_node.children
        if n.type == "statement_list"
        for c in n.named_children
        if c.type != "comment"
    ]
    assert statements and all(c.type == "function_statement" for c in statements)
    known = {**REFERENCE, **functions(text)}
    for command, parameters in commands(text):
        assert command in known, f"prelude: {command} is not in the reference table"
        assert set(parameters) <= known[command], (command, parameters)


def test_winrs_bootstrap_parses_and_uses_known_commands() -> None:
    assert not _parse(BOOTSTRAP).root_node.has_error
    for command, parameters in commands(BOOTSTRAP):
        assert command in REFERENCE, command
        assert set(parameters) <= REFERENCE[command], (command, parameters)


def test_templates_never_interpolate_into_commands() -> None:
    """No Invoke-Expression, no expandable strings passed as commands: values stay bound."""
    for name in template_names():
        text = load_template(name).lower()
        assert "invoke-expression" not in text
        assert "iex " not in text
        assert "[scriptblock]::create" not in text


def test_mandatory_parameters_are_always_bound() -> None:
    from cmproxy.invocation import AccountLookup, Invocation
    from cmproxy.model import Secret
    from cmproxy.writer import step_for_invocation

    cases = [
        Invocation.of(
            "Set-CMSiteSystemServer",
            SiteSystemServerName="s.contoso.com",
            SiteCode="PS1",
            EnableProxy=True,
            ProxyServerName="p.contoso.com",
            ProxyServerPort=8080,
            ProxyAccessAccount=AccountLookup("CONTOSO\\svc", "PS1"),
        ),
        Invocation.of(
            "Set-CMSiteSystemServer", SiteSystemServerName="s", SiteCode="PS1", EnableProxy=False
        ),
        Invocation.of(
            "Set-CMSoftwareUpdatePoint",
            SiteSystemServerName="s",
            SiteCode="PS1",
            UseProxy=True,
            UseProxyForAutoDeploymentRule=False,
        ),
        Invocation.of("New-CMAccount", UserName="C\\u", Password=Secret("x"), SiteCode="PS1"),
    ]
    for invocation in cases:
        step = step_for_invocation(invocation)
        params = param_block(step.script.text)
        bound = {k for k, _ in step.parameters}
        assert bound <= set(params)
        assert {k for k, m in params.items() if m} <= bound
