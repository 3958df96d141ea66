"""Ansible examples checked against the collection: every module named exists, and every
option given is one that module documents (its DOCUMENTATION and doc fragments), so a renamed
or misspelt option in the docs fails here rather than in a user's playbook."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .blocks import ROOT

COLLECTION = ROOT / "ansible" / "ansible_collections" / "cmproxy" / "configmgr"
PREFIX = "cmproxy.configmgr."
#: Task keywords that are not module options (playbook keywords).
TASK_KEYWORDS = frozenset(
    {
        "name",
        "register",
        "when",
        "loop",
        "vars",
        "tags",
        "check_mode",
        "diff",
        "no_log",
        "delegate_to",
        "become",
        "ignore_errors",
        "changed_when",
        "failed_when",
        "notify",
        "environment",
        "args",
        "until",
        "retries",
        "delay",
        "module_defaults",
    }
)


def _documentation(path: Path, name: str = "DOCUMENTATION") -> dict[str, Any]:
    """The DOCUMENTATION (or another fragment's) string of a module or doc fragment file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            doc = yaml.safe_load(str(node.value.value))
            assert isinstance(doc, dict), path
            return doc
    raise AssertionError(f"{path}: no {name}")


@cache
def module_options(module: str) -> frozenset[str]:
    """Every option (and alias) `cmproxy.configmgr.<module>` documents."""
    path = COLLECTION / "plugins" / "modules" / f"{module}.py"
    assert path.is_file(), f"{PREFIX}{module} is not a module of the collection"
    doc = _documentation(path)
    options: dict[str, Any] = dict(doc.get("options") or {})
    for fragment in doc.get("extends_documentation_fragment") or []:
        # `ns.coll.file` is the file's DOCUMENTATION, `ns.coll.file.part` its PART attribute.
        file, _, part = str(fragment).removeprefix(PREFIX).partition(".")
        fragment_path = COLLECTION / "plugins" / "doc_fragments" / f"{file}.py"
        options |= _documentation(fragment_path, part.upper() or "DOCUMENTATION")["options"]
    names = set(options)
    for spec in options.values():
        names |= set((spec or {}).get("aliases") or [])
    return frozenset(names)


def group_modules(group: str) -> list[str]:
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text(encoding="utf-8"))
    modules = runtime["action_groups"][group.removeprefix(f"group/{PREFIX}")]
    return [str(m) for m in modules]


def check_tasks(document: Any) -> int:
    """Check a playbook, or a list of tasks; return how many module calls were checked."""
    checked = 0
    items = document if isinstance(document, list) else [document]
    for item in items:
        assert isinstance(item, dict), item
        if "hosts" in item:  # a play
            for group, defaults in (item.get("module_defaults") or {}).items():
                for module in group_modules(group):
                    unknown = set(defaults) - module_options(module)
                    assert not unknown, f"{group}: {module} has no option {sorted(unknown)}"
                    checked += 1
            checked += check_tasks(item.get("tasks") or [])
            continue
        modules = [k for k in item if k.startswith(PREFIX)]
        for key in modules:
            options = item[key] or {}
            unknown = set(options) - module_options(key.removeprefix(PREFIX))
            assert not unknown, f"{key} has no option {sorted(unknown)}"
            checked += 1
        others = set(item) - TASK_KEYWORDS - set(modules)
        # Any other key is a module of another collection (debug, set_fact…): not ours to check.
        assert len(others) <= 1, f"a task calls one module, not {sorted(others)}"
    return checked
