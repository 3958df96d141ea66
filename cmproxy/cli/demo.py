"""`cmproxy demo`: a proxy migration rehearsed end to end against the built-in emulated site.

The scenario, in the order an administrator would live it:

1. start the emulator (demo hierarchy: CAS, primaries PS1/PS2, secondary SS1, ~40 servers)
   over HTTPS with its generated certificate verified, in a temporary directory;
2. connect with the SDK (NTLM over TLS) and show site PS1's proxies;
3. plan a migration of PS1 to a new proxy host and port, SUP options on, a new proxy account
   (its password from `CMPROXY_DEMO_PROXY_PASSWORD` or generated, never printed);
4. show a request the rules refuse (R11: SUP options on a server without a proxy) — and that
   nothing was written;
5. apply the migration (one transaction per server) and print the results table;
6. diagnose the site: the seeded ruleengine.log 12007 failures (R12/R13) and what is left;
7. stop the emulator and remove its files.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.rule import Rule
from rich.text import Text

import cmproxy
from cmproxy import ConnectionInfo, Journal, RuleViolation, Session
from cmproxy.cli.render import diagnosis_table, plan_tables, results_table, state_tables
from cmproxy.cli.ui import Ui

__all__ = ["DEMO_SITE", "MIGRATION_YAML", "PASSWORD_ENV", "REFUSED_YAML", "run_demo"]

DEMO_SITE = "PS1"
PASSWORD_ENV = "CMPROXY_DEMO_PROXY_PASSWORD"  # noqa: S105 - the name of a variable

#: The migration: every PS1 server to proxy2.contoso.com:3128 as a new account, SUP options
#: on; Connected Cache DPs unauthenticated (they refuse an account); the DMZ DP keeps its proxy.
MIGRATION_YAML = f"""\
version: 1
sites:
  PS1:
    proxy: {{server: proxy2.contoso.com, port: 3128, account: CONTOSO\\svc-proxy2}}
    sup: {{use_proxy: true, use_proxy_for_adr: true}}
servers:
  cm-ps1-dp03.contoso.com:
    proxy: {{server: proxy2.contoso.com, port: 3128}}
  cm-ps1-dp04.contoso.com:
    proxy: {{server: proxy2.contoso.com, port: 3128}}
  cm-ps1-dp05.contoso.com:
    proxy: {{server: proxy-dmz.contoso.com, port: 3128}}
accounts:
  - name: CONTOSO\\svc-proxy2
    password_env: {PASSWORD_ENV}
"""

#: Refused by R11: SUP proxy options on a server that has no proxy.
REFUSED_YAML = """\
version: 1
servers:
  cm-ps2-sup01.contoso.com:
    sup: {use_proxy: true}
"""


class _Emulated(Protocol):
    """What the demo uses of the emulator (`cmproxy.cli.emulator.start_demo_emulator`: the CLI
    is the one SDK face that loads the emulator, and hands it to the demo)."""

    host: str
    port: int
    state: Any

    @property
    def endpoint(self) -> str: ...
    @property
    def cert_path(self) -> str | None: ...
    @property
    def username(self) -> str: ...
    @property
    def password(self) -> str: ...
    def close(self) -> None: ...


def _step(console: Console, title: str) -> None:
    console.print()
    console.print(Rule(Text(title, style="bold"), align="left"))


def _writes(emu: _Emulated) -> int:
    return sum(1 for call in emu.state.call_log() if call.wrote)


def run_demo(console: Console, start_emulator: Callable[[str], _Emulated]) -> int:
    """Run the scenario, printing to `console`; 0 when every step went as expected.

    `start_emulator(state_path)` starts the emulated demo hierarchy over HTTPS.
    """
    started = time.monotonic()
    if not os.environ.get(PASSWORD_ENV):
        os.environ[PASSWORD_ENV] = secrets.token_urlsafe(18)
        origin = "generated for this run (not shown)"
    else:
        origin = f"from ${PASSWORD_ENV} (not shown)"
    with tempfile.TemporaryDirectory(prefix="cmproxy-demo-") as tmp:
        _step(console, "1. Start the emulated ConfigMgr hierarchy")
        emu = start_emulator(str(Path(tmp) / "site.sqlite"))
        try:
            console.print(
                f"WinRM endpoint {emu.endpoint} (HTTPS, self-signed CA {emu.cert_path}); "
                f"user {emu.username}"
            )
            info = ConnectionInfo(
                server=emu.host,
                port=emu.port,
                scheme="https",
                auth="ntlm",
                username=emu.username,
                password=emu.password,
                ca_cert=emu.cert_path,
                site_code=DEMO_SITE,
                ignore_proxy=True,
            )
            journal = Journal(Path(tmp) / "journal.sqlite3")
            try:
                with Session(info) as session:
                    ok, summary = _scenario(console, emu, session, journal, origin=origin)
                _step(console, "7. Stop the emulator")
                elapsed = time.monotonic() - started
                style = "bold green" if ok else "bold red"
                console.print(Text(f"Done in {elapsed:.1f}s: {summary}.", style=style))
                return 0 if ok else 1
            finally:
                journal.close()
        finally:
            emu.close()


def _scenario(
    console: Console,
    emu: _Emulated,
    session: Session,
    journal: Journal,
    *,
    origin: str,
) -> tuple[bool, str]:
    """Steps 2 to 6; whether each went as expected, and the apply's summary."""
    _step(console, f"2. Connected with the SDK; site {DEMO_SITE} as it is now")
    console.print(
        f"session {session.endpoint}: site {session.site_code}, certificate verified, "
        f"transport {session.info.transport}"
    )
    state = session.read_state()
    for table in state_tables(state, [DEMO_SITE]):
        console.print(table)

    _step(console, f"3. Plan: move {DEMO_SITE} to proxy2.contoso.com:3128, SUP options on")
    console.print(Text(MIGRATION_YAML.rstrip(), style="cyan"))
    console.print(f"account password: {origin}")
    spec = cmproxy.parse_desired(MIGRATION_YAML, source="migration.yaml")
    bulk = cmproxy.plan_bulk([session], spec)
    for part in plan_tables(bulk):
        console.print(part)

    _step(console, "4. A request the rules refuse")
    console.print(Text(REFUSED_YAML.rstrip(), style="cyan"))
    writes_before = _writes(emu)
    refused = False
    try:
        cmproxy.plan_bulk([session], cmproxy.parse_desired(REFUSED_YAML, source="refused.yaml"))
    except RuleViolation as error:
        refused = True
        console.print(
            Text(f"refused by rule {error.rule}: ", style="bold red") + Text(error.reason)
        )
    wrote = _writes(emu) - writes_before
    console.print(f"writes on the site meanwhile: {wrote}")

    _step(console, f"5. Apply: one transaction per server ({bulk.changes} changes)")
    # One server at a time: NTLM sessions are not reliable under concurrent requests yet.
    # The CLI's bar (on stderr, on a terminal only): it names the server being written.
    with Ui(live=console.is_terminal).apply_progress(bulk) as progress:
        results = cmproxy.apply_bulk(
            [session],
            spec,
            journal=journal,
            progress=False,
            hooks=[progress.hook],
            max_workers=1,
            per_provider=1,
        )
        progress.settle([item.outcome.server for item in results])
    console.print(results_table(results))

    _step(console, "6. Diagnose the site (rules R5, R9, R11, R13, …)")
    diagnosis = cmproxy.diagnose(session)
    console.print(diagnosis_table(diagnosis))
    found_12007 = any(f.rule == "R13" for f in diagnosis)
    if found_12007:
        console.print(
            "The 12007 lines in ruleengine.log predate the migration: ADR downloads run as the "
            "site server's System account (R12), which had no route out (R13)."
        )

    return results.ok and refused and wrote == 0 and found_12007, results.summary()
