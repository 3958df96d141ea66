"""Hostile local inputs to the `cmproxy` command: one line on stderr, a non-zero exit, no
traceback (a journal from a newer cmproxy, a full disk, a busy emulator port, a SIGKILLed
emulator's credential file)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cmproxy.journal import SCHEMA_VERSION, Journal

from .conftest import Site

pytestmark = pytest.mark.e2e


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_recover_refuses_a_journal_from_a_newer_cmproxy(site: Site) -> None:
    path = site.tmp / "journal.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    line = _one_line_error(site.run("recover"))
    assert str(path) in line
    assert f"version {SCHEMA_VERSION + 1}" in line


def test_recover_on_a_full_disk_is_one_line(
    site: Site, mount_tmpfs: Callable[[str, str], Path]
) -> None:
    mount = mount_tmpfs("full", "64k")
    filler = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk
        while os.write(filler, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(filler)
    journal = mount / "journal.sqlite3"
    line = _one_line_error(site.run("recover", env={"CMPROXY_JOURNAL": str(journal)}))
    assert str(journal) in line
    assert "full" in line


def test_recover_on_a_read_only_journal_is_one_line(
    site: Site, mount_tmpfs: Callable[[str, str], Path]
) -> None:
    mount = mount_tmpfs("ro", "1m")
    journal = mount / "journal.sqlite3"
    Journal(journal).close()
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    line = _one_line_error(site.run("recover", env={"CMPROXY_JOURNAL": str(journal)}))
    assert str(journal) in line
    assert "read-only" in line


def test_emulator_serve_on_a_busy_port_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "cmproxy.cli", "emulator", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    line = _one_line_error(result)
    assert str(port) in line
    assert "in use" in line


def test_a_sigkilled_emulator_leaves_no_password_on_disk(tmp_path: Path) -> None:
    """The emulator's NTLM user file holds clear passwords: nothing with the password may
    remain in the temp directory after `cmproxy emulator serve` is SIGKILLed."""
    marker = f"Pw-{uuid.uuid4().hex}"  # appears nowhere else
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # where tempfile puts everything
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cmproxy.cli",
            "emulator",
            "serve",
            "--port",
            "0",
            "--user",
            f"alice:{marker}",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        seen = ""
        while "users:" not in seen and time.monotonic() < deadline:
            seen += proc.stdout.readline()
        assert "users:" in seen, seen
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    files = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert files, "the emulator keeps its state and certificate under TMPDIR"
    for path in files:
        assert marker.encode() not in path.read_bytes(), path
