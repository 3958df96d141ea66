"""`python -m cmproxy.emulator serve …`: the emulator in the foreground until SIGTERM/SIGINT.

`main(argv) -> int` so the `cmproxy emulator serve` CLI can wrap it without a subprocess.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from cmproxy.emulator.api import DEFAULT_PASSWORD, DEFAULT_USER, Emulator
from cmproxy.emulator.settings import EmulatorSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cmproxy.emulator",
        description="Run an emulated ConfigMgr site behind a WinRM endpoint.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve in the foreground until SIGTERM/SIGINT")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=5985)
    s.add_argument("--https", action="store_true", help="TLS with a generated self-signed cert")
    s.add_argument(
        "--user",
        action="append",
        metavar="NAME:PASSWORD",
        help=f"an accepted user (repeatable); default {DEFAULT_USER}:{DEFAULT_PASSWORD}",
    )
    s.add_argument("--state", default=None, help="SQLite state file (default: a temp file)")
    s.add_argument("--seed", default="demo", choices=["demo", "empty"])
    s.add_argument("--latency", type=float, default=0.0, help="seconds added per HTTP exchange")
    s.add_argument("--module-import", type=float, default=0.0, help="seconds Import-Module costs")
    s.add_argument("--get-cost", type=float, default=0.0, help="seconds a Get-CM* cmdlet costs")
    s.add_argument("--set-cost", type=float, default=0.0, help="seconds a Set-CM* cmdlet costs")
    s.add_argument(
        "--allow-basic",
        action="store_true",
        help="offer and accept Basic (WinRM Auth/Basic=true; off by default, as in WinRM)",
    )
    s.add_argument(
        "--allow-unencrypted",
        action="store_true",
        help="accept Basic over plain HTTP (WinRM AllowUnencrypted=true; off by default)",
    )
    s.add_argument(
        "--no-console",
        action="store_true",
        help="the ConfigMgr console (and its PowerShell module) is not installed",
    )
    s.add_argument(
        "--replication-lag",
        action="append",
        metavar="SITE=SECONDS",
        help="[UNCONFIRMED] reads of SITE's roles show a Set only SECONDS after it (repeatable)",
    )
    s.add_argument("--receive-timeout", type=float, default=20.0)
    q = EmulatorSettings().quotas
    s.add_argument(
        "--max-shells-per-user",
        type=int,
        default=q.winrs_max_shells_per_user,
        help="WinRS MaxShellsPerUser: shells one user may hold, all kinds (0 = no limit)",
    )
    s.add_argument(
        "--plugin-max-shells-per-user",
        type=int,
        default=q.plugin_max_shells_per_user,
        help="the Microsoft.PowerShell plug-in's MaxShellsPerUser (0 = no limit)",
    )
    s.add_argument(
        "--idle-timeout-ms",
        type=int,
        default=None,
        help=f"IdleTimeout of WinRS and the plug-in shells (default {q.winrs_idle_timeout_ms})",
    )
    return p


def parse_lags(values: Sequence[str] | None) -> dict[str, float]:
    """`--replication-lag SITE=SECONDS` values as `settings.replication.lag`."""
    lags: dict[str, float] = {}
    for value in values or []:
        site, sep, seconds = value.partition("=")
        try:
            lag = float(seconds) if sep and site else -1.0
        except ValueError:
            lag = -1.0
        if lag < 0:
            raise SystemExit(
                f"--replication-lag needs SITE=SECONDS with SECONDS >= 0, got {value!r}"
            )
        lags[site.upper()] = lag
    return lags


def parse_users(values: Sequence[str] | None) -> dict[str, str]:
    users: dict[str, str] = {}
    for value in values or []:
        name, sep, password = value.partition(":")
        if not sep or not name:
            raise SystemExit(f"--user needs NAME:PASSWORD, got {value!r}")
        users[name] = password
    return users or {DEFAULT_USER: DEFAULT_PASSWORD}


def settings_from(args: argparse.Namespace) -> EmulatorSettings:
    """The emulator's settings from the parsed `serve` options."""
    settings = EmulatorSettings()
    settings.costs.http_exchange = args.latency
    settings.costs.module_import = args.module_import
    settings.costs.get_cmdlet = args.get_cost
    settings.costs.set_cmdlet = args.set_cost
    settings.replication.lag = parse_lags(args.replication_lag)
    for name in ("max_shells_per_user", "plugin_max_shells_per_user", "idle_timeout_ms"):
        value = getattr(args, name)
        if value is not None and value < 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be 0 or more, got {value}")
    settings.quotas.winrs_max_shells_per_user = args.max_shells_per_user
    settings.quotas.plugin_max_shells_per_user = args.plugin_max_shells_per_user
    if args.idle_timeout_ms is not None:
        settings.quotas.winrs_idle_timeout_ms = args.idle_timeout_ms
        settings.quotas.plugin_idle_timeout_ms = args.idle_timeout_ms
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from(args)
    emu = Emulator(
        seed=args.seed,
        users=parse_users(args.user),
        https=args.https,
        state_path=args.state,
        settings=settings,
        port=args.port,
        host=args.host,
        allow_basic=args.allow_basic,
        allow_unencrypted=args.allow_unencrypted,
        receive_timeout=args.receive_timeout,
        console_installed=not args.no_console,
    )
    return serve_until_stopped(
        emu, lambda line: print(line, flush=True), lambda line: print(line, file=sys.stderr)
    )


def serve_until_stopped(
    emu: Emulator,
    say: Callable[[str], None],
    complain: Callable[[str], None],
    notes: Sequence[str] = (),
) -> int:
    """Serve `emu` until SIGINT or SIGTERM, saying where it listens (and `notes`, one line
    each); 1, with one line to `complain`, when it cannot listen. Both `python -m
    cmproxy.emulator.serve` and `cmproxy emulator serve` run it."""
    done = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            emu.start()
        except OSError as error:  # a busy port, an address not on this machine, no permission
            complain(
                f"cmproxy emulator: cannot listen on {emu.host}:{emu.port}: "
                f"{error.strerror or error}"
            )
            return 1
        say(f"cmproxy emulator listening on {emu.endpoint}")
        if emu.cert_path:
            say(f"certificate (trust this CA): {emu.cert_path}")
        say(f"users: {', '.join(emu.users)}  state: {emu.state_path}")
        for note in notes:
            say(note)
        while not done.wait(0.5):
            pass
    finally:
        emu.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("cmproxy emulator stopped")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
