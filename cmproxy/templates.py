"""Load the PowerShell templates shipped in the package (`cmproxy/ps_templates/` in a wheel).

The repository keeps them in top-level `ps_templates/`; the wheel build puts them inside the
package, and an editable install falls back to the repository copy.
"""

from __future__ import annotations

import functools
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from cmproxy.settings import row_projection

__all__ = ["PRELUDE", "load_prelude", "load_template", "template_names", "templates_root"]


@functools.cache
def templates_root() -> Traversable:
    """Where the .ps1 templates live for this installation."""
    packaged = resources.files("cmproxy").joinpath("ps_templates")
    if packaged.is_dir():
        return packaged
    source = Path(__file__).resolve().parent.parent / "ps_templates"
    if source.is_dir():
        return source
    raise FileNotFoundError("cmproxy's ps_templates are missing from this installation")


def template_names() -> list[str]:
    """Template names (file stems), sorted."""
    return sorted(
        p.name.removesuffix(".ps1") for p in templates_root().iterdir() if p.name.endswith(".ps1")
    )


@functools.cache
def load_template(name: str) -> str:
    """The text of template `name` (without `.ps1`)."""
    path = templates_root().joinpath(f"{name}.ps1")
    if not path.is_file():
        raise KeyError(f"no PowerShell template named {name!r}; known: {template_names()}")
    return path.read_text(encoding="utf-8")


#: The prelude's name (`ps_templates/prelude/Prelude.ps1`, not itself a template).
PRELUDE = "Prelude"


#: The line of the prelude after which the roles' own read projections go.
ROLE_SETTINGS_MARK = "    # ROLE SETTINGS:"


@functools.cache
def _prelude_file() -> str:
    path = templates_root().joinpath("prelude").joinpath(f"{PRELUDE}.ps1")
    if not path.is_file():
        raise FileNotFoundError("cmproxy's template prelude is missing from this installation")
    return path.read_text(encoding="utf-8")


@functools.cache
def _with_projections(text: str, projections: str) -> str:
    if not projections:
        return text
    at = text.index("\n", text.index(ROLE_SETTINGS_MARK)) + 1
    return text[:at] + projections + text[at:]


def load_prelude() -> str:
    """The functions both transports define before a template runs (`ps_templates/prelude/`;
    a PSRP pool gets them with its first pipeline, and again only when this text changes):
    the projections templates share, defined once, with the read projections of the settings
    roles registered (`cmproxy.settings.row_projection`), so a new role edits no template to
    be read."""
    return _with_projections(_prelude_file(), row_projection())
