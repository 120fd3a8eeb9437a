"""Scale: what the first backfill and the daily run cost as history and universe grow, against linear growth.

Configurations: the history before the session at --years (1, 5 and 10 years of 252 sessions) with
--base-symbols (5,000) simulated symbols, and --symbols (1,000, 5,000 and 20,000) with --base-years (1) of
history; a configuration in both sweeps runs once. Each gets a fresh warehouse and a fresh DAGSTER_HOME in a
temporary directory, and a simulated market whose first session is the history's first
(`TECHNIC_SIM_EPOCH`, with `TECHNIC_START_DATE` so Dagster offers those partitions), and runs the real path,
each stage a process of its own:

  backfill    `price_bars_backfill_job` over the history's sessions before the session, one Dagster run over
              the partition range — what `technic run` starts with on first use, over a longer history;
  first scan  `technic run --date D`: nothing is missing any more, so the daily scan job of D;
  daily       `technic run --date D+1` with D already present: the incremental run of the next session
              (its bars, universe, conditions, priority plan, scan, screens), --daily-repeats times, each on
              a fresh copy of the warehouse and instance as the first scan left them.

A stage's time is its process's wall time from launch to exit (imports included), its memory the peak of the
process's resident memory plus its descendants' unique memory (Dagster's log capture), sampled every 50 ms
(psutil). The seconds each asset reports in its materialization come from the Dagster instance; the backfill
also reports how long its per-partition Dagster events took to record.

The peer is the growth model: cost proportional to symbol-sessions for the backfill and to symbols for the
daily run, and no growth of the daily run or the backfill's memory with history. For each sweep the report
gives each point's measured / predicted against the model through the smallest point (1.0 everywhere
matches; below 1 is cheaper, the fixed costs spread over more work) and the log-log slope of cost against
size (1.0 is linear). Targets: a 10-year × 5,000-symbol first backfill under 5 minutes with peak memory under
4 GB, the daily run at 20,000 symbols under 15 s, and growth close to linear.
Writes bench/results/scale.json and bench/results/scale.png; --quick runs a small version in a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from technic_core import calendar

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
TECHNIC = Path(sys.executable).with_name("technic")
#: The session scanned after the backfill; the daily run scans the one after it.
BENCH_SESSION = dt.date(2026, 12, 3)
SESSIONS_PER_YEAR = 252
SAMPLE_S = 0.05
#: The stages of the daily scan job, in order (each materialization reports its seconds).
ASSETS = ("price_bars", "universe", "market_conditions", "symbol_priority_scores", "scan_results", "screen_hits")
TARGETS = {"backfill_10y_5000_s": 300.0, "backfill_10y_5000_peak_mb": 4096.0, "daily_20000_s": 15.0}


@dataclass
class Measured:
    wall_s: float
    peak_mb: float
    output: str


def tree_memory(process: psutil.Process) -> int:
    """Resident bytes of `process` plus the unique bytes of each of its descendants (ones that exit
    mid-sample count as zero). Unique, not resident: a child just forked shares the parent's pages until it
    execs, and counting them twice would report a peak that never existed."""
    total, children = 0, []
    with contextlib.suppress(psutil.Error):
        total = process.memory_info().rss
        children = process.children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            total += child.memory_full_info().uss
    return total


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Run `command` to completion; its wall time and the peak resident memory of its process tree."""
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    process = psutil.Process(child.pid)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_memory(process))
            done.wait(SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = child.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({child.returncode}):\n{output[-4000:]}")
    return Measured(round(wall, 3), round(peak / 2**20, 1), output)


def asset_seconds(home: Path, session: dt.date) -> dict[str, float]:
    """The seconds each daily-scan asset reported for `session` in the instance at `home`."""
    from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

    seconds: dict[str, float] = {}
    with DagsterInstance.from_config(str(home)) as instance:
        for asset in ASSETS:
            records = instance.fetch_materializations(
                AssetRecordsFilter(asset_key=AssetKey(asset), asset_partitions=[session.isoformat()]), limit=1
            ).records
            materialization = records[0].asset_materialization if records else None
            value = materialization.metadata.get("seconds") if materialization is not None else None
            if value is not None:
                seconds[asset] = float(value.value)  # type: ignore[arg-type]
    return seconds


def backfill_worker(first: str, last: str) -> None:
    """The bars backfill job over [first, last] in this process (as `technic run` runs it); prints as JSON
    where its time went: the job's execution, the seconds `price_bars` reported, and how long the run's
    per-partition events took to record (each partition's planned and materialization events)."""
    from dagster import DagsterEventType, DagsterInstance

    from technic_pipelines.definitions import BARS_BACKFILL_JOB, defs
    from technic_pipelines.defs.ml.sensors import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG

    tags = {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def(BARS_BACKFILL_JOB).execute_in_process(
            instance=instance, tags=tags, run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        )
        execute_s = time.perf_counter() - started
        stamps: dict[DagsterEventType, list[float]] = {}
        for entry in instance.all_logs(result.run_id):
            if entry.dagster_event_type is not None:
                stamps.setdefault(entry.dagster_event_type, []).append(entry.timestamp)
    materialization = result.asset_materializations_for_node("price_bars")[0]  # one per partition, alike

    def span(kind: DagsterEventType) -> float:
        return round(max(stamps[kind]) - min(stamps[kind]), 3) if kind in stamps else 0.0

    print(
        json.dumps(
            {
                "execute_s": round(execute_s, 3),
                "price_bars_s": float(materialization.metadata["seconds"].value),  # type: ignore[arg-type]
                "planned_events": len(stamps.get(DagsterEventType.ASSET_MATERIALIZATION_PLANNED, [])),
                "planned_events_s": span(DagsterEventType.ASSET_MATERIALIZATION_PLANNED),
                "materialization_events": len(stamps.get(DagsterEventType.ASSET_MATERIALIZATION, [])),
                "materialization_events_s": span(DagsterEventType.ASSET_MATERIALIZATION),
            }
        )
    )


def run_configuration(years: int, symbols: int, daily_repeats: int, scratch: Path) -> dict[str, object]:
    """Backfill, first scan and daily runs of one configuration in a fresh directory under `scratch`."""
    session, following = BENCH_SESSION, calendar.next_session(BENCH_SESSION)
    history = calendar.sessions_back(calendar.previous_session(session), years * SESSIONS_PER_YEAR)
    root = Path(tempfile.mkdtemp(prefix=f"scale-{years}y-{symbols}-", dir=scratch))
    warehouse, home = root / "warehouse", root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(REPO / "dagster.yaml")
    env = {
        **os.environ,
        "TECHNIC_WAREHOUSE": str(warehouse),
        "TECHNIC_SOURCE": "simulated",
        "TECHNIC_SIM_SYMBOLS": str(symbols),
        "TECHNIC_SIM_EPOCH": history[0].isoformat(),
        "TECHNIC_START_DATE": history[0].isoformat(),
        "DAGSTER_HOME": str(home),
    }
    label = f"{years}y × {symbols}"
    print(f"[{label}] backfill of {len(history)} sessions {history[0]}…{history[-1]}", flush=True)
    backfill = measure(
        [sys.executable, __file__, "--backfill-worker", history[0].isoformat(), history[-1].isoformat()], env
    )
    worker = json.loads(backfill.output.strip().splitlines()[-1])
    print(f"[{label}] backfill {backfill.wall_s:.1f} s, peak {backfill.peak_mb:.0f} MB", flush=True)

    scan_command = [str(TECHNIC), "run", "--date", session.isoformat()]
    first = measure(scan_command, env)
    first_stages = asset_seconds(home, session)
    print(f"[{label}] first scan {first.wall_s:.1f} s, peak {first.peak_mb:.0f} MB", flush=True)

    snapshot = root / "after-first-scan"
    shutil.copytree(warehouse, snapshot / warehouse.name, symlinks=True)
    shutil.copytree(home, snapshot / home.name, symlinks=True)
    dailies: list[Measured] = []
    stages: list[dict[str, float]] = []
    for repeat in range(daily_repeats):
        if repeat:
            for directory in (warehouse, home):
                shutil.rmtree(directory)
                shutil.copytree(snapshot / directory.name, directory, symlinks=True)
        dailies.append(measure([str(TECHNIC), "run", "--date", following.isoformat()], env))
        stages.append(asset_seconds(home, following))
        print(f"[{label}] daily {dailies[-1].wall_s:.1f} s, peak {dailies[-1].peak_mb:.0f} MB", flush=True)
    shutil.rmtree(root)

    walls = [d.wall_s for d in dailies]
    return {
        "years": years,
        "symbols": symbols,
        "history_sessions": len(history),
        "first_history_session": history[0].isoformat(),
        "session": session.isoformat(),
        "next_session": following.isoformat(),
        "symbol_sessions": symbols * len(history),
        "backfill_s": backfill.wall_s,
        "backfill_breakdown_s": {"outside_the_job": round(backfill.wall_s - worker.pop("execute_s"), 3), **worker},
        "backfill_peak_mb": backfill.peak_mb,
        "first_scan_s": first.wall_s,
        "first_scan_peak_mb": first.peak_mb,
        "first_scan_stages_s": first_stages,
        "first_run_s": round(backfill.wall_s + first.wall_s, 3),
        "daily_s": round(statistics.median(walls), 3),
        "daily_runs_s": walls,
        "daily_peak_mb": max(d.peak_mb for d in dailies),
        "daily_stages_s": {asset: round(statistics.median(run[asset] for run in stages), 3) for asset in stages[0]},
    }


def growth(points: list[dict[str, object]], size: str, cost: str, exponent: int = 1) -> dict[str, object]:
    """`cost` against `size` over `points`, beside the model cost ∝ size ** `exponent` through the smallest
    point (1: linear growth; 0: no growth): each point's measured / predicted (1.0 everywhere matches the
    model; below 1 is cheaper, the fixed costs spread over more work) and the log-log slope over all points."""
    ordered = sorted(points, key=lambda point: float(point[size]))  # type: ignore[arg-type]
    sizes = [float(point[size]) for point in ordered]  # type: ignore[arg-type]
    costs = [float(point[cost]) for point in ordered]  # type: ignore[arg-type]
    predicted = [costs[0] * (x / sizes[0]) ** exponent for x in sizes]
    slope = None
    if len(set(sizes)) > 1:
        xs, ys = [math.log(x) for x in sizes], [math.log(y) for y in costs]
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        slope = round(
            sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum((x - mean_x) ** 2 for x in xs),
            3,
        )
    return {
        "size": size,
        "cost": cost,
        "model": {1: "linear", 0: "flat"}.get(exponent, f"size ** {exponent}"),
        "points": [
            {size: x, cost: y, "predicted": round(p, 3), "measured_vs_model": round(y / p, 3)}
            for x, y, p in zip(sizes, costs, predicted, strict=True)
        ],
        "loglog_slope": slope,
    }


def find(configurations: list[dict[str, object]], years: int, symbols: int) -> dict[str, object] | None:
    return next((c for c in configurations if c["years"] == years and c["symbols"] == symbols), None)


def plot(report: dict[str, object], path: Path) -> None:
    """Backfill and daily time against history and universe size, each beside its linear growth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweeps = report["growth"]
    assert isinstance(sweeps, dict)
    panels = [
        ("history", "backfill_s", "first backfill vs history", "symbol-sessions (millions)", 1e-6),
        ("universe", "backfill_s", "first backfill vs universe", "symbol-sessions (millions)", 1e-6),
        ("history", "backfill_peak_mb", "backfill peak memory", "symbol-sessions (millions)", 1e-6),
        ("universe", "daily_s", "daily run vs universe", "symbols", 1.0),
    ]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    for axis, (sweep, cost, title, xlabel, scale) in zip(axes.flat, panels, strict=True):
        model = sweeps[sweep][cost]
        size = model["size"]
        xs = [point[size] * scale for point in model["points"]]
        axis.plot(xs, [point[cost] for point in model["points"]], "o-", label="measured")
        axis.plot(xs, [point["predicted"] for point in model["points"]], "--", label=f"{model['model']} model")
        axis.set_title(f"{title}\nlog-log slope {model['loglog_slope']}", fontsize=10)
        axis.set_xlabel(xlabel)
        axis.set_ylabel("MB" if cost.endswith("_mb") else "seconds")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"Technic scale, simulated market ({report['machine']})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=int, nargs="+", default=[1, 5, 10], help="history lengths (years)")
    parser.add_argument("--symbols", type=int, nargs="+", default=[1_000, 5_000, 20_000], help="universe sizes")
    parser.add_argument("--base-symbols", type=int, default=5_000, help="universe size of the history sweep")
    parser.add_argument("--base-years", type=int, default=1, help="history length of the universe sweep")
    parser.add_argument("--daily-repeats", type=int, default=3, help="daily runs per configuration (median)")
    parser.add_argument(
        "--quick", action="store_true", help="a small version: 1 and 2 years × 300 symbols, 300 and 600 symbols"
    )
    parser.add_argument("--scratch", type=Path, default=None, help="directory for the temporary warehouses")
    parser.add_argument("--output", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--backfill-worker", nargs=2, metavar=("FIRST", "LAST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.backfill_worker:
        backfill_worker(*args.backfill_worker)
        return
    if args.quick:
        args.years, args.symbols, args.base_symbols, args.base_years, args.daily_repeats = [1, 2], [300, 600], 300, 1, 1

    # one unmeasured start first, so the first configuration does not pay for reading the code from disk
    subprocess.run([sys.executable, "-c", "import technic_pipelines.definitions"], cwd=REPO, check=True)
    load_start = os.getloadavg()
    started = time.perf_counter()
    wanted = [(years, args.base_symbols) for years in args.years]
    wanted += [(args.base_years, symbols) for symbols in args.symbols if (args.base_years, symbols) not in wanted]
    configurations = []
    with tempfile.TemporaryDirectory(prefix="technic-scale-", dir=args.scratch) as scratch:
        for years, symbols in wanted:
            configurations.append(run_configuration(years, symbols, args.daily_repeats, Path(scratch)))
    history = [c for c in configurations if c["symbols"] == args.base_symbols and c["years"] in args.years]
    universe = [c for c in configurations if c["years"] == args.base_years and c["symbols"] in args.symbols]
    big_backfill, big_daily = find(configurations, 10, 5_000), find(configurations, 1, 20_000)
    report: dict[str, object] = {
        "machine": f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB",
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - started, 1),
        "backfill_10y_5000_s": big_backfill["backfill_s"] if big_backfill else None,
        "backfill_10y_5000_peak_mb": big_backfill["backfill_peak_mb"] if big_backfill else None,
        "first_run_10y_5000_s": big_backfill["first_run_s"] if big_backfill else None,
        "daily_20000_s": big_daily["daily_s"] if big_daily else None,
        "daily_20000_stages_s": big_daily["daily_stages_s"] if big_daily else None,
        "targets": TARGETS,
        "growth": {
            "history": {
                "backfill_s": growth(history, "symbol_sessions", "backfill_s"),
                "backfill_peak_mb": growth(history, "symbol_sessions", "backfill_peak_mb", exponent=0),
                "daily_s": growth(history, "history_sessions", "daily_s", exponent=0),
            },
            "universe": {
                "backfill_s": growth(universe, "symbol_sessions", "backfill_s"),
                "backfill_peak_mb": growth(universe, "symbol_sessions", "backfill_peak_mb"),
                "daily_s": growth(universe, "symbols", "daily_s"),
            },
        },
        "configurations": configurations,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.output.with_suffix(".png"))
    print(json.dumps({key: value for key, value in report.items() if key != "configurations"}, indent=2))


if __name__ == "__main__":
    main()
