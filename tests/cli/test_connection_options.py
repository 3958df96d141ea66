"""The one connection-option table (`cmproxy.connection_options`, issue 16 point 3) against
every place that offers connection options: `ConnectionInfo`, the CLI, the Ansible argument
spec and the Ansible doc fragment. The Ansible files are read, not changed: a difference here
is a difference a user would meet."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from cmproxy.connection import ANSIBLE_OPTION_NAMES, ENV_VARS, ConnectionInfo
from cmproxy.connection_options import CONNECTION_OPTIONS, ConnectionOption

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "ansible"
PLUGINS = COLLECTIONS / "ansible_collections" / "cmproxy" / "configmgr" / "plugins"


def _ansible_spec() -> dict[str, dict[str, Any]]:
    pytest.importorskip("ansible.module_utils.basic")
    if str(COLLECTIONS) not in sys.path:
        sys.path.insert(0, str(COLLECTIONS))
    common = importlib.import_module(
        "ansible_collections.cmproxy.configmgr.plugins.module_utils.common"
    )
    spec: dict[str, dict[str, Any]] = common.connection_argument_spec()
    return spec


def _doc_fragment() -> dict[str, dict[str, Any]]:
    path = PLUGINS / "doc_fragments" / "connection.py"
    loader = importlib.util.spec_from_file_location("cmproxy_doc_fragment_connection", path)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    options: dict[str, dict[str, Any]] = yaml.safe_load(module.ModuleDocFragment.DOCUMENTATION)[
        "options"
    ]
    return options


def _ansible_type(option: ConnectionOption) -> str:
    return option.ansible_type or option.type


def _ansible_choices(option: ConnectionOption) -> tuple[str, ...]:
    return option.choices if option.ansible_choices else ()


def test_the_table_covers_every_connection_info_field_with_its_variable_and_default() -> None:
    fields = {a.name: a for a in attrs.fields(ConnectionInfo)}
    assert {o.field for o in CONNECTION_OPTIONS} == set(fields) == set(ENV_VARS)
    for option in CONNECTION_OPTIONS:
        assert ENV_VARS[option.field] == option.env
        default = fields[option.field].default
        if default is None or default is attrs.NOTHING:
            continue  # documented in words ("discovered", "5986 for https, …")
        shown = f"{default:g}" if isinstance(default, float) else str(default).lower()
        assert option.default.lower() == shown, option.field


def test_the_table_names_the_ansible_option_connection_info_maps() -> None:
    for option in CONNECTION_OPTIONS:
        if option.ansible in ANSIBLE_OPTION_NAMES:  # a psrp plugin name
            assert ANSIBLE_OPTION_NAMES[option.ansible] == option.field
        else:  # a cmproxy-only option, named as the field
            assert option.ansible == option.field


def test_the_ansible_argument_spec_is_the_table() -> None:
    spec = _ansible_spec()
    assert set(spec) == {o.ansible for o in CONNECTION_OPTIONS}
    for option in CONNECTION_OPTIONS:
        rules = spec[option.ansible]
        assert rules["type"] == _ansible_type(option), option.ansible
        assert tuple(rules.get("aliases", ())) == option.ansible_aliases, option.ansible
        assert tuple(rules.get("choices", ())) == _ansible_choices(option), option.ansible
        assert rules["fallback"][1] == [option.env], option.ansible
        assert bool(rules.get("no_log")) is option.secret, option.ansible


def test_the_ansible_doc_fragment_is_the_table() -> None:
    documented = _doc_fragment()
    assert set(documented) == {o.ansible for o in CONNECTION_OPTIONS}
    for option in CONNECTION_OPTIONS:
        doc = documented[option.ansible]
        assert doc["type"] == _ansible_type(option), option.ansible
        assert tuple(doc.get("aliases", ())) == option.ansible_aliases, option.ansible
        assert tuple(doc.get("choices", ())) == _ansible_choices(option), option.ansible
        assert f"E({option.env})" in " ".join(doc["description"]), option.ansible
        unlisted = () if option.ansible_choices else option.choices
        for choice in unlisted:  # choices the spec leaves to cmproxy are named in the text
            assert f"V({choice})" in " ".join(doc["description"]), (option.ansible, choice)


def test_every_cli_command_that_connects_offers_every_option() -> None:
    env = {"COLUMNS": "400", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    for command in ("show", "plan", "apply", "recover", "diagnose", "doctor"):
        out = subprocess.run(
            [sys.executable, "-m", "cmproxy.cli", command, "--help"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            timeout=60,
        ).stdout
        for option in CONNECTION_OPTIONS:
            assert option.flag in out, (command, option.flag)
            assert option.env in out, (command, option.env)
