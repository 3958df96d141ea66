"""Every code block of README.md and docs/*.md runs as written (issue 17, point 5).

One demo emulator serves the whole module, reached the way the docs say (docs/cli.md,
"Rehearse against the emulator"): `CMPROXY_*` variables for an HTTPS endpoint on 127.0.0.1,
NTLM, its CA file, site PS1. Python blocks run in order in one namespace per file (a doctest
block as a doctest); shell and console blocks run in bash with this environment's `cmproxy`
and `python` first on PATH; YAML blocks are loaded, desired states parsed by cmproxy and
Ansible tasks checked against the collection's documented options. A block that cannot run
says so in the markdown (`<!-- not-run: REASON -->`) and is reported skipped with the reason;
so is a `text` block (output or a synopsis). Run with `-rs` to see the list.
"""

from __future__ import annotations

import builtins
import doctest
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import cmproxy
from cmproxy.emulator.api import Emulator

from .ansible_tasks import PREFIX, check_tasks
from .blocks import ROOT, Block, all_blocks, console_commands

pytestmark = pytest.mark.e2e

BLOCKS = all_blocks()

#: What the workspace links to, so blocks find `examples/…`, `benchmarks/…`, `ansible/…`.
LINKED = ("examples", "benchmarks", "ansible", "docs", "ps_templates", "pyproject.toml")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where blocks run: a fresh directory that sees the repository's examples and tools."""
    work = tmp_path_factory.mktemp("docs")
    for name in LINKED:
        (work / name).symlink_to(ROOT / name)
    (work / "home").mkdir()
    return work


@pytest.fixture(scope="module")
def docs_env(workspace: Path) -> Iterator[dict[str, str]]:
    """The demo site over HTTPS and the variables the docs export to reach it."""
    with Emulator(seed="demo", https=True) as emu:
        assert emu.cert_path is not None
        yield {
            "CMPROXY_SERVER": "127.0.0.1",
            "CMPROXY_PORT": str(emu.port),
            "CMPROXY_AUTH": "ntlm",
            "CMPROXY_USERNAME": emu.username,
            "CMPROXY_PASSWORD": emu.password,
            "CMPROXY_CA_CERT": str(emu.cert_path),
            "CMPROXY_IGNORE_PROXY": "true",
            "CMPROXY_SITE_CODE": "PS1",
            "CMPROXY_JOURNAL": str(workspace / "journal.sqlite3"),
            "HOME": str(workspace / "home"),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }


class _Namespaces:
    """One namespace per file; a block runs after the file's earlier Python blocks."""

    def __init__(self) -> None:
        self.globs: dict[Path, dict[str, Any]] = {}
        self.done: dict[Path, int] = {}

    def run_up_to(self, block: Block) -> None:
        globs = self.globs.setdefault(block.path, {"__name__": "__docs__"})
        for earlier in BLOCKS:
            if earlier.path != block.path or earlier.line >= block.line:
                continue
            fresh = earlier.line > self.done.get(block.path, 0)
            if earlier.kind == "python" and not earlier.not_run and fresh:
                _run_python(earlier, globs)
                self.done[block.path] = earlier.line
        _run_python(block, globs)
        self.done[block.path] = block.line


@pytest.fixture(scope="module")
def namespaces() -> _Namespaces:
    return _Namespaces()


def _exception(name: str) -> type[BaseException]:
    found = getattr(cmproxy, name, None) or getattr(builtins, name, None)
    assert isinstance(found, type) and issubclass(found, BaseException), name
    return found


def _run_python(block: Block, globs: dict[str, Any]) -> None:
    if block.text.lstrip().startswith(">>>"):
        test = doctest.DocTestParser().get_doctest(block.text, globs, block.id, None, block.line)
        runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
        runner.run(test, clear_globs=False)
        globs.update(test.globs)  # DocTest works on a copy; later blocks see its names
        assert runner.failures == 0, f"{block.id}: doctest failed (see the output above)"
        return
    code = compile(block.text, block.id, "exec")
    if block.raises:
        with pytest.raises(_exception(block.raises)):
            exec(code, globs)  # noqa: S102 - the docs' own example
    else:
        exec(code, globs)  # noqa: S102 - the docs' own example


def _run_shell(block: Block, env: dict[str, str], cwd: Path) -> None:
    lines = console_commands(block.text) if block.kind == "console" else [block.text]
    assert lines, f"{block.id}: a console block without a `$ ` command"
    assert "emulator serve" not in block.text, (
        f"{block.id}: a foreground server never returns; start it from Python or mark the "
        "block <!-- not-run: … -->"
    )
    script = "set -euo pipefail\n" + "\n".join(lines)
    bindir = str(Path(sys.executable).parent)
    environ = {**os.environ, **env, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        env=environ,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, (
        f"{block.id}: exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    )


def _is_inventory(document: object) -> bool:
    """An Ansible YAML inventory: groups (mappings) that hold `hosts`, `children` or `vars`."""
    return isinstance(document, dict) and all(
        isinstance(group, dict) and {"hosts", "children", "vars"} & set(group)
        for group in document.values()
    )


def _check_inventory(block: Block) -> None:
    """Parsed by ansible-inventory itself, and every host it names comes out of it."""
    path = block.path.parent / f".{block.path.stem}-{block.line}-inventory.yml"
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / path.name
    tmp.write_text(block.text, encoding="utf-8")
    try:
        done = subprocess.run(
            [str(Path(sys.executable).with_name("ansible-inventory")), "-i", str(tmp), "--list"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        tmp.unlink()
    assert done.returncode == 0, f"{block.id}: {done.stderr[-2000:]}"
    assert "[WARNING]" not in done.stderr, f"{block.id}: {done.stderr[-2000:]}"
    listed = yaml.safe_load(done.stdout)["_meta"]["hostvars"]
    named = {h for g in yaml.safe_load(block.text).values() for h in (g.get("hosts") or {})}
    assert named and named <= set(listed), f"{block.id}: hosts {named} not all in {set(listed)}"


def _check_yaml(block: Block) -> None:
    document = yaml.safe_load(block.text)
    if isinstance(document, dict) and {"version", "sites", "servers"} & set(document):
        cmproxy.parse_desired(block.text, source=block.id)
    elif PREFIX in block.text:
        assert check_tasks(document) > 0, f"{block.id}: no {PREFIX}* module call to check"
    elif _is_inventory(document):
        _check_inventory(block)
    else:
        raise AssertionError(f"{block.id}: YAML that is neither a desired state nor tasks")


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block_runs_as_written(
    block: Block,
    docs_env: dict[str, str],
    workspace: Path,
    namespaces: _Namespaces,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if block.not_run:
        pytest.skip(f"not-run: {block.not_run}")
    if block.kind == "text":
        pytest.skip("text: output or a synopsis, not code")
    assert block.kind, (
        f"{block.id}: a block in {block.language or 'no language'!r}; give it python, sh, "
        "console, yaml or text, or mark it <!-- not-run: REASON -->"
    )
    assert not block.raises or block.kind == "python", f"{block.id}: raises: is for Python"
    for name, value in docs_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(workspace)
    if block.kind == "python":
        namespaces.run_up_to(block)
    elif block.kind in ("shell", "console"):
        _run_shell(block, docs_env, workspace)
    else:
        _check_yaml(block)


def test_every_markdown_file_is_read_and_has_its_blocks() -> None:
    """The extractor sees the files and blocks a reader sees (a parser bug would hide some)."""
    by_file: dict[str, int] = {}
    for block in BLOCKS:
        name = str(block.path.relative_to(ROOT))
        by_file[name] = by_file.get(name, 0) + 1
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        fences = sum(
            1
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.lstrip().startswith("```")
        )
        assert by_file.get(str(path.relative_to(ROOT)), 0) * 2 == fences, path


def test_every_name_the_docs_give_as_cmproxy_dot_something_exists() -> None:
    """`cmproxy.run_transactions` was named in docs/transactions.md and not exported."""
    missing = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in sorted(set(re.findall(r"\bcmproxy((?:\.\w+)+)", path.read_text()))):
            if name.startswith(".configmgr"):
                continue  # the Ansible collection's names (cmproxy.configmgr.*)
            parts = name.strip(".").split(".")
            found: Any = cmproxy
            for i, part in enumerate(parts):
                if hasattr(found, part):
                    found = getattr(found, part)
                    continue
                try:
                    found = __import__("cmproxy." + ".".join(parts[: i + 1]), fromlist=["_"])
                except ImportError:
                    missing.append(f"{path.name}: cmproxy{name}")
                    break
    assert not missing, missing
