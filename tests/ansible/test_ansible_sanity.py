"""`ansible-test sanity` on the collection, as the Ansible community runs it on a collection
before it is published: validate-modules, ansible-doc, import, compile, pep8, pylint,
yamllint, runtime-metadata and the code-smell checks.

ansible-test runs each check in a virtual environment of its own with pinned tools, built on
first use and cached (here under ~/.cache/cmproxy-ansible-test, its HOME); the first run
installs them from the package index and takes a few minutes, later runs about 20 s. The pip
bootstrap script ansible-test would download from its own CI host is not reachable here, so
get_pip_offline.py is put where ansible-test says a downloaded copy belongs.

The collection is copied to a tmp dir laid out as ansible_collections/<namespace>/<name>, as
ansible-test requires, so its output never lands in the source tree.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from cmproxy_ansible_harness import COLLECTION, ansible_tool

HERE = Path(__file__).resolve().parent
GET_PIP = HERE / "get_pip_offline.py"
IGNORES = COLLECTION / "tests" / "sanity"

#: Checks with nothing to check in this collection (ansible-test reports them skipped, "No
#: tests applicable"): no changelogs/ fragments, no __init__.py, no PowerShell, no shell.
NOT_APPLICABLE = {"changelog", "empty-init", "pslint", "shellcheck"}
#: Checks that must have run and passed (the rest of ansible-test's list must pass too).
MUST_RUN = {
    "action-plugin-docs",
    "ansible-doc",
    "compile",
    "ignores",
    "import",
    "pep8",
    "pylint",
    "runtime-metadata",
    "validate-modules",
    "yamllint",
}
#: pip's words when the package index cannot be reached (the tools cannot be installed).
NO_INDEX = re.compile(r"Could not fetch URL|No matching distribution found|Network is unreachable")


def cache_home() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    home = base / "cmproxy-ansible-test"
    home.mkdir(parents=True, exist_ok=True)
    return home


def sanity(collection: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "CMPROXY_"))}
    env["HOME"] = str(home)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    return subprocess.run(
        [ansible_tool("ansible-test"), "sanity", "--python", version, "--color", "no", "--junit"],
        cwd=collection,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def junit_results(collection: Path) -> dict[str, str]:
    """Each check's outcome from ansible-test's junit files: passed, skipped or failed."""
    results: dict[str, str] = {}
    for path in sorted((collection / "tests" / "output" / "junit").glob("*.xml")):
        for case in ET.parse(path).iter("testcase"):  # noqa: S314 - ansible-test's own file
            name = re.sub(r"-python-\d+\.\d+$", "", case.attrib["name"])
            if case.find("failure") is not None or case.find("error") is not None:
                results[name] = "failed"
            elif case.find("skipped") is not None:
                results[name] = "skipped"
            else:
                results[name] = "passed"
    return results


@pytest.mark.timeout(1500)
def test_ansible_test_sanity(tmp_path: Path) -> None:
    collection = tmp_path / "ansible_collections" / "cmproxy" / "configmgr"
    shutil.copytree(
        COLLECTION, collection, ignore=shutil.ignore_patterns("output", "__pycache__", "*.pyc")
    )
    home = cache_home()
    proc = sanity(collection, home)
    asked = re.search(r"can be manually downloaded and saved to: (\S+)", proc.stdout + proc.stderr)
    if asked:
        Path(asked.group(1)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GET_PIP, asked.group(1))
        proc = sanity(collection, home)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and NO_INDEX.search(output) and "ERROR: Found" not in output:
        pytest.skip(f"ansible-test cannot install its sanity tools:\n{output[-2000:]}")
    assert proc.returncode == 0, output
    results = junit_results(collection)
    assert "failed" not in results.values(), results
    skipped = {name for name, outcome in results.items() if outcome == "skipped"}
    assert skipped == NOT_APPLICABLE, results
    assert {name for name, outcome in results.items() if outcome == "passed"} >= MUST_RUN


def test_every_ignore_is_explained() -> None:
    """The ignore files only waive checks that do not apply to an MIT collection, each line
    with its reason (ansible-test allows a trailing `# comment`)."""
    files = sorted(IGNORES.glob("ignore-*.txt"))
    assert files
    for path in files:
        for line in path.read_text().splitlines():
            entry, _, reason = line.partition(" # ")
            target, check = entry.split()
            assert (COLLECTION / target).is_file(), line
            assert check == "validate-modules:missing-gplv3-license", line
            assert "MIT" in reason, line
