"""The curated public surface: `__all__` is exact and every name resolves."""

from __future__ import annotations

import ast
from pathlib import Path

import cmproxy

ROOT = Path(__file__).resolve().parent.parent


def test_all_names_resolve_and_are_unique() -> None:
    assert len(cmproxy.__all__) == len(set(cmproxy.__all__))
    for name in cmproxy.__all__:
        assert hasattr(cmproxy, name), name


def test_all_lists_every_public_import_of_the_package() -> None:
    tree = ast.parse((ROOT / "cmproxy" / "__init__.py").read_text())
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    public = {n for n in imported if not n.startswith("_")}
    assert public <= set(cmproxy.__all__)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_emulator_imports_nothing_of_the_sdk() -> None:
    for path in (ROOT / "cmproxy" / "emulator").rglob("*.py"):
        for module in _imports(path):
            if module == "cmproxy" or module.startswith("cmproxy."):
                assert module.startswith("cmproxy.emulator"), f"{path}: imports {module}"


def test_the_sdk_never_imports_the_emulator_except_the_cli() -> None:
    for path in (ROOT / "cmproxy").rglob("*.py"):
        if "emulator" in path.parts or "cli" in path.parts:
            continue
        for module in _imports(path):
            assert not module.startswith("cmproxy.emulator"), f"{path}: imports {module}"


def test_the_pure_core_knows_no_network() -> None:
    network = ("socket", "requests", "pypsrp", "winrm", "psrpcore", "spnego", "http")
    for name in ("model.py", "roles.py", "plan.py", "invocation.py", "_exceptions.py"):
        for module in _imports(ROOT / "cmproxy" / name):
            assert not module.startswith(network), f"{name}: imports {module}"


def test_the_doctor_is_public() -> None:
    """`cmproxy.doctor(session, write_test=None) -> DoctorReport` (docs/live-testing.md)."""
    assert {"doctor", "DoctorReport"} <= set(cmproxy.__all__)
    from cmproxy.doctor import DoctorReport, doctor

    assert cmproxy.doctor is doctor
    assert cmproxy.DoctorReport is DoctorReport
