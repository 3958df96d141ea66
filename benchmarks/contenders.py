"""The contenders, each run in its own process: `python -m benchmarks.contenders <json>`.

The parent (benchmarks/run.py) serves the emulator; this process is only the client, so its
CPU time and peak RSS are the client's. The JSON argument names the contender, the endpoint and
the scenario size; one JSON line with the measurements is printed on stdout.

- `naive`: what a script author writes today: pywinrm `Session.run_ps` per server, module
  import and Set-Location in every script, values formatted into the script text.
- `per-connection`: one new pypsrp connection (Client.execute_ps → new runspace pool) per
  server, as one-task-per-host automation does.
- `smart-seq`: what a competent admin writes: one pypsrp session, the module imported once,
  one loop over every server, values bound as parameters, no checks (SMART_SCRIPT).
- `smart-par`: the same script once per site, the sites in parallel, one session each.
- `cmproxy`: `cmproxy.apply_bulk` with its defaults over one Session (real SDK, real PSRP).
- `cmproxy-dry-run`: the same with `dry_run=True` (read and plan only): its client CPU and
  memory at scale.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
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


def _run_scripts(run: Callable[[str], None], cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    """The hand-written scripts through `run`: each site's account (the setup), then one
    script per server."""
    if cfg.get("accounts", True):
        for site in SITES:
            run(account_script(site))
    _setup_done()
    for t in chosen:
        run(naive_script(t))


def _pypsrp_endpoint(cfg: dict[str, Any]) -> dict[str, Any]:
    """The endpoint and credentials as pypsrp's `Client` and `WSMan` both take them."""
    return {
        "server": cfg["host"],
        "port": cfg["port"],
        "ssl": False,
        "auth": "ntlm",
        "username": cfg["username"],
        "password": cfg["password"],
        "encryption": "always",
        "no_proxy": True,
    }


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

    _run_scripts(run, cfg, chosen)


def run_per_connection(cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    from pypsrp.client import Client  # noqa: PLC0415

    def client() -> Any:
        return Client(**_pypsrp_endpoint(cfg))

    def run(script: str) -> None:
        with client() as c:
            _out, streams, had_errors = c.execute_ps(script)
        if had_errors:
            raise RuntimeError(str(streams.error[:1]))

    _run_scripts(run, cfg, chosen)


#: The script a competent admin writes: import once, one loop, values bound as parameters
#: (never formatted into the text), no checks, no journal. The account at each site first
#: (New-CMAccount), then looked up once per site for -ProxyAccessAccount.
SMART_SCRIPT = """\
param([string[]]$Sites, [string[]]$Names, [string[]]$ServerSites, [string[]]$Sup,
      [string]$Proxy, [int]$Port, [string]$Account, [string]$Password)
Import-Module ConfigurationManager
Set-Location PS1:
$secret = ConvertTo-SecureString $Password -AsPlainText -Force
$accounts = @{}
foreach ($site in $Sites) {
    $null = New-CMAccount -UserName $Account -Password $secret -SiteCode $site
    $accounts[$site] = Get-CMAccount -UserName $Account -SiteCode $site
}
for ($i = 0; $i -lt $Names.Count; $i++) {
    $site = $ServerSites[$i]
    Set-CMSiteSystemServer -SiteSystemServerName $Names[$i] -SiteCode $site -EnableProxy $true `
        -ProxyServerName $Proxy -ProxyServerPort $Port -ProxyAccessAccount $accounts[$site]
    if ($Sup[$i] -eq '1') {
        Set-CMSoftwareUpdatePoint -SiteSystemServerName $Names[$i] -SiteCode $site `
            -UseProxy $true -UseProxyForAutoDeploymentRule $true
    }
}
"""


def _smart_parameters(sites: Sequence[str], chosen: Sequence[Target]) -> dict[str, Any]:
    return {
        "Sites": list(sites),
        "Names": [t.name for t in chosen],
        "ServerSites": [t.site for t in chosen],
        "Sup": ["1" if t.sup else "0" for t in chosen],
        "Proxy": NEW_PROXY_HOST,
        "Port": NEW_PROXY_PORT,
        "Account": NEW_ACCOUNT,
        "Password": NEW_ACCOUNT_PASSWORD,
    }


def _smart_run(cfg: dict[str, Any], sites: Sequence[str], chosen: Sequence[Target]) -> None:
    """SMART_SCRIPT once over `chosen` through one pypsrp connection and runspace pool."""
    from pypsrp.powershell import PowerShell, RunspacePool  # noqa: PLC0415
    from pypsrp.wsman import WSMan  # noqa: PLC0415

    wsman = WSMan(**_pypsrp_endpoint(cfg), operation_timeout=20, read_timeout=30)
    with wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_script(SMART_SCRIPT)
        ps.add_parameters(_smart_parameters(sites, chosen))
        ps.invoke()
        if ps.had_errors:
            raise RuntimeError(str(ps.streams.error[:1]))


def run_smart_seq(cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    """One session, one script over every server of every site."""
    _smart_run(cfg, sorted({t.site for t in chosen}), chosen)


def run_smart_par(cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    """One script per site (its account, its servers), the sites in parallel, one session
    each: what an admin does once the sequential loop is too slow."""
    sites = sorted({t.site for t in chosen})

    def one(site: str) -> None:
        _smart_run(cfg, [site], [t for t in chosen if t.site == site])

    with ThreadPoolExecutor(len(sites)) as pool:
        for future in [pool.submit(one, site) for site in sites]:
            future.result()  # every site runs to its end; a failure is raised here


_T0 = time.perf_counter()


def _trace(what: str) -> None:
    print(f"TRACE {what} - {time.perf_counter() - _T0:.3f}", file=sys.stderr)


def _size(value: Any) -> int:
    """Items in one pipeline argument: a list's length, or the longest array of a JSON object
    sent as one string (Set-ProxyBatch -Items)."""
    if isinstance(value, list | tuple):
        return len(value)
    if isinstance(value, str) and value.startswith("{"):
        with contextlib.suppress(ValueError):
            parsed = json.loads(value)
            if isinstance(parsed, dict):
                return max((len(v) for v in parsed.values() if isinstance(v, list)), default=1)
    return 1


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
            sizes = [_size(v) for _, v in step.parameters]
            end = time.perf_counter() - t0
            print(
                f"TRACE {step.script.name} {max(sizes, default=1)} {start:.3f} {end:.3f}",
                file=sys.stderr,
            )

    session.run_step = run_step


def run_cmproxy(cfg: dict[str, Any], chosen: Sequence[Target], *, dry_run: bool = False) -> None:
    """`apply_bulk` with its default options unless `cfg["bulk"]` names some, over a `Session`
    with the default `Tuning` unless `cfg["tuning"]` names some (the harness says which in its
    output)."""
    import cmproxy  # noqa: PLC0415
    from cmproxy.tuning import Tuning  # noqa: PLC0415

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
        contextlib.closing(
            cmproxy.Session(info, tuning=Tuning(**cfg.get("tuning", {})))
        ) as session,
    ):
        if cfg.get("trace"):
            _trace_steps(session)
        results = cmproxy.apply_bulk(
            [session],
            desired,
            journal=journal,
            progress=False,
            dry_run=dry_run,
            **cfg.get("bulk", {}),
        )
        if cfg.get("trace"):
            _trace("apply_bulk-returned")
    if cfg.get("trace"):
        _trace("session-closed")
    if dry_run:
        planned = {i.outcome.server.lower() for i in results.items}
        missing = [t.name for t in chosen if t.name.lower() not in planned]
        if missing:
            raise RuntimeError(f"{len(missing)} server(s) without a planned change: {missing[0]}")
        return
    if not results.ok:
        bad = [i for i in results.items if i.outcome.outcome.value not in ("changed", "unchanged")]
        raise RuntimeError(f"{len(bad)} server(s) not changed, first: {bad[0].outcome.reason}")


def run_cmproxy_dry_run(cfg: dict[str, Any], chosen: Sequence[Target]) -> None:
    """`apply_bulk(dry_run=True)`: read and plan everything, write nothing."""
    run_cmproxy(cfg, chosen, dry_run=True)


CONTENDERS: dict[str, Callable[[dict[str, Any], Sequence[Target]], None]] = {
    "naive": run_naive,
    "per-connection": run_per_connection,
    "smart-seq": run_smart_seq,
    "smart-par": run_smart_par,
    "cmproxy": run_cmproxy,
    "cmproxy-dry-run": run_cmproxy_dry_run,
}


def peak_rss_kb() -> int:
    """This process's peak resident memory, in KB.

    VmHWM (Linux) is the high-water mark of this program's own address space. `ru_maxrss` is
    not: on Linux it survives fork and exec, so a child started by the harness reports at
    least the harness's (the emulator's) RSS at the time it was started.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


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
    print(
        json.dumps(
            {
                "contender": cfg["contender"],
                "servers": len(chosen),
                "phase": "end",
                "wall": wall,
                "cpu": cpu,
                "maxrss_kb": peak_rss_kb(),
                "error": error,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
