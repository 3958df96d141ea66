"""The built wheel installs in a fresh venv and finds its PowerShell templates inside itself."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_wheel_installs_and_reads_a_template_from_the_installed_package(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("cmproxy-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # The dependencies come from this environment (a path line, so its editable-install hooks
    # are not run); cmproxy itself is the wheel, installed into the new venv.
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "outer-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import cmproxy, cmproxy.templates as t, pathlib;"
        "root = pathlib.Path(str(t.templates_root()));"
        f"assert str(root).startswith({site!r}), root;"
        "names = t.template_names(); assert names, names;"
        "text = t.load_template(names[0]); assert 'param(' in text;"
        "assert 'function ConvertTo-CMProxyRow' in t.load_prelude();"
        "print(cmproxy.__file__, len(names))"
    )
    out = subprocess.run(
        [python, "-I", "-c", probe], cwd=tmp_path, check=False, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(site)
