"""The emulated `cmd.exe` of a WinRS shell (`cmproxy.emulator.cmd_shell`): how its stdin is cut
into lines. Only CR and LF end a line (Python's `str.splitlines` would also split at VT, FF,
the file/group/record separators, NEL and U+2028/U+2029)."""

from __future__ import annotations

import pytest

from cmproxy.emulator.cmd_shell import stdin_lines


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("a\r\nb\r\n", ["a", "b"]),
        ("a\nb\rc", ["a", "b", "c"]),
        ("a\r\n\r\nb", ["a", "", "b"]),
        ("", []),
        ("\r\n", [""]),
        # Only CR/LF end a line; splitlines() would also split at all of these.
        (
            "x\vy\fz\x1c1\x1d2\x1e3\x854\u20285\u20296\r\n",
            ["x\vy\fz\x1c1\x1d2\x1e3\x854\u20285\u20296"],
        ),
    ],
)
def test_stdin_lines(text: str, lines: list[str]) -> None:
    assert stdin_lines(text) == lines
