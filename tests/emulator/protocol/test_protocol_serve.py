"""`python -m cmproxy.emulator serve`: prints its endpoint, serves, exits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import winrm

from cmproxy.emulator import serve
from cmproxy.emulator.serve import build_parser

pytestmark = pytest.mark.e2e


def test_parse_users() -> None:
    assert serve.parse_users(["CONTOSO\\a:p:w"]) == {"CONTOSO\\a": "p:w"}
    with pytest.raises(SystemExit):
        serve.parse_users(["nopassword"])


@pytest.mark.parametrize("https", [False, True])
def test_serve_foreground_then_sigterm(tmp_path: Path, https: bool) -> None:
    state = tmp_path / "site.sqlite"
    args = [
        sys.executable,
        "-m",
        "cmproxy.emulator",
        "serve",
        "--port",
        "0",
        "--user",
        "CONTOSO\\ops:Ops-Passw0rd",
        "--state",
        str(state),
        "--seed",
        "empty",
    ]
    if https:
        args.append("--https")
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, line
        endpoint = line.rsplit(" ", 1)[-1].strip()
        kwargs: dict[str, str] = {}
        if https:
            cert_line = proc.stdout.readline()
            cert = cert_line.rsplit(" ", 1)[-1].strip()
            assert Path(cert).is_file()
            kwargs = {"server_cert_validation": "validate", "ca_trust_path": cert}
        session = winrm.Session(
            endpoint, auth=("CONTOSO\\ops", "Ops-Passw0rd"), transport="ntlm", **kwargs
        )
        r = session.run_ps("'alive'")
        assert r.status_code == 0, r.std_err
        assert r.std_out.strip() == b"alive"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert state.is_file()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_no_console_flag() -> None:
    assert build_parser().parse_args(["serve", "--no-console"]).no_console is True
    assert build_parser().parse_args(["serve"]).no_console is False
