"""Run the cmproxy.configmgr collection for real: `ansible-playbook` as a subprocess, the
modules on the local connection with this venv's python, against an emulated site (real WinRM,
NTLM with message encryption) started in the test process.

Each test (fixtures in test_ansible_playbooks.py) gets a fresh emulator and a fresh HOME, so
the SDK's default journal lands in the test's tmp dir. A small callback plugin
(callback_plugins/cmproxy_results.py) writes every task's result to a JSON file, so a test can
assert on results as well as on ansible-playbook's output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from cmproxy.emulator.api import Emulator

REPO = Path(__file__).resolve().parents[2]
assert (REPO / "pyproject.toml").exists()
COLLECTIONS = REPO / "ansible"
COLLECTION = COLLECTIONS / "ansible_collections" / "cmproxy" / "configmgr"
PLAYBOOKS = COLLECTIONS / "playbooks"
BIN = Path(sys.executable).parent
CALLBACKS = Path(__file__).resolve().parent / "callback_plugins"
GROUP = "group/cmproxy.configmgr.configmgr"
MODULES = ("site_system_proxy", "software_update_point_proxy", "site_system_proxy_info")

PROXY_PASSWORD = "Pr0xy-S3cret-7f3a9c!"


def ansible_tool(name: str) -> str:
    tool = BIN / name
    if tool.exists():
        return str(tool)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install ansible-core)")
    return found


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of an ansible run: no outside ANSIBLE_*/CMPROXY_* settings leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANSIBLE_", "CMPROXY_")) and k not in {"HOME", "PYTHONPATH"}
    }
    local_tmp = home / "ansible-tmp"
    local_tmp.mkdir(parents=True, exist_ok=True)
    config = home / "ansible.cfg"
    config.write_text("[defaults]\n")
    env.update(
        HOME=str(home),
        ANSIBLE_CONFIG=str(config),
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS),
        ANSIBLE_LOCAL_TEMP=str(local_tmp),
        ANSIBLE_REMOTE_TEMP=str(local_tmp),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_DEPRECATION_WARNINGS="0",
        ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
        ANSIBLE_CALLBACKS_ENABLED="cmproxy_results",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    env.update(extra)
    return env


def connection_options(emu: Emulator) -> dict[str, Any]:
    """psrp-named connection options for the emulator: NTLM over HTTP, messages encrypted."""
    return {
        "remote_addr": emu.host,
        "port": emu.port,
        "protocol": "http",
        "auth": "ntlm",
        "remote_user": emu.username,
        "remote_password": emu.password,
        "message_encryption": "always",
        "site_code": "PS1",
        "ignore_proxy": True,
        "read_timeout": 30,
        "operation_timeout": 10,
    }


@attrs.frozen
class PlaybookRun:
    rc: int
    stdout: str
    stderr: str
    results: dict[str, Any]

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def result(self, name: str, host: str | None = None) -> dict[str, Any]:
        """The result of task `name` (on `host`, for a play over several hosts)."""
        results = self.results if host is None else self.results.get("_by_host", {}).get(host, {})
        value = results.get(name)
        assert isinstance(value, dict), f"no result for task {name!r} on {host}:\n{self.output}"
        return value


@attrs.define
class Runner:
    """Runs playbooks against one emulator from one tmp dir."""

    emulator: Emulator
    home: Path
    interpreter: str = sys.executable
    runs: int = 0

    def run(
        self,
        tasks: Sequence[Mapping[str, Any]],
        *,
        check: bool = False,
        diff: bool = False,
        verbosity: int = 0,
        defaults: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> PlaybookRun:
        """Run `tasks` (task dicts) in one play; results are keyed by task name."""
        self.runs += 1
        work = self.home / f"run{self.runs}"
        work.mkdir()
        play: dict[str, Any] = {
            "name": "cmproxy collection test",
            "hosts": "localhost",
            "gather_facts": False,
            "tasks": list(tasks),
        }
        options = connection_options(self.emulator) if defaults is None else dict(defaults)
        if options:
            play["module_defaults"] = {GROUP: options}
        playbook = work / "play.yml"
        playbook.write_text(yaml.safe_dump([play], sort_keys=False))
        inventory = work / "inventory.ini"
        inventory.write_text(
            f"localhost ansible_connection=local ansible_python_interpreter={self.interpreter}\n"
        )
        flags: list[str] = []
        if check:
            flags.append("--check")
        if diff:
            flags.append("--diff")
        if verbosity:
            flags.append("-" + "v" * verbosity)
        return run_playbook(playbook, inventory, self.home, work, options=flags, env=env)


def run_playbook(
    playbook: Path,
    inventory: Path,
    home: Path,
    work: Path,
    *,
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> PlaybookRun:
    """One `ansible-playbook` run from `work`; task results are collected by the callback."""
    out = work / "results.json"
    argv = [ansible_tool("ansible-playbook"), "-i", str(inventory), *options, str(playbook)]
    proc = subprocess.run(
        argv,
        cwd=work,
        env=clean_env(home, CMPROXY_TEST_RESULTS=str(out), **(env or {})),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    return PlaybookRun(proc.returncode, proc.stdout, proc.stderr, results)


def written_calls(emu: Emulator) -> list[Any]:
    """Calls that wrote to the site: the engine's `wrote` flag, or a ConfigMgr Set-/New-
    cmdlet (Set-Location from the session bootstrap is not a write)."""
    return [
        c
        for c in emu.state.call_log()
        if c.wrote or c.command.lower().startswith(("set-cm", "new-cm", "remove-cm"))
    ]
