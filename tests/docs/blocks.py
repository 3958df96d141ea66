"""Code blocks of the project's markdown, with the marks that say how each one is checked.

A fenced block is taken as written: its language says how it runs (`python`, `sh`/`console`,
`yaml`; `text` is output or a synopsis, not code). An HTML comment on the line just before the
fence changes that, and is the only way to: `<!-- not-run: REASON -->` (it cannot run here,
for REASON) or `<!-- raises: ExceptionName -->` (a Python block that shows an error).
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

ROOT = Path(__file__).resolve().parents[2]
#: The markdown whose blocks must run: README.md and docs/*.md.
DOC_FILES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

LANGUAGES = {
    "python": "python",
    "py": "python",
    "sh": "shell",
    "bash": "shell",
    "shell": "shell",
    "console": "console",
    "yaml": "yaml",
    "yml": "yaml",
    "text": "text",
}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARK = re.compile(r"^\s*<!--\s*(?P<kind>not-run|raises)\s*:\s*(?P<value>.+?)\s*-->\s*$")


@attrs.frozen
class Block:
    """One fenced block: where it is, its language, its text, and its mark if any."""

    path: Path
    line: int  # of the opening fence, 1-based
    language: str  # the fence's info string, as written ("" when none)
    text: str
    not_run: str = ""  # the reason, when marked <!-- not-run: … -->
    raises: str = ""  # the exception name, when marked <!-- raises: … -->

    @property
    def kind(self) -> str:
        """python, shell, console, yaml or text; "" for a language nothing here runs."""
        return LANGUAGES.get(self.language.lower(), "")

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}:{self.language or 'none'}"


def blocks(path: Path) -> list[Block]:
    """Every fenced block of `path`, in order, dedented by its fence's indentation."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j].removeprefix(indent))
            j += 1
        mark = _mark_before(lines, i)
        found.append(
            Block(
                path=path,
                line=i + 1,
                language=opening["info"].strip().split(" ")[0],
                text="\n".join(body) + "\n",
                not_run=mark[1] if mark[0] == "not-run" else "",
                raises=mark[1] if mark[0] == "raises" else "",
            )
        )
        i = j + 1
    return found


def _mark_before(lines: list[str], fence: int) -> tuple[str, str]:
    """The mark on the nearest non-blank line before the fence, if it is one."""
    k = fence - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    found = _MARK.match(lines[k]) if k >= 0 else None
    return (found["kind"], found["value"]) if found else ("", "")


def all_blocks() -> list[Block]:
    return [b for path in DOC_FILES for b in blocks(path)]


def console_commands(text: str) -> list[str]:
    """The commands of a console transcript: `$ ` lines and their `\\` continuations."""
    commands: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if current is not None:
            current.append(line)
        elif line.startswith("$ "):
            current = [line[2:]]
        else:
            continue  # output
        if not line.rstrip().endswith("\\"):
            commands.append("\n".join(current))
            current = None
    if current is not None:
        commands.append("\n".join(current))
    return commands
