"""Fixtures for the CLI tests: an emulated site in this process, the CLI as a subprocess.

Connection options reach the CLI through `CMPROXY_*` environment variables, as they would in a
shell; the site is the emulator's demo hierarchy over HTTPS (its generated CA is trusted) with
NTLM. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest

from cmproxy.emulator.api import Emulator

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
#: 15 servers of PS1, a new account (password from CMPROXY_NEW_PROXY_PASSWORD).
MIGRATION = str(EXAMPLES / "migrate-ps1.yaml")
#: 5 servers of PS2, two of them SUPs (proxy, then SUP options).
PS2_SUPS = str(EXAMPLES / "ps2-sup-proxies.yaml")
NEW_PROXY_PASSWORD = "N3w-Proxy-Passw0rd!"

#: Refused by R11: SUP proxy options on a server without a proxy.
R11_YAML = """\
version: 1
servers:
  cm-ps2-sup01.contoso.com:
    sup: {use_proxy: true}
"""


def proxy_view(emu: Emulator) -> dict[str, tuple[Any, ...]]:
    """Per server, what matters of its proxy and SUP options, read from the emulator's state.

    A disabled proxy is just "none": whether the product keeps stale fields is unconfirmed.
    """
    view: dict[str, tuple[Any, ...]] = {}
    for row in emu.state.snapshot()["sysres"]:
        props = {p["PropertyName"]: p for p in row["props"]}
        key = row["server"].lower()
        if row["role"] == "SMS Site System":
            if props["UseProxy"]["Value"]:
                anonymous = props["AnonymousProxyAccess"]["Value"]
                view[key + "|proxy"] = (
                    props["ProxyName"]["Value2"],
                    props["ProxyServerPort"]["Value"],
                    "" if anonymous else props["ProxyUserName"]["Value2"],
                )
            else:
                view[key + "|proxy"] = ("none",)
        elif row["role"] == "SMS Software Update Point":
            view[key + "|sup"] = (props["UseProxy"]["Value"], props["UseProxyForADR"]["Value"])
    return view


@attrs.frozen
class Site:
    """A running emulated site and a way to run `cmproxy` against it."""

    emu: Emulator
    env: dict[str, str]
    tmp: Path

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        drop: Sequence[str] = (),
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        full = {**self.env, **(env or {})}
        for name in drop:
            full.pop(name, None)
        return subprocess.run(
            [sys.executable, "-m", "cmproxy.cli", *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def run_many(self, *commands: Sequence[str]) -> list[subprocess.CompletedProcess[str]]:
        """Run read-only commands at the same time (they are independent)."""
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            return list(pool.map(lambda c: self.run(*c), commands))

    def run_json(self, *args: str, **kwargs: Any) -> tuple[int, Any]:
        result = self.run(*args, "--json", **kwargs)
        return result.returncode, json.loads(result.stdout)

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text, encoding="utf-8")
        return str(path)

    def writes(self) -> list[Any]:
        return [c for c in self.emu.state.call_log() if c.wrote]

    def kill_apply_after(self, writes: int, bound: float = 60) -> None:
        """Run `cmproxy apply -f MIGRATION --yes` and SIGKILL it once `writes`
        Set-CMSiteSystemServer writes landed: a client killed mid-change, for `recover`."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "cmproxy.cli", "apply", "-f", MIGRATION, "--yes"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + bound
            while len([w for w in self.writes() if w.command == "Set-CMSiteSystemServer"]) < writes:
                if time.monotonic() > deadline:
                    pytest.fail("the apply never wrote")
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(timeout=30)


def cli_env(emu: Emulator, tmp: Path, auth: str | None = None) -> dict[str, str]:
    """Basic over verified HTTPS by default (the SDK's tests do the same); NTLM with message
    encryption over HTTP when the emulator has no TLS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMPROXY_")}
    env.update(
        CMPROXY_SERVER=emu.host,
        CMPROXY_PORT=str(emu.port),
        CMPROXY_SCHEME=emu.scheme,
        CMPROXY_AUTH=auth or ("basic" if emu.https else "ntlm"),
        CMPROXY_USERNAME=emu.username,
        CMPROXY_PASSWORD=emu.password,
        CMPROXY_SITE_CODE="PS1",
        CMPROXY_JOURNAL=str(tmp / "journal.sqlite3"),
        CMPROXY_IGNORE_PROXY="true",
        CMPROXY_NEW_PROXY_PASSWORD=NEW_PROXY_PASSWORD,
        COLUMNS="200",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    if emu.cert_path:
        env["CMPROXY_CA_CERT"] = emu.cert_path
    else:
        env["CMPROXY_MESSAGE_ENCRYPTION"] = "always"
    return env


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with Emulator(allow_basic=True, seed="demo", https=True, receive_timeout=3.0) as emu:
        yield Site(emu, cli_env(emu, tmp_path), tmp_path)
