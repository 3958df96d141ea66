"""The emulator engine's layers, checked on the source (an import-linter contract as a test).

language (parse, evaluate, operators, members) ← stdlib (generic cmdlets) ← configmgr (the
product: cmdlets, site objects, the console machine) ← runspace (puts them together). A layer
imports only the layers below it, `TYPE_CHECKING` imports included, and the engine imports
nothing of the SDK nor of the emulator's protocol side. The runtime imports between engine
modules form no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cmproxy.emulator.engine as engine_pkg

ENGINE = Path(engine_pkg.__file__).parent
PKG = "cmproxy.emulator.engine"
SETTINGS = "cmproxy.emulator.settings"
PRODUCT_DATA = ("cmproxy.emulator.state", "cmproxy.emulator.seeds")

#: What each layer may import of cmproxy (module prefixes).
ALLOWED: dict[str, tuple[str, ...]] = {
    "language": (f"{PKG}.language", SETTINGS),
    "stdlib": (f"{PKG}.language", f"{PKG}.stdlib", SETTINGS),
    "configmgr": (f"{PKG}.language", f"{PKG}.stdlib", f"{PKG}.configmgr", SETTINGS, *PRODUCT_DATA),
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ENGINE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join([PKG, *parts])


def _imports(path: Path, *, runtime_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every `cmproxy` import in the file, at any depth; `runtime_only`
    leaves out those under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skipped |= {id(n) for n in ast.walk(node)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            base = node.module
            names = [f"{base}.{a.name}" for a in node.names]
            # `from pkg import module` imports the module; `from module import name` the module.
            found += [(node.lineno, n if _is_module(n) else base) for n in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
    return sorted((line, m) for line, m in found if m == "cmproxy" or m.startswith("cmproxy."))


def _is_module(dotted: str) -> bool:
    if not dotted.startswith(PKG + ".") and dotted != PKG:
        return False
    rel = dotted[len(PKG) + 1 :].split(".") if dotted != PKG else []
    base = ENGINE.joinpath(*rel)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _layer_files(layer: str) -> list[Path]:
    return sorted((ENGINE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    files = _layer_files(layer)
    assert files, f"no modules in {layer}/"
    bad = [
        f"{path.relative_to(ENGINE)}:{line}: {module}"
        for path in files
        for line, module in _imports(path)
        if not any(module == a or module.startswith(a + ".") for a in ALLOWED[layer])
    ]
    assert bad == []


def test_the_engine_imports_nothing_of_the_sdk_nor_of_the_protocol_side() -> None:
    """The engine sits behind `engine/api.py`: it imports its own packages, the settings and
    the site's data, never the SDK nor the shells, WSMan or HTTP modules that call it."""
    allowed = (PKG, SETTINGS, *PRODUCT_DATA)
    bad = [
        f"{path.relative_to(ENGINE)}:{line}: {module}"
        for path in sorted(ENGINE.rglob("*.py"))
        for line, module in _imports(path)
        if not any(module == a or module.startswith(a + ".") for a in allowed)
    ]
    assert bad == []


def test_no_import_cycle_between_engine_modules() -> None:
    """Runtime imports only (a `TYPE_CHECKING` import inside one layer, for annotations, is
    no cycle); a package's `__init__` importing its own modules is not an edge back."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ENGINE.rglob("*.py")):
        name = _module_name(path)
        graph[name] = {
            m for _, m in _imports(path, runtime_only=True) if m.startswith(PKG) and m != name
        }
    for name in list(graph):
        if (ENGINE / Path(*name.split(".")[3:]) / "__init__.py").is_file():
            graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m) :], m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert cycles == []


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The rule is not vacuous: an import of the product from the language is reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from cmproxy.emulator.engine.configmgr.objects import site_obj\n"
        "from cmproxy.emulator.engine.language import conv\n",
        encoding="utf-8",
    )
    found = [m for _, m in _imports(probe)]
    assert found == [
        "cmproxy.emulator.engine.configmgr.objects",
        "cmproxy.emulator.engine.language.conv",
    ]
    assert [m for _, m in _imports(probe, runtime_only=True)] == [
        "cmproxy.emulator.engine.language.conv"
    ]
    assert not any(m.startswith(a) for m in found[:1] for a in ALLOWED["language"]), (
        "the product must not be allowed to the language layer"
    )
