"""The import-linter contracts (pyproject.toml, `make lint`) cover every SDK module.

The "emulator imports nothing of the SDK" contract lists the SDK's modules one by one
(import-linter has no "all but this package"); a module added without its line would escape
it. `lint-imports` itself runs in `make lint`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_emulator_contract_names_every_sdk_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (emulator,) = [c for c in contracts if c.get("source_modules") == ["cmproxy.emulator"]]
    sdk = {
        f"cmproxy.{p.stem}"
        for p in (ROOT / "cmproxy").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    } - {"cmproxy.emulator"}
    assert sdk - set(emulator["forbidden_modules"]) == set()
