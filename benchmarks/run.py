"""Bulk proxy changes: naive scripts, per-connection PSRP and cmproxy against the cost floor.

    python benchmarks/run.py                       # N = 50, 200, 1000 (a few minutes)
    python benchmarks/run.py --sizes 200 --contenders cmproxy
    python benchmarks/run.py --smoke               # N = 5, zero costs: the harness works

For each N the harness seeds a site (the emulator's demo hierarchy plus N servers, see
benchmarks/seed.py) and, per contender, serves a fresh copy of it from an emulator in this
process with the same costs (benchmarks/costmodel.py), while the contender runs as the only
client in a subprocess (benchmarks/contenders.py) so its CPU and peak memory are its own. The
emulator counts the HTTP exchanges; after each run the harness checks in the site state that
every server shows the new proxy (and SUP flags). `naive` and `per-connection` take about
2 s per server (one module import each), so above --sample servers they are measured on the
first --sample servers and extrapolated linearly (marked in the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import costmodel, seed  # noqa: E402
from cmproxy.emulator.api import Emulator  # noqa: E402
from cmproxy.emulator.settings import Costs, EmulatorSettings  # noqa: E402

CONTENDERS = ("naive", "per-connection", "cmproxy")


@attrs.frozen
class Measurement:
    contender: str
    n: int
    wall: float
    cpu: float
    exchanges: float
    maxrss_kb: int
    measured_on: int  # servers actually run (< n: extrapolated)
    error: str = ""
    wrong: int = 0
    #: CPU seconds of the emulator (this process) during the run: the server side's own work.
    server_cpu: float = 0.0
    #: The one-off part (accounts) of wall, cpu and exchanges, kept out of extrapolation.
    setup: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: The site that wrote most: (site, writes, seconds its write lock was held, seconds from
    #: its first write to its last) — how busy the floor's bottleneck was.
    busiest: tuple[str, int, float, float] = ("", 0, 0.0, 0.0)

    def busiest_text(self) -> str:
        site, writes, held, span = self.busiest
        if not writes or self.extrapolated:
            return ""
        return (
            f"; {site} wrote {writes} times, its write lock held {held:.1f} s over "
            f"{span:.1f} s from its first write to its last ({held / span:.0%})"
            if span
            else ""
        )

    @property
    def extrapolated(self) -> bool:
        return self.measured_on < self.n

    def at(self, n: int) -> Measurement:
        """Scaled to n servers: the setup once, then the measured per-server cost."""
        if n == self.n:
            return self
        factor = n / self.measured_on
        sw, sc, sx = self.setup
        return attrs.evolve(
            self,
            n=n,
            wall=sw + (self.wall - sw) * factor,
            cpu=sc + (self.cpu - sc) * factor,
            server_cpu=self.server_cpu * factor,
            exchanges=sx + (self.exchanges - sx) * factor,
        )


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("NO_PROXY", "no_proxy"):
        env[var] = ",".join(h for h in (env.get(var, ""), "127.0.0.1", "localhost") if h)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["CMPROXY_NO_PROGRESS"] = "1"
    return env


def measure(
    contender: str,
    n: int,
    seeded: Path,
    costs: Costs,
    *,
    sample: int,
    workdir: Path,
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """One contender on a fresh copy of the seeded site; extrapolated above `sample`."""
    ran = min(n, sample) if contender != "cmproxy" else n
    chosen = seed.targets(n)[:ran]
    state_path = seed.copy(seeded, workdir / f"{contender}-{n}.sqlite")
    settings = EmulatorSettings(costs=attrs.evolve(costs))
    with Emulator(
        seed="demo", state_path=state_path, settings=settings, receive_timeout=5.0
    ) as emu:
        cfg = {
            "contender": contender,
            "n": n,
            "sample": ran,
            "host": emu.host,
            "port": emu.port,
            "username": emu.username,
            "password": emu.password,
        }
        cfg.update(extra or {})
        server_cpu0 = time.process_time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.contenders", json.dumps(cfg)],
            cwd=ROOT,
            env=_child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        marks: dict[str, dict[str, Any]] = {}
        setup_requests = 0
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            mark = json.loads(line)
            marks[mark["phase"]] = mark
            if mark["phase"] == "setup":
                with settings.lock:
                    setup_requests = settings.request_count
                proc.stdin.write("go\n")
                proc.stdin.flush()
        proc.wait()
        server_cpu = time.process_time() - server_cpu0
        requests = settings.request_count
        wrong = len(seed.verify(emu.state, chosen))
        with settings.lock:
            top = max(settings.site_writes.items(), key=lambda kv: kv[1][0], default=None)
        busiest = (
            (top[0], int(top[1][0]), top[1][1], top[1][3] - top[1][2]) if top else ("", 0, 0, 0)
        )
    end = marks.get("end")
    if end is None:
        return Measurement(contender, n, 0, 0, 0, 0, ran, f"exit code {proc.returncode}")
    setup = (0.0, 0.0, 0.0)
    if "setup" in marks and "start" in marks:
        start, done = marks["start"], marks["setup"]
        setup = (done["wall"] - start["wall"], done["cpu"] - start["cpu"], float(setup_requests))
    return Measurement(
        contender,
        ran,
        float(end["wall"]),
        float(end["cpu"]),
        float(requests),
        int(end["maxrss_kb"]),
        ran,
        end["error"],
        wrong,
        server_cpu,
        setup,
        busiest,
    ).at(n)


def machine() -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPU(s), {model}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def table(rows: Sequence[Measurement], floors: dict[int, costmodel.Floor]) -> str:
    naive = {m.n: m.wall for m in rows if m.contender == "naive" and not m.error}
    head = (
        "| N | contender | wall (s) | × floor | naive ÷ this | HTTP exchanges / server "
        "| client CPU / server (ms) | client peak RSS (MB) | how |"
    )
    lines = [head, "|" + "---|" * 9]
    for n in sorted(floors):
        f = floors[n]
        lines.append(
            f"| {n} | floor | {f.seconds:.2f} | 1.00 | "
            f"{naive[n] / (f.seconds or float('nan')):.1f} | | | | cost model |"
            if n in naive
            else f"| {n} | floor | {f.seconds:.2f} | 1.00 | | | | | cost model |"
        )
        f_s = f.seconds or float("nan")
        for m in (r for r in rows if r.n == n):
            if m.error:
                lines.append(f"| {n} | {m.contender} | failed | | | | | | {m.error[:120]} |")
                continue
            how = f"extrapolated from {m.measured_on} servers" if m.extrapolated else "measured"
            if m.wrong:
                how += f"; {m.wrong} server(s) NOT as desired"
            speedup = f"{naive[n] / m.wall:.1f}" if n in naive and m.wall else ""
            rss = f"{m.maxrss_kb / 1024:.0f}" + (f" (at {m.measured_on})" if m.extrapolated else "")
            lines.append(
                f"| {n} | {m.contender} | {m.wall:.2f} | {m.wall / f_s:.2f} | {speedup} "
                f"| {m.exchanges / n:.1f} | {1000 * m.cpu / n:.1f} | {rss} | {how} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="50,200,1000", help="comma-separated N")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument(
        "--sample", type=int, default=50, help="naive/per-connection: servers actually run"
    )
    parser.add_argument("--zero-costs", action="store_true", help="all costs 0 (harness check)")
    parser.add_argument("--extra", default="", help="JSON merged into each contender's config")
    parser.add_argument("--smoke", action="store_true", help="N=5, zero costs, every contender")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.zero_costs, args.sample = "5", True, 5
    sizes = [int(s) for s in args.sizes.split(",") if s]
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contender(s): {', '.join(sorted(unknown))}")
    costs = costmodel.zero_costs() if args.zero_costs else costmodel.default_costs()
    command = "python benchmarks/run.py" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    print(f"# {command}")
    print(f"# machine: {machine()}")
    print(f"# costs: {costs}")
    rows: list[Measurement] = []
    floors: dict[int, costmodel.Floor] = {}
    with tempfile.TemporaryDirectory(prefix="cmproxy-bench-") as tmp:
        work = Path(tmp)
        for n in sizes:
            seeded = work / f"seed-{n}.sqlite"
            chosen = seed.build(seeded, n)
            floors[n] = costmodel.floor(costs, chosen)
            for contender in contenders:
                sampled = [
                    r for r in rows if r.contender == contender and r.measured_on == args.sample
                ]
                if contender != "cmproxy" and n > args.sample and sampled and not sampled[0].error:
                    m = sampled[0].at(n)
                else:
                    m = measure(
                        contender,
                        n,
                        seeded,
                        costs,
                        sample=args.sample,
                        workdir=work,
                        extra=json.loads(args.extra) if args.extra else None,
                    )
                rows.append(m)
                print(
                    f"# N={n} {contender}: {m.wall:.2f} s, emulator CPU {m.server_cpu:.1f} s"
                    + m.busiest_text()
                    + (f" ({m.error})" if m.error else "")
                    + (f" [{m.wrong} wrong]" if m.wrong else ""),
                    flush=True,
                )
    for n, f in floors.items():
        print(
            f"# floor N={n}: import {f.import_s:.2f} + reads {f.reads_s:.2f} + writes "
            f"{f.writes_s:.2f} ({f.writes_on_busiest} on {f.busiest_site}) + exchanges "
            f"{f.exchanges_s:.3f} = {f.seconds:.2f} s"
        )
    print(table(rows, floors))
    failed = [m for m in rows if m.error or m.wrong]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
