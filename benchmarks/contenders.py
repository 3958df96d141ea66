"""The contenders, each run in its own process: `python -m benchmarks.contenders <json>`.

The parent (benchmarks/run.py) serves the emulator; this process is only the client, so its
CPU time and peak RSS are the client's. The JSON argument names the contender, the endpoint and
the scenario size; one JSON line with the measurements is printed on stdout.

- `naive`: what a script author writes today: pywinrm `Session.run_ps` per server, module
  import and Set-Location in every script, values formatted into the script text.
- `per-connection`: one new pypsrp connection (Client.execute_ps → new runspace pool) per
  server, as one-task-per-host automation does.
- `cmproxy`: `cmproxy.apply_bulk` with its defaults over one Session (real SDK, real PSRP).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.seed import (
    NEW_ACCOUNT,
    NEW_ACCOUNT_PASSWORD,
    NEW_PROXY_HOST,
    NEW_PROXY_PORT,
    SITES,
    Target,
    targets,
)

#: The site drive the hand-written scripts move onto (the provider's own site).
PROVIDER_SITE = "PS1"


def _ps_quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def naive_script(t: Target) -> str:
    """The per-server script as written by hand: import, drive, account, Set, SUP flags."""
    lines = [
        "Import-Module ConfigurationManager",
        f"Set-Location {PROVIDER_SITE}:",
        f"$account = Get-CMAccount -UserName {_ps_quote(NEW_ACCOUNT)} -SiteCode {t.site}",
        f"Set-CMSiteSystemServer -SiteSystemServerName {_ps_quote(t.name)} -SiteCode {t.site} "
        f"-EnableProxy $true -ProxyServerName {_ps_quote(NEW_PROXY_HOST)} "
        f"-ProxyServerPort {NEW_PROXY_PORT} -ProxyAccessAccount $account",
    ]
    if t.sup:
        lines.append(
            f"Set-CMSoftwareUpdatePoint -SiteSystemServerName {_ps_quote(t.name)} "
            f"-SiteCode {t.site} -UseProxy $true -UseProxyForAutoDeploymentRule $true"
        )
    return "\n".join(lines)


def account_script(site: str) -> str:
    return "\n".join(
        [
            "Import-Module ConfigurationManager",
            f"Set-Location {PROVIDER_SITE}:",
            f"$password = ConvertTo-SecureString {_ps_quote(NEW_ACCOUNT_PASSWORD)} "
            "-AsPlainText -Force",
            f"New-CMAccount -UserName {_ps_quote(NEW_ACCOUNT)} -Password $password "
            f"-SiteCode {site}",
        ]
    )


def _setup_done() -> None:
    """Tell the parent the one-off setup is over (it counts exchanges) and wait for it."""
    print(json.dumps({"phase": "setup", "wall": time.perf_counter(), "cpu": time.process_time()}))
    sys.stdout.flush()
    sys.stdin.readline()


def run_naive(cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    import winrm  # noqa: PLC0415 - only this contender loads pywinrm

    session = winrm.Session(
        f"http://{cfg['host']}:{cfg['port']}/wsman",
        auth=(cfg["username"], cfg["password"]),
        transport="ntlm",
        message_encryption="always",
    )

    def run(script: str) -> None:
        response = session.run_ps(script)
        if response.status_code != 0:
            raise RuntimeError(response.std_err.decode(errors="replace")[:500])

    if cfg.get("accounts", True):
        for site in SITES:
            run(account_script(site))
    _setup_done()
    for t in chosen:
        run(naive_script(t))


def run_per_connection(cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    from pypsrp.client import Client  # noqa: PLC0415

    def client() -> Any:
        return Client(
            cfg["host"],
            port=cfg["port"],
            ssl=False,
            auth="ntlm",
            username=cfg["username"],
            password=cfg["password"],
            encryption="always",
            no_proxy=True,
        )

    def run(script: str) -> None:
        with client() as c:
            _out, streams, had_errors = c.execute_ps(script)
        if had_errors:
            raise RuntimeError(str(streams.error[:1]))

    if cfg.get("accounts", True):
        for site in SITES:
            run(account_script(site))
    _setup_done()
    for t in chosen:
        run(naive_script(t))


_T0 = time.perf_counter()


def _trace(what: str) -> None:
    print(f"TRACE {what} - {time.perf_counter() - _T0:.3f}", file=sys.stderr)


def _trace_steps(session: Any) -> None:
    """`--extra '{"trace": true}'`: one stderr line per pipeline (template, size, start, end)."""
    global _T0  # noqa: PLW0603 - one clock for the whole trace
    _T0 = t0 = time.perf_counter()
    original = session.run_step

    def run_step(step: Any) -> Any:
        start = time.perf_counter() - t0
        try:
            return original(step)
        finally:
            sizes = [len(v) for _, v in step.parameters if isinstance(v, list | tuple)]
            end = time.perf_counter() - t0
            print(
                f"TRACE {step.script.name} {max(sizes, default=1)} {start:.3f} {end:.3f}",
                file=sys.stderr,
            )

    session.run_step = run_step


def run_cmproxy(cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    import cmproxy  # noqa: PLC0415

    info = cmproxy.ConnectionInfo(
        server=cfg["host"],
        port=cfg["port"],
        scheme="http",
        auth="ntlm",
        username=cfg["username"],
        password=cfg["password"],
        message_encryption="always",
        transport="psrp",
        site_code=PROVIDER_SITE,
        ignore_proxy=True,
        read_timeout=120,
        operation_timeout=20,
    )
    proxy = cmproxy.ProxySettings(server=NEW_PROXY_HOST, port=NEW_PROXY_PORT, account=NEW_ACCOUNT)
    desired = cmproxy.DesiredState(
        proxies=[cmproxy.ProxyRequest(t.name, proxy) for t in chosen],
        sup_flags=[cmproxy.SupFlagsRequest(t.name, True, True) for t in chosen if t.sup],
        accounts=[cmproxy.Account(NEW_ACCOUNT, password=NEW_ACCOUNT_PASSWORD)],
    )
    with (
        tempfile.TemporaryDirectory(prefix="cmproxy-bench-") as tmp,
        cmproxy.Journal(os.path.join(tmp, "journal.sqlite3")) as journal,
        # Not opened here: apply_bulk opens it with all its runspace pools at once.
        contextlib.closing(cmproxy.Session(info)) as session,
    ):
        if cfg.get("trace"):
            _trace_steps(session)
        results = cmproxy.apply_bulk(
            [session], desired, journal=journal, progress=False, **cfg.get("bulk", {})
        )
        if cfg.get("trace"):
            _trace("apply_bulk-returned")
    if cfg.get("trace"):
        _trace("session-closed")
    if not results.ok:
        bad = [i for i in results.items if i.outcome.outcome.value not in ("changed", "unchanged")]
        raise RuntimeError(f"{len(bad)} server(s) not changed, first: {bad[0].outcome.reason}")


CONTENDERS: dict[str, Callable[[dict[str, Any], Sequence[Target]], None]] = {
    "naive": run_naive,
    "per-connection": run_per_connection,
    "cmproxy": run_cmproxy,
}


def main(argv: Sequence[str]) -> int:
    cfg = json.loads(argv[0])
    chosen = targets(int(cfg["n"]))[: int(cfg.get("sample") or cfg["n"])]
    runner = CONTENDERS[cfg["contender"]]
    # Load the contender's libraries before the clock starts (same for every contender).
    import pypsrp.client  # noqa: F401, PLC0415
    import winrm  # noqa: F401, PLC0415

    import cmproxy  # noqa: F401, PLC0415

    print(json.dumps({"phase": "start", "wall": time.perf_counter(), "cpu": time.process_time()}))
    sys.stdout.flush()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    error = ""
    try:
        runner(cfg, chosen)
    except Exception as exc:  # reported, not raised: the parent prints the table anyway
        error = f"{type(exc).__name__}: {exc}"[:800]
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "contender": cfg["contender"],
                "servers": len(chosen),
                "phase": "end",
                "wall": wall,
                "cpu": cpu,
                "maxrss_kb": usage.ru_maxrss,
                "error": error,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
