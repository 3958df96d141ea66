"""Bulk proxy changes: cmproxy against the scripts admins write, under named cost profiles.

    python benchmarks/run.py                        # default profile, N = 50, 200, 1000
    python benchmarks/run.py --sizes 200 --contenders cmproxy,smart-par,smart-seq --json
    python benchmarks/run.py --sizes 200 --profiles all --contenders cmproxy,smart-par,smart-seq
    python benchmarks/run.py --sizes 10000 --contenders cmproxy,cmproxy-dry-run,smart-par
    python benchmarks/run.py --smoke                # N = 5, zero costs: the harness works

For each N the harness seeds a site (the emulator's demo hierarchy plus N servers, see
benchmarks/seed.py) and, per profile and contender, serves a fresh copy of it from an emulator
in this process with the profile's costs (benchmarks/costmodel.py), while the contender runs as
the only client in a subprocess (benchmarks/contenders.py) so its CPU and peak memory are its
own. The emulator counts the HTTP exchanges and times its write locks; after each run the
harness checks in the site state that every server shows the new proxy (and SUP flags).

Every contender is measured at every N, except: `naive` (one module import per server, linear
by construction) is measured up to --naive-max servers and dropped above, with the reason in
the output; `per-connection` (the same, one connection per server) is measured on --sample
servers above that and extrapolated (marked). `--json` prints one JSON document (the rows) on
stdout and the human-readable tables on stderr.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import attrs

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import costmodel, seed  # noqa: E402
from cmproxy.emulator.api import Emulator  # noqa: E402
from cmproxy.emulator.settings import Costs, EmulatorSettings  # noqa: E402

CONTENDERS = ("naive", "per-connection", "smart-seq", "smart-par", "cmproxy", "cmproxy-dry-run")
#: Writes nothing: its run is not checked against the desired state and has no write lock.
DRY = ("cmproxy-dry-run",)
#: One module import per server: measured up to --naive-max / --sample servers only.
PER_SERVER_IMPORT = ("naive", "per-connection")


@attrs.frozen
class Lock:
    """The busiest write lock of a run: a site's, or the provider's (`Costs.write_lock`)."""

    name: str
    writes: int
    held: float  # seconds it was held, the Sets' cost included
    first: float  # time.perf_counter() when its first write started
    last: float  # ... and when its last write ended

    @property
    def busy(self) -> float:
        """Share of the time from its first write to its last that it was held."""
        span = self.last - self.first
        return self.held / span if span > 0 else 1.0


@attrs.frozen
class Measurement:
    contender: str
    n: int
    profile: str
    floor: float
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
    lock: Lock | None = None
    #: Seconds from the contender's start to the busiest lock's first write, and from its last
    #: write to the contender's end.
    first_write: float | None = None
    tail: float | None = None
    #: Why it was not run at this N ("" = it was).
    dropped: str = ""

    @property
    def extrapolated(self) -> bool:
        return self.measured_on < self.n

    @property
    def how(self) -> str:
        if self.dropped:
            return f"dropped: {self.dropped}"
        how = f"extrapolated from {self.measured_on} servers" if self.extrapolated else "measured"
        if self.wrong:
            how += f"; {self.wrong} server(s) NOT as desired"
        return how

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
            lock=None,
            first_write=None,
            tail=None,
        )

    def row(self) -> dict[str, Any]:
        """The machine-readable row (`--json`); None where there is no figure."""

        def num(x: float | None, digits: int = 3) -> float | None:
            return None if x is None or math.isnan(x) else round(x, digits)

        ran = not self.dropped and not self.error
        return {
            "n": self.n,
            "contender": self.contender,
            "profile": self.profile,
            "wall_s": num(self.wall) if ran else None,
            "floor_s": num(self.floor),
            "client_cpu_s": num(self.cpu) if ran else None,
            "peak_rss_mb": num(self.maxrss_kb / 1024, 1) if ran else None,
            "measured_on": self.measured_on,
            "how": self.how,
            "http_exchanges": num(self.exchanges, 0) if ran else None,
            "emulator_cpu_s": num(self.server_cpu) if ran else None,
            "busiest_lock": self.lock.name if self.lock else None,
            "lock_writes": self.lock.writes if self.lock else None,
            "lock_busy": num(self.lock.busy) if self.lock else None,
            "first_write_s": num(self.first_write),
            "tail_s": num(self.tail),
            "error": self.error,
            "wrong": self.wrong,
        }


@attrs.frozen
class Cell:
    """One cost profile at one N: what each contender there runs against."""

    profile: str
    costs: Costs
    n: int
    floor: costmodel.Floor
    seeded: Path  # the seeded site of N servers, copied fresh for each contender


@attrs.frozen
class Bench:
    """What the whole run shares: its work directory, its options, --extra, the rows so far."""

    work: Path
    args: argparse.Namespace
    extra: dict[str, Any]
    rows: list[Measurement]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("NO_PROXY", "no_proxy"):
        env[var] = ",".join(h for h in (env.get(var, ""), "127.0.0.1", "localhost") if h)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["CMPROXY_NO_PROGRESS"] = "1"
    return env


def busiest_lock(site_writes: dict[str, list[float]], costs: Costs) -> Lock | None:
    """From the emulator's per-site write records: the site with most writes, or, when the
    provider serialises every write, all sites as one lock."""
    if not site_writes:
        return None
    locks = [Lock(site, int(w[0]), w[1], w[2], w[3]) for site, w in site_writes.items()]
    if costs.write_lock == "provider":
        return Lock(
            "provider",
            sum(lk.writes for lk in locks),
            sum(lk.held for lk in locks),
            min(lk.first for lk in locks),
            max(lk.last for lk in locks),
        )
    return max(locks, key=lambda lk: (lk.writes, lk.held))


def measure(
    contender: str,
    cell: Cell,
    *,
    ran: int,
    workdir: Path,
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """One contender on a fresh copy of the seeded site, run on the first `ran` servers."""
    n, seeded, costs = cell.n, cell.seeded, cell.costs
    profile, floor = cell.profile, cell.floor.seconds
    chosen = seed.targets(n)[:ran]
    state_path = seed.copy(seeded, workdir / f"{profile}-{contender}-{n}.sqlite")
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
        wrong = 0 if contender in DRY else len(seed.verify(emu.state, chosen))
        with settings.lock:
            lock = busiest_lock({k: list(v) for k, v in settings.site_writes.items()}, costs)
    end, start = marks.get("end"), marks.get("start")
    if end is None or start is None:
        return Measurement(
            contender, n, profile, floor, 0, 0, 0, 0, ran, f"exit code {proc.returncode}"
        )
    setup = (0.0, 0.0, 0.0)
    if "setup" in marks:
        done = marks["setup"]
        setup = (done["wall"] - start["wall"], done["cpu"] - start["cpu"], float(setup_requests))
    first_write = tail = None
    if lock is not None and lock.writes:
        first_write = lock.first - start["wall"]
        tail = start["wall"] + float(end["wall"]) - lock.last
    return Measurement(
        contender,
        ran,
        profile,
        floor,
        float(end["wall"]),
        float(end["cpu"]),
        float(requests),
        int(end["maxrss_kb"]),
        ran,
        end["error"],
        wrong,
        server_cpu,
        setup,
        lock,
        first_write,
        tail,
    )


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


def cpu_reference_ms() -> float:
    """A fixed pure-Python workload's best time of three on this machine, in ms: cmproxy's
    overhead over the smart scripts is CPU (the client's and the emulator's interpreter), so two
    machines' ratios compare only as far as this figure does (docs/performance.md)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        table: dict[str, int] = {}
        for i in range(200_000):
            table[f"k{i % 997}"] = table.get(f"k{i % 997}", 0) + i
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def load() -> str:
    """The machine's load average now (the benchmark shares it with whatever else runs)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def cmproxy_options(extra: dict[str, Any]) -> str:
    """What cmproxy runs with: apply_bulk's own defaults (read from its signature), unless
    --extra names bulk options."""
    import cmproxy  # noqa: PLC0415

    params = inspect.signature(cmproxy.apply_bulk).parameters
    defaults = {
        k: p.default
        for k, p in params.items()
        if k in ("per_provider", "per_site", "batch_size", "max_workers", "recheck_after")
    }
    given = dict(extra.get("bulk") or {})
    if extra.get("tuning"):
        given["Session tuning"] = extra["tuning"]
    guarantees = (
        "servers held in the journal before the planning read (the conflict check), "
        "compare-and-set in every write pipeline, every write read back, journal on disk "
        "(SQLite synchronous=FULL: fsync per commit), rollback on failure"
    )
    if given:
        return f"cmproxy: apply_bulk NOT with its defaults: {given} (defaults {defaults})"
    return f"cmproxy: apply_bulk with its default options {defaults}; {guarantees}"


def _f(x: float | None, fmt: str = ".2f") -> str:
    return "" if x is None or math.isnan(x) else format(x, fmt)


def table(rows: Sequence[Measurement], floors: dict[int, costmodel.Floor]) -> str:
    """One profile's rows: the floor, then every contender, per N."""
    head = (
        "| N | contender | wall (s) | × floor | HTTP exchanges / server | client CPU (s) "
        "| client peak RSS (MB) | busiest lock: writes, busy | first write (s) | tail (s) | how |"
    )
    lines = [head, "|" + "---|" * 11]
    for n in sorted(floors):
        f = floors[n]
        lines.append(
            f"| {n} | floor | {f.seconds:.2f} | 1.00 | | | | {f.busiest_lock}: "
            f"{f.writes_on_busiest}, 100 % | {f.first_write_s:.2f} | {f.tail_s:.2f} | cost model |"
        )
        for m in (r for r in rows if r.n == n):
            if m.dropped or m.error:
                lines.append(
                    f"| {n} | {m.contender} | {'failed' if m.error else '—'} | | | | | | | | "
                    f"{m.error[:160] if m.error else m.how} |"
                )
                continue
            rss = f"{m.maxrss_kb / 1024:.0f}" + (f" (at {m.measured_on})" if m.extrapolated else "")
            lock = f"{m.lock.name}: {m.lock.writes}, {m.lock.busy:.0%}" if m.lock else ""
            # A dry run writes nothing: the floor (of a run that writes) does not bound it.
            times = "" if m.contender in DRY else f"{m.wall / (f.seconds or math.nan):.2f}"
            lines.append(
                f"| {n} | {m.contender} | {m.wall:.2f} | {times} "
                f"| {m.exchanges / n:.1f} | {m.cpu:.2f} | {rss} | {lock} "
                f"| {_f(m.first_write)} | {_f(m.tail)} | {m.how} |"
            )
    return "\n".join(lines)


def ratios(
    rows: Sequence[Measurement], floors: dict[int, costmodel.Floor], scale: float = 1.0
) -> str:
    """The comparisons issue 18 sets bars on, per N (measured, never asserted). With the costs
    × `scale`, the overhead over the floor and its bar are given ÷ `scale`: in the default
    costs' seconds (see costmodel.scaled)."""
    per = "" if scale == 1 else f" ÷ {scale:g}"
    lines = [
        f"| N | cmproxy ÷ smart-par | smart-seq ÷ cmproxy | (cmproxy − floor){per} (s) "
        f"| bar 0.5 s + 3 % (s) | naive ÷ cmproxy |",
        "|" + "---|" * 6,
    ]
    for n in sorted(floors):
        wall = {m.contender: m.wall for m in rows if m.n == n and not m.error and not m.dropped}
        cm = wall.get("cmproxy")
        if cm is None:
            continue
        f = floors[n].seconds
        par, seqw, naive = wall.get("smart-par"), wall.get("smart-seq"), wall.get("naive")
        lines.append(
            f"| {n} | {_f(cm / par if par else None)} | {_f(seqw / cm if seqw else None)} "
            f"| {(cm - f) / scale:.2f} | {0.5 + 0.03 * f / scale:.2f} "
            f"| {_f(naive / cm if naive else None, '.1f')} |"
        )
    return "\n".join(lines)


def _options(args_in: list[str]) -> tuple[argparse.Namespace, list[int], list[str], list[str]]:
    """The command line: its options, and the sizes, contenders and profile names it asks for
    (an unknown contender or profile is a usage error)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--sizes", default="50,200,1000", help="comma-separated N")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument(
        "--profiles",
        default="default",
        help=f"comma-separated cost profiles, or 'all' ({', '.join(costmodel.PROFILES)})",
    )
    parser.add_argument(
        "--naive-max",
        type=int,
        default=200,
        help="naive: measured up to this N, dropped above (one import per server)",
    )
    parser.add_argument(
        "--sample", type=int, default=50, help="per-connection: servers run above this N"
    )
    parser.add_argument("--zero-costs", action="store_true", help="all costs 0 (harness check)")
    parser.add_argument(
        "--cost-scale",
        type=float,
        default=1.0,
        help="every modelled duration × this (10: overhead ÷ 10 is what the model charges, "
        "this machine's CPU a tenth as weighty; costmodel.scaled)",
    )
    parser.add_argument("--extra", default="", help="JSON merged into each contender's config")
    parser.add_argument("--json", action="store_true", help="the rows as JSON on stdout")
    parser.add_argument("--smoke", action="store_true", help="N=5, zero costs, every contender")
    args = parser.parse_args(args_in)
    if args.smoke:
        args.sizes, args.zero_costs, args.sample = "5", True, 5
    if not args.cost_scale > 0:
        parser.error(f"--cost-scale must be above 0, not {args.cost_scale:g} (--zero-costs: 0)")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contender(s): {', '.join(sorted(unknown))}")
    names = list(costmodel.PROFILES) if args.profiles == "all" else args.profiles.split(",")
    unknown = {p for p in names if p not in costmodel.PROFILES}
    if unknown:
        parser.error(f"unknown profile(s): {', '.join(sorted(unknown))}")
    return args, sizes, contenders, names


def _duration_scale(args: argparse.Namespace) -> float:
    """What every modelled duration is multiplied by: 0 with --zero-costs, else --cost-scale."""
    return 0.0 if args.zero_costs else float(args.cost_scale)


def _profile(
    bench: Bench, name: str, sizes: list[int], contenders: list[str], say: Callable[[str], None]
) -> dict[int, costmodel.Floor]:
    """Every contender at every N under one cost profile (rows added to `bench.rows`); the
    floor at each N."""
    profile = costmodel.PROFILES[name]
    scale = _duration_scale(bench.args)
    costs = costmodel.scaled(profile.costs(), scale)
    how = " (zero costs)" if scale == 0 else f" (every duration × {scale:g})" if scale != 1 else ""
    say(f"# profile {name}: {profile.why}{how}")
    say(f"# costs: {costs}")
    floors: dict[int, costmodel.Floor] = {}
    for n in sizes:
        seeded = bench.work / f"seed-{n}.sqlite"
        if not seeded.exists():
            seed.build(seeded, n)
        chosen = seed.targets(n)
        fl = costmodel.floor(costs, chosen)
        floors[n] = fl
        cell = Cell(name, costs, n, fl, seeded)
        for contender in contenders:
            m = _one(contender, cell, bench)
            bench.rows.append(m)
            say(_line(m))
    return floors


def _summary(
    names: list[str],
    rows: list[Measurement],
    floors: dict[str, dict[int, costmodel.Floor]],
    say: Callable[[str], None],
    scale: float = 1.0,
) -> None:
    """Each profile's floors, then its table and ratios (`scale`: --cost-scale)."""
    for name in names:
        for n, f in floors[name].items():
            say(
                f"# floor {name} N={n}: import {f.import_s:.2f} + reads {f.reads_s:.2f} + "
                f"writes {f.writes_s:.2f} ({f.writes_on_busiest} on {f.busiest_lock}) + "
                f"exchanges {f.exchanges_s:.3f} = {f.seconds:.2f} s"
            )
    for name in names:
        mine = [m for m in rows if m.profile == name]
        say(f"\n## profile {name}: {costmodel.PROFILES[name].why}\n")
        say(table(mine, floors[name]))
        say("")
        say(ratios(mine, floors[name], scale))


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(argv if argv is not None else sys.argv[1:])
    args, sizes, contenders, names = _options(args_in)
    extra = json.loads(args.extra) if args.extra else {}
    out: TextIO = sys.stderr if args.json else sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    command = "python benchmarks/run.py" + (" " + shlex.join(args_in) if args_in else "")
    say(f"# {command}")
    reference = cpu_reference_ms()
    say(
        f"# machine: {machine()}; CPU reference {reference} ms (benchmarks/run.py: "
        f"cpu_reference_ms); {load()} at the start (shared machine: other work runs too)"
    )
    if "cmproxy" in contenders or "cmproxy-dry-run" in contenders:
        say(f"# {cmproxy_options(extra)}")
    started = time.perf_counter()
    rows: list[Measurement] = []
    floors: dict[str, dict[int, costmodel.Floor]] = {}
    with tempfile.TemporaryDirectory(prefix="cmproxy-bench-") as tmp:
        bench = Bench(Path(tmp), args, extra, rows)
        for name in names:
            floors[name] = _profile(bench, name, sizes, contenders, say)
    elapsed = time.perf_counter() - started
    _summary(names, rows, floors, say, args.cost_scale)
    say(f"\n# {elapsed:.0f} s in all; {load()} at the end")
    if args.json:
        doc = {
            "command": command,
            "machine": machine(),
            "cpu_reference_ms": reference,
            "load_at_end": load(),
            "cmproxy_options": cmproxy_options(extra),
            "cost_scale": _duration_scale(args),
            "profiles": {n: costmodel.PROFILES[n].why for n in names},
            "rows": [m.row() for m in rows],
        }
        print(json.dumps(doc, indent=1))
    failed = [m for m in rows if m.error or m.wrong]
    return 1 if failed else 0


def _one(contender: str, cell: Cell, bench: Bench) -> Measurement:
    """One contender at one N: measured, extrapolated from a smaller run, or dropped."""
    args, n, fl = bench.args, cell.n, cell.floor
    if contender == "naive" and n > args.naive_max:
        return Measurement(
            contender,
            n,
            cell.profile,
            fl.seconds,
            math.nan,
            math.nan,
            math.nan,
            0,
            0,
            dropped=(
                f"above {args.naive_max} servers (one module import per server, so linear "
                f"by construction: ≈ N × its per-server time at {args.naive_max})"
            ),
        )
    if contender == "per-connection" and n > args.sample:
        sampled = [
            r
            for r in bench.rows
            if r.contender == contender and r.profile == cell.profile and r.n == args.sample
        ]
        if sampled and not sampled[0].error:
            return attrs.evolve(sampled[0].at(n), floor=fl.seconds)
        m = measure(contender, cell, ran=args.sample, workdir=bench.work)
        return attrs.evolve(m.at(n), floor=fl.seconds) if not m.error else m
    return measure(contender, cell, ran=n, workdir=bench.work, extra=bench.extra)


def _line(m: Measurement) -> str:
    if m.dropped:
        return f"# {m.profile} N={m.n} {m.contender}: {m.how}"
    lock = (
        f"; busiest lock {m.lock.name}: {m.lock.writes} writes, held {m.lock.held:.1f} s, "
        f"busy {m.lock.busy:.0%} from its first write (at {_f(m.first_write)} s) to its last "
        f"(tail {_f(m.tail)} s)"
        if m.lock and not m.extrapolated
        else ""
    )
    return (
        f"# {m.profile} N={m.n} {m.contender}: {m.wall:.2f} s, client CPU {m.cpu:.2f} s, "
        f"peak RSS {m.maxrss_kb / 1024:.0f} MB, emulator CPU {m.server_cpu:.1f} s"
        + lock
        + (f" ({m.error})" if m.error else "")
        + (f" [{m.wrong} wrong]" if m.wrong else "")
    )


if __name__ == "__main__":
    sys.exit(main())
