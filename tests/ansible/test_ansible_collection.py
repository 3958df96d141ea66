"""The collection's static contract: ansible-doc renders every module, the documented options
are the argument specs, connection options map onto cmproxy's ConnectionInfo, the action group
lists every module, and the modules reach only cmproxy's public API through a guarded import.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cmproxy_ansible_harness import COLLECTION, COLLECTIONS, MODULES, ansible_tool, clean_env

import cmproxy
from cmproxy.connection import ANSIBLE_OPTION_NAMES, ENV_VARS, ConnectionInfo
from cmproxy.transport_names import TRANSPORT_NAMES

MODULE_DIR = COLLECTION / "plugins" / "modules"
COMMON = COLLECTION / "plugins" / "module_utils" / "common.py"


def _import(name: str) -> Any:
    pytest.importorskip("ansible.module_utils.basic")
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    return importlib.import_module(f"ansible_collections.cmproxy.configmgr.plugins.{name}")


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`ansible-doc --json` for all three modules in one run."""
    home = tmp_path_factory.mktemp("ansible-doc")
    proc = subprocess.run(
        [
            ansible_tool("ansible-doc"),
            "-t",
            "module",
            "--json",
            *(f"cmproxy.configmgr.{m}" for m in MODULES),
        ],
        env=clean_env(home),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stderr and "[ERROR]" not in proc.stderr, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.mark.parametrize("name", MODULES)
def test_ansible_doc_renders(name: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [ansible_tool("ansible-doc"), "-t", "module", f"cmproxy.configmgr.{name}"],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[ERROR]" not in proc.stderr and "[WARNING]" not in proc.stderr, proc.stderr
    assert f"cmproxy.configmgr.{name}" in proc.stdout
    assert "EXAMPLES:" in proc.stdout and "RETURN VALUES:" in proc.stdout


@pytest.mark.parametrize("name", MODULES)
def test_documented_options_are_the_argument_spec(name: str, docs: dict[str, Any]) -> None:
    entry = docs[f"cmproxy.configmgr.{name}"]
    documented: dict[str, Any] = entry["doc"]["options"]
    assert entry["examples"].strip() and entry["return"]
    yaml.safe_load(entry["examples"])
    module = _import(f"modules.{name}")
    spec: dict[str, Any] = (
        module.argument_spec() if hasattr(module, "argument_spec") else _info_spec(module)
    )
    assert set(documented) == set(spec)
    for option, rules in spec.items():
        doc = documented[option]
        assert doc.get("type", "str") == rules.get("type", "str"), option
        assert sorted(doc.get("aliases", [])) == sorted(rules.get("aliases", [])), option
        assert doc.get("choices") == rules.get("choices"), option
        assert doc.get("default") == rules.get("default"), option
        assert bool(doc.get("required")) == bool(rules.get("required")), option
        if rules.get("type") == "list":
            assert doc.get("elements") == rules.get("elements"), option
    assert entry["doc"]["attributes"]["check_mode"]["support"] == "full"


def _info_spec(module: Any) -> dict[str, Any]:
    common = _import("module_utils.common")
    spec: dict[str, Any] = common.connection_argument_spec()
    spec.update(servers={"type": "list", "elements": "str"})
    spec.update(site_codes={"type": "list", "elements": "str"})
    assert "def main" in Path(module.__file__).read_text()
    return spec


def test_connection_options_map_onto_connection_info() -> None:
    common = _import("module_utils.common")
    fields = {a.name for a in ConnectionInfo.__attrs_attrs__}
    env_names = set(ENV_VARS.values())
    for name in common.PSRP_OPTIONS:
        assert name in ANSIBLE_OPTION_NAMES, f"{name} is not a psrp option cmproxy maps"
    for name in common.CMPROXY_OPTIONS:
        assert name in fields and name not in ANSIBLE_OPTION_NAMES
    for name, rules in common.connection_argument_spec().items():
        _, variables = rules["fallback"]
        assert set(variables) <= env_names, name
    # Every ConnectionInfo field can be reached from a module option.
    mapped = {ANSIBLE_OPTION_NAMES[n] for n in common.PSRP_OPTIONS} | set(common.CMPROXY_OPTIONS)
    assert mapped == fields
    assert common.PSRP_OPTIONS["remote_password"]["no_log"] is True


def test_connection_errors_name_the_options() -> None:
    """The ConnectionInfo fields a failure names are translated back to the module options
    that set them (the inverse of ANSIBLE_OPTION_NAMES where the names differ)."""
    common = _import("module_utils.common")
    renamed = {
        field: option
        for option, field in ANSIBLE_OPTION_NAMES.items()
        if option in common.PSRP_OPTIONS and option != field
    }
    assert renamed == common.CONNECTION_FIELDS
    error = cmproxy.ValidationError("server", "https://cm01:5986", "give only the host name")
    data = common.OptionNames().translate(error)
    assert (data["field"], data["sdk_field"]) == ("remote_addr", "server")
    assert data["message"] == "remote_addr='https://cm01:5986': give only the host name"


def test_sup_refusal_names_the_options_and_the_server() -> None:
    """R11 on the second server of the list, for an option the task did not turn on: the
    message names that server and the option that is on, and how to turn it off."""
    module = _import("modules.software_update_point_proxy")
    params = {"use_proxy": False, "use_proxy_for_adr": None}
    names = module.option_names(["sup-a.contoso.com", "sup-b.contoso.com"], params)
    error = cmproxy.RuleViolation("R11", "sup_flags[1]", "sync=off, ADR=on", "SDK wording")
    data = names.translate(error)
    assert (data["field"], data["value"], data["server"]) == (
        "use_proxy_for_adr",
        True,
        "sup-b.contoso.com",
    )
    assert data["message"].startswith(
        "[R11] use_proxy_for_adr=true (as it is now) for sup-b.contoso.com: it has no server proxy"
    )
    assert "use_proxy_for_adr=false." in data["message"]
    assert "SDK wording" not in data["message"] and "sup_flags" not in data["message"]


def test_proxy_errors_name_the_options() -> None:
    """ProxySettings fields become the module's proxy_* options; list entries the server."""
    module = _import("modules.site_system_proxy")
    names = module.option_names(["dp1.contoso.com", "dp2.contoso.com"], {})
    port = names.translate(cmproxy.ValidationError("proxy.port", 0, "must be from 1 to 65535"))
    assert port["message"] == "proxy_port=0: must be from 1 to 65535"
    unknown = names.translate(
        cmproxy.ValidationError(
            "proxies[1].server", "dp2.contoso.com", "is not a site system server"
        )
    )
    assert (unknown["field"], unknown["value"]) == ("servers", "dp2.contoso.com")
    assert unknown["message"] == "servers='dp2.contoso.com': is not a site system server"
    account = names.translate(
        cmproxy.ValidationError(
            "proxy.password", "********", "was given without an account; set 'account' too"
        )
    )
    assert (
        account["message"]
        == "proxy_password='********': was given without an account; set proxy_account too"
    )


def test_action_group_lists_every_module() -> None:
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    modules = sorted(p.stem for p in MODULE_DIR.glob("*.py") if p.stem != "__init__")
    assert sorted(runtime["action_groups"]["configmgr"]) == modules == sorted(MODULES)
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("cmproxy", "configmgr")


def _imports_cmproxy(node: ast.AST) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "cmproxy" for a in node.names)
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == "cmproxy"
    return False


def _top_level_cmproxy_imports(tree: ast.Module) -> list[int]:
    return [node.lineno for node in tree.body if _imports_cmproxy(node)]


@pytest.mark.parametrize("path", [*sorted(MODULE_DIR.glob("*.py")), COMMON], ids=lambda p: p.stem)
def test_cmproxy_only_behind_the_guard(path: Path) -> None:
    """No unguarded cmproxy import; cmproxy is imported once, in module_utils' try block."""
    tree = ast.parse(path.read_text())
    assert _top_level_cmproxy_imports(tree) == []
    guarded = [
        node
        for node in tree.body
        if isinstance(node, ast.Try)
        for inner in node.body
        if isinstance(inner, ast.Import | ast.ImportFrom)
        and "cmproxy" in ast.dump(inner)
        and any(isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers)
    ]
    nested = [n for n in ast.walk(tree) if _imports_cmproxy(n)]
    if path == COMMON:
        assert len(guarded) == 1 and len(nested) == 1
    else:
        assert nested == [], "modules reach cmproxy through module_utils.common only"


@pytest.mark.parametrize("path", [*sorted(MODULE_DIR.glob("*.py")), COMMON], ids=lambda p: p.stem)
def test_only_the_public_api(path: Path) -> None:
    """Every `cmproxy.X` the collection uses is in cmproxy.__all__ (principle 12)."""
    tree = ast.parse(path.read_text())
    used = {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute)
        and isinstance(n.value, ast.Name)
        and n.value.id == "cmproxy"
    }
    assert used, "expected the module to use cmproxy"
    assert used <= set(cmproxy.__all__), used - set(cmproxy.__all__)


class _FailingModule:
    """Just what `connection_info` reads of an AnsibleModule: its params and fail_json."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def fail_json(self, **result: Any) -> None:
        raise _TaskFailedError(result)


class _TaskFailedError(Exception):
    """What fail_json raises here (AnsibleModule's exits the process)."""


def test_a_transport_cmproxy_does_not_know_fails_the_task_naming_the_choices() -> None:
    """The argument spec leaves the transport's choices to cmproxy (one list, in
    cmproxy.transport_names), so the task still fails naming the option, value and choices."""
    common = _import("module_utils.common")
    params: dict[str, Any] = dict.fromkeys(common.connection_argument_spec())
    params.update(remote_addr="cm01.contoso.com", remote_user="u", remote_password="p")
    params.update(transport="ssh")
    with pytest.raises(_TaskFailedError) as failed:
        common.connection_info(_FailingModule(params))
    (result,) = failed.value.args
    assert result["error"]["field"] == "transport"
    assert result["error"]["value"] == "ssh"
    assert result["msg"] == f"transport='ssh': must be one of: {', '.join(TRANSPORT_NAMES)}"
