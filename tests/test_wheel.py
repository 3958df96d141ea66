"""The built wheel: what it ships, and what a fresh venv gets with and without extras.

Two installs of the same wheel. The first reuses this environment's dependencies (a path line,
so it costs nothing) to check what is inside the wheel: templates, examples, version, license,
the pytest plugin's entry point. The second is what a user gets: `pip install` into an empty
venv, dependencies resolved by pip (its cache makes repeated runs cheap) — no emulator
dependency without the `emulator` extra, and the demo starting with it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EMULATOR_MODULES = ("psrpcore", "tree_sitter", "tree_sitter_powershell", "defusedxml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = dist.glob("cmproxy-*.whl")
    return found


def _venv(path: Path) -> tuple[Path, str]:
    venv.create(path, with_pip=True)
    python = path / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return python, site


def _run(cmd: list[str | Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        cmd, cwd=cwd, check=False, capture_output=True, text=True, env={**environ, **env}
    )


@pytest.mark.timeout(600)
def test_the_wheel_ships_templates_examples_license_version_and_the_pytest_plugin(
    wheel: Path, tmp_path: Path
) -> None:
    python, site = _venv(tmp_path / "venv")
    # The dependencies come from this environment (a path line, so its editable-install hooks
    # are not run); cmproxy itself is the wheel, installed into the new venv.
    Path(site, "outer-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel], tmp_path
    )
    assert installed.returncode == 0, installed.stderr
    probe = (
        "import cmproxy, cmproxy.templates as t, cmproxy.desired as d, pathlib;"
        "from importlib import metadata;"
        "root = pathlib.Path(str(t.templates_root()));"
        f"assert str(root).startswith({site!r}), root;"
        "names = t.template_names(); assert names, names;"
        "text = t.load_template(names[0]); assert 'param(' in text;"
        f"assert str(d.examples_dir()).startswith({site!r}), d.examples_dir();"
        "examples = sorted(p.name for p in d.examples_dir().glob('*.yaml'));"
        "[d.load_desired(d.examples_dir() / n) for n in examples if n != 'migrate-ps1.yaml'];"
        "dist = metadata.distribution('cmproxy');"
        "assert dist.version == cmproxy.__version__, (dist.version, cmproxy.__version__);"
        "eps = {e.name: e.value for e in dist.entry_points.select(group='pytest11')};"
        "assert eps == {'cmproxy.emulator.pytest_plugin': 'cmproxy.emulator.pytest_plugin'}, eps;"
        "assert any(f.name == 'LICENSE' for f in dist.files), 'no LICENSE';"
        "assert dist.metadata['License-Expression'] == 'MIT', dist.metadata['License-Expression'];"
        "assert dist.metadata.get_all('Classifier'), 'no classifiers';"
        "assert 'function ConvertTo-CMProxyRow' in t.load_prelude();"
        "print(cmproxy.__file__, len(names), examples)"
    )
    out = _run([python, "-I", "-c", probe], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(site)
    assert "migrate-ps1.yaml" in out.stdout
    # --help names where the examples are, in the installed package.
    helped = _run(
        [tmp_path / "venv" / "bin" / "cmproxy", "plan", "--help"], tmp_path, COLUMNS="400"
    )
    assert helped.returncode == 0, helped.stderr
    assert f"(examples: {site}/cmproxy/examples)" in helped.stdout

    # The entry point gives any project the emulator fixtures; a conftest that also names the
    # plugin (as this repository's does) loads it once.
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_site.py").write_text(
        "def test_demo_site(cm_emulator):\n    assert cm_emulator.endpoint.startswith('http://')\n"
    )
    alone = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    (project / "conftest.py").write_text('pytest_plugins = ["cmproxy.emulator.pytest_plugin"]\n')
    named = _run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider"], project)
    assert named.returncode == 0, named.stdout + named.stderr


@pytest.mark.timeout(900)
def test_a_fresh_install_has_no_emulator_dependency_and_the_extra_brings_the_demo(
    wheel: Path, tmp_path: Path
) -> None:
    python, _site = _venv(tmp_path / "venv")
    cli = tmp_path / "venv" / "bin" / "cmproxy"
    pip: list[str | Path] = [python, "-m", "pip", "install", "--quiet"]

    base = _run([*pip, wheel], tmp_path)
    assert base.returncode == 0, base.stdout + base.stderr
    probe = (
        "import importlib.util, cmproxy;"
        f"print(sorted(m for m in {EMULATOR_MODULES!r} if importlib.util.find_spec(m)))"
    )
    imported = _run([python, "-I", "-c", probe], tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"
    # Without the extra the demo says, in one line, what to install.
    missing = _run([cli, "demo"], tmp_path, COLUMNS="200")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert missing.stderr.strip().splitlines() == [
        "error: the cmproxy emulator is not installed: pip install 'cmproxy[emulator]' "
        "(missing: psrpcore, tree_sitter, tree_sitter_powershell, defusedxml)"
    ]

    extra = _run([*pip, f"{wheel}[emulator]"], tmp_path)
    assert extra.returncode == 0, extra.stdout + extra.stderr
    demo = _run([cli, "demo"], tmp_path, NO_PROXY="127.0.0.1,localhost", COLUMNS="160")
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "Stop the emulator" in demo.stdout
