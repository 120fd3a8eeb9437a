"""`technic` command line: run the daily scan through Dagster from a terminal.

`technic run` materializes, in-process and with the same `Definitions` the UI loads, what a session needs:
the bar history (in one backfill run the first time), then universe → conditions → scan for the session.
Runs are recorded in the Dagster instance at `DAGSTER_HOME` (default `.dagster_home/`), so they show up in
the UI too. Exit codes: 0 success, 1 the run failed (message printed), 2 usage error.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from technic_core import calendar
from technic_core.config import Settings
from technic_core.errors import NotASessionError, TechnicError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Technic: daily US-stock technical scan.")
console = Console()
err_console = Console(stderr=True)

STAGES = ("price_bars", "universe", "market_conditions", "symbol_priority_scores", "scan_results")
TOP_COLUMNS = ("symbol", "sector", "close", "tech_rating", "signal", "rsi", "macd", "atr_pct", "volume_ratio", "mom_21")


class RunFailed(TechnicError):
    """A Dagster run ended unsuccessfully; the message is the failing step's error."""


def _parse_session(value: str | None) -> dt.date:
    """The session to scan: `value` (YYYY-MM-DD) or the latest complete session."""
    latest = calendar.latest_complete_session()
    if value is None:
        return latest
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form", param_hint="--date") from None
    try:
        calendar.require_session(day)
    except NotASessionError as exc:
        raise typer.BadParameter(str(exc), param_hint="--date") from None
    if day > latest:
        raise typer.BadParameter(
            f"{day} has not closed yet; the latest complete session is {latest}", param_hint="--date"
        )
    return day


def _settings(symbols: int | None, source: str | None, warehouse: str | None) -> Settings:
    """The run's settings: the options over `TECHNIC_*` variables and `.env`; they reach the runs as run
    config of the resources, so the CLI's process environment stays as the user set it."""
    from technic_core.sources import SOURCE_FACTORIES

    if source is not None and source not in SOURCE_FACTORIES:
        known = ", ".join(sorted(SOURCE_FACTORIES))
        raise typer.BadParameter(f"unknown source {source!r}; known sources: {known}", param_hint="--source")
    try:
        return Settings.from_env(warehouse=warehouse, source=source, sim_symbols=symbols)
    except TechnicError as exc:
        raise typer.BadParameter(str(exc)) from None


def _run_config(settings: Settings) -> dict[str, object]:
    """Run config of one CLI run: Dagster's console logger quiet (the CLI prints its own progress) and the
    resources pinned to `settings`, so the run writes the warehouse the CLI watches and reports on."""
    return {
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
        "resources": {
            "warehouse": {"config": {"root": settings.warehouse}},
            "market_data": {"config": {"source": settings.source, "sim_symbols": settings.sim_symbols}},
        },
    }


#: The instance config of a project checkout (an editable install): the dagster.yaml beside this package.
PROJECT_INSTANCE_CONFIG = Path(__file__).resolve().parents[1] / "dagster.yaml"


def _ensure_dagster_home() -> Path:
    """DAGSTER_HOME: as set (made absolute, as Dagster requires), else `.dagster_home/` in the current
    directory. Dagster keeps all of the instance's storage under it. A home without a dagster.yaml gets a link
    to the project's, so CLI runs and the daemon share one instance config (run queue, pools, run
    monitoring); without a project checkout it gets a minimal one, so runs neither print Dagster's first-use
    banner nor send telemetry."""
    home = Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()
    os.environ["DAGSTER_HOME"] = str(home)
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if config.is_symlink() and not config.exists():  # the checkout it pointed into has moved
        config.unlink(missing_ok=True)
    if not config.exists():
        try:
            if PROJECT_INSTANCE_CONFIG.is_file():
                config.symlink_to(PROJECT_INSTANCE_CONFIG)
            else:
                config.write_text("telemetry:\n  enabled: false\n")
        except FileExistsError:  # another `technic run` on the same home got there first
            pass
    return home


def _execute(job_name: str, tags: dict[str, str], settings: Settings, partition_key: str | None = None):
    """Run a job of the loaded definitions in-process against the persistent instance."""
    from dagster import DagsterInstance

    from technic_pipelines.definitions import defs
    from technic_pipelines.defs.operations.launcher import fail_dead_runs, host_tags, initialize_pools

    # the host tag lets run monitoring fail this run if this process dies before recording its end
    tags = {**tags, **host_tags()}
    with DagsterInstance.get() as instance:
        for run_id, reason in fail_dead_runs(instance):
            err_console.print(f"[yellow]note:[/yellow] marked run {run_id} failed: {reason}")
        job = defs.resolve_job_def(job_name)
        initialize_pools(instance, job.graph.pools)
        result = job.execute_in_process(
            instance=instance,
            partition_key=partition_key,
            tags=tags,
            run_config=_run_config(settings),
            raise_on_error=False,
        )
    if not result.success:
        failures = result.get_step_failure_events()
        error = failures[0].step_failure_data.error if failures else None
        message = error.message.strip() if error is not None else "run failed"
        raise RunFailed(message.splitlines()[-1] if message else "run failed")
    return result


def _watch_partitions(store, dataset: str, sessions: list[dt.date], progress: Progress, task) -> threading.Event:
    """Advance `task` as partitions of `dataset` appear; returns the event that stops the watcher."""
    done = threading.Event()
    wanted = set(sessions)

    def poll() -> None:
        while not done.wait(0.2):
            written = len(wanted.intersection(store.sessions(dataset)))
            stage = "writing partitions" if written else "fetching from the source"
            progress.update(task, completed=written, description=stage)

    threading.Thread(target=poll, daemon=True).start()
    return done


def _session_progress(stage: str) -> Progress:
    """A progress bar over sessions on stderr: the stage, what it is doing, sessions done of all, time."""
    return Progress(
        TextColumn(f"[bold]{stage}[/bold] {{task.description:<26}}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} sessions"),
        TimeElapsedColumn(),
        console=err_console,
    )


def _backfill_bars(store, missing: list[dt.date], settings: Settings, stage_seconds: dict[str, float]) -> None:
    """Load missing bar history in one run over the partition range (one Dagster run, not one per day)."""
    from technic_pipelines.definitions import BARS_BACKFILL_JOB
    from technic_pipelines.defs.ml.sensors import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
    from technic_pipelines.partitions import session_key

    span = calendar.sessions_between(missing[0], missing[-1])
    tags = {PARTITION_RANGE_START_TAG: session_key(span[0]), PARTITION_RANGE_END_TAG: session_key(span[-1])}
    with _session_progress("backfill bars") as progress:
        task = progress.add_task("fetching from the source", total=len(span))
        done = _watch_partitions(store, "bars", span, progress, task)
        started = time.perf_counter()
        try:
            _execute(BARS_BACKFILL_JOB, tags, settings)
        finally:
            done.set()
        progress.update(task, completed=len(span))
    stage_seconds[f"backfill ({len(span)} sessions)"] = time.perf_counter() - started


def _run_session(session: dt.date, settings: Settings, stage_seconds: dict[str, float]) -> None:
    from technic_pipelines.definitions import DAILY_SCAN_JOB
    from technic_pipelines.partitions import session_key

    with err_console.status(f"[bold]scanning {session}: " + " → ".join(STAGES)):
        result = _execute(DAILY_SCAN_JOB, {}, settings, partition_key=session_key(session))
    for stage in STAGES:
        for materialization in result.asset_materializations_for_node(stage):
            seconds = materialization.metadata.get("seconds")
            if seconds is not None:
                stage_seconds[stage] = float(seconds.value)


def _print_report(store, session: dt.date, stage_seconds: dict[str, float], wall: float) -> None:
    import polars as pl

    results = store.read("results", session, session)
    top = results.sort(["tech_rating", "symbol"], descending=[True, False]).head(20)
    table = Table(title=f"Top 20 by TechRating — {session} ({results.height} results)")
    for column in TOP_COLUMNS:
        table.add_column(column, justify="left" if results.schema[column] == pl.String else "right")
    for row in top.select(TOP_COLUMNS).iter_rows():
        table.add_row(*[f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)
    timing = Table(title="Time per stage")
    timing.add_column("stage")
    timing.add_column("seconds", justify="right")
    for stage, seconds in stage_seconds.items():
        timing.add_row(stage, f"{seconds:.2f}")
    timing.add_row("[bold]total (wall)", f"[bold]{wall:.2f}")
    console.print(timing)
    console.print(f"results: {store.root / 'results' / f'date={session.isoformat()}'}")


@app.command()
def run(
    date: str | None = typer.Option(None, "--date", help="Session to scan, YYYY-MM-DD (default: latest complete)."),
    symbols: int | None = typer.Option(None, "--symbols", min=1, help="Simulated market size (default 5000)."),
    source: str | None = typer.Option(
        None, "--source", help="Market-data source (default: TECHNIC_SOURCE or simulated)."
    ),
    warehouse: str | None = typer.Option(
        None, "--warehouse", help="Warehouse root, a path or URI (default: TECHNIC_WAREHOUSE or ./warehouse)."
    ),
) -> None:
    """Scan one session through Dagster and print the top 20 by TechRating."""
    started = time.perf_counter()
    session = _parse_session(date)
    settings = _settings(symbols, source, warehouse)
    _ensure_dagster_home()
    logging.getLogger("dagster").setLevel(logging.WARNING)
    from technic_core.daily import DEFAULT_SCAN
    from technic_core.warehouse import Warehouse
    from technic_pipelines.partitions import partitions_start

    store = Warehouse.from_settings(settings)
    needed = [s for s in calendar.sessions_back(session, DEFAULT_SCAN.lookback_sessions) if s >= partitions_start()]
    stage_seconds: dict[str, float] = {}
    try:
        missing = [
            s for s in needed[:-1] if not (store.has_partition("bars", s) and store.has_partition("index_bars", s))
        ]
        if missing:
            _backfill_bars(store, missing, settings, stage_seconds)
        _run_session(session, settings, stage_seconds)
        _print_report(store, session, stage_seconds, time.perf_counter() - started)
    except TechnicError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
    warehouse: str | None = typer.Option(
        None, "--warehouse", help="Warehouse root, a path or URI (default: TECHNIC_WAREHOUSE or ./warehouse)."
    ),
) -> None:
    """Serve the HTTP API (results, live SSE/WebSocket streams, ad-hoc scans) with uvicorn, one worker.

    One worker on purpose: live streams fan out from one in-process hub, so every subscriber of a partition
    shares one file watcher; docs at http://HOST:PORT/docs.
    """
    import uvicorn

    from api.log_config import log_config

    try:
        from api.main import create_app, tune_garbage_collection

        application = create_app(Settings.from_env(warehouse=warehouse))
    except TechnicError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    tune_garbage_collection()
    uvicorn.run(application, host=host, port=port, log_config=log_config())


#: Columns a screen's table shows besides those it reads: enough to judge a hit, few enough for 80 columns.
SCREEN_COLUMNS = ("symbol", "close", "change_1d", "tech_rating", "signal")
#: Columns of the screen's own shown in the table at most, so the table stays readable in a terminal.
MAX_SCREEN_READ_COLUMNS = 3
FORMATS = ("table", "csv", "json", "parquet")


def _session_option(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form", param_hint=option) from None
    try:
        calendar.require_session(day)
    except NotASessionError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    return day


def _screen_range(store, date: str | None, start: str | None, end: str | None) -> tuple[dt.date, dt.date]:
    """The sessions to screen: --date, or --from/--to, else the newest session with results."""
    if date is not None and (start is not None or end is not None):
        raise typer.BadParameter("give either --date or --from/--to, not both", param_hint="--date")
    day = _session_option(date, "--date")
    if day is not None:
        return day, day
    first, last = _session_option(start, "--from"), _session_option(end, "--to")
    stored = store.sessions("results")
    if not stored:
        raise RunFailed(f"no scan results in {store.root}; run `technic run` first")
    first, last = first or (last or stored[-1]), last or stored[-1]
    if first > last:
        raise typer.BadParameter(f"--from {first} is after --to {last}", param_hint="--from")
    return first, last


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


@app.command()
def screen(
    name_or_expression: str = typer.Argument(
        ..., help="A saved screen's name, or an expression such as 'rsi < 30 and close > sma_200'."
    ),
    date: str | None = typer.Option(None, "--date", help="Session to screen (default: the newest with results)."),
    start: str | None = typer.Option(None, "--from", help="First session of a range."),
    end: str | None = typer.Option(None, "--to", help="Last session of a range (default: the newest with results)."),
    columns: str | None = typer.Option(
        None, "--columns", help="Comma-separated columns to show (`technic columns` lists them)."
    ),
    output: str = typer.Option(
        "table", "--format", help="table, csv, json or parquet (parquet and csv/json go to stdout)."
    ),
    show_performance: bool = typer.Option(
        False, "--performance", help="Show whether the saved screen's hits paid, instead of its hits."
    ),
    warehouse: str | None = typer.Option(
        None, "--warehouse", help="Warehouse root, a path or URI (default: TECHNIC_WAREHOUSE or ./warehouse)."
    ),
) -> None:
    """Screen stored results with a saved screen or an expression; or show a saved screen's performance."""
    import sys

    from technic_core.screens import ScreenError, ScreenLibrary
    from technic_core.screens.evaluation import evidence_between, hits_between, performance, resolve, result_columns
    from technic_core.warehouse import Warehouse

    if output not in FORMATS:
        raise typer.BadParameter(f"{output!r} is not one of {', '.join(FORMATS)}", param_hint="--format")
    store = Warehouse.from_settings(_settings(None, None, warehouse))
    try:
        resolved = resolve(ScreenLibrary(store), name_or_expression)
    except ScreenError as exc:
        err_console.print(f"[red]error:[/red] screen: {exc}")
        raise typer.Exit(2) from None
    try:
        if show_performance:
            if resolved.saved is None:
                raise typer.BadParameter("--performance needs a saved screen's name", param_hint="NAME_OR_EXPRESSION")
            frame = performance(evidence_between(store, names={resolved.saved.name: "screen"}))
            if frame.is_empty():
                raise RunFailed(f"no labeled sessions with hits of {resolved.saved.name!r} yet")
        else:
            known = result_columns()
            chosen = [c.strip() for c in columns.split(",") if c.strip()] if columns else []
            unknown = [c for c in chosen if c not in known]
            if unknown:
                raise typer.BadParameter(f"unknown column(s): {', '.join(unknown)}", param_hint="--columns")
            first, last = _screen_range(store, date, start, end)
            reads = sorted(resolved.screen.columns - set(SCREEN_COLUMNS))[:MAX_SCREEN_READ_COLUMNS]
            shown = chosen or [c for c in (*SCREEN_COLUMNS, *reads) if c in known and c != "symbol"]
            frame = hits_between(store, resolved.screen, first, last, columns=shown, sort=resolved.sort).collect()
            if first == last:
                frame = frame.drop("date")
    except TechnicError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if output == "csv":
        sys.stdout.write(frame.write_csv())
    elif output == "json":
        sys.stdout.write(frame.write_json())
    elif output == "parquet":
        frame.write_parquet(sys.stdout.buffer)
    else:
        table = Table(title=f"{name_or_expression} — {frame.height} rows", title_justify="left")
        for column in frame.columns:
            numeric = frame.schema[column].is_numeric()
            table.add_column(column, justify="right" if numeric else "left", no_wrap=column in ("symbol", "date"))
        for row in frame.iter_rows():
            table.add_row(*(_cell(v) for v in row))
        console.print(table)


@app.command()
def compact(
    start: str | None = typer.Option(None, "--from", help="First session (default: the oldest with results)."),
    end: str | None = typer.Option(None, "--to", help="Last session (default: the newest with results)."),
    warehouse: str | None = typer.Option(
        None, "--warehouse", help="Warehouse root, a path or URI (default: TECHNIC_WAREHOUSE or ./warehouse)."
    ),
) -> None:
    """Compact finished sessions' result batch files into one file each.

    The daily scan does this for every session it scans; this command is for results written before it did
    (or by an interrupted run). A session whose scan has not recorded its finish is left alone: its batches
    may still be arriving.
    """
    from technic_core.daily import daily_scan_id
    from technic_core.warehouse import DATASETS, Warehouse

    store = Warehouse.from_settings(_settings(None, None, warehouse))
    first, last = _session_option(start, "--from"), _session_option(end, "--to")
    sessions = [day for day in store.sessions("results") if (first or day) <= day <= (last or day)]
    finished_dir = store.root / DATASETS["scan_runs"].name
    compacted = unfinished = 0
    with _session_progress("compact results") as progress:
        task = progress.add_task("", total=len(sessions))
        for day in sessions:
            if store.storage.is_file(finished_dir / f"{daily_scan_id(day)}.parquet"):
                compacted += store.compact_results(day) is not None
            else:
                unfinished += 1
            progress.advance(task)
    console.print(f"{compacted} session(s) compacted; {unfinished} left alone (no finished daily scan recorded)")


@app.command()
def columns(
    group: str | None = typer.Option(None, "--group", help="Only this group (e.g. moving_averages, oscillators)."),
    output: str = typer.Option("table", "--format", help="table, csv or json."),
) -> None:
    """The column catalog: every column a result row carries, with its unit, lookback and source."""
    import json
    import sys

    from technic_core.catalog import column_rows

    rows = [row for row in column_rows() if group is None or row["group"] == group]
    if not rows:
        groups = sorted({str(row["group"]) for row in column_rows()})
        raise typer.BadParameter(f"no group {group!r}; groups: {', '.join(groups)}", param_hint="--group")
    if output == "json":
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    elif output == "csv":
        import polars as pl

        sys.stdout.write(pl.DataFrame(rows).write_csv())
    elif output == "table":
        table = Table(title=f"Column catalog ({len(rows)} columns; units in docs and `--format json`)")
        for name in ("name", "unit", "lookback", "description"):
            table.add_column(name, no_wrap=name == "name", justify="right" if name == "lookback" else "left")
        for row in rows:
            table.add_row(str(row["name"]), str(row["unit"]), str(row["lookback"]), str(row["description"]))
        console.print(table)
    else:
        raise typer.BadParameter(f"{output!r} is not one of table, csv, json", param_hint="--format")


@app.callback()
def _main() -> None:
    """Technic: daily US-stock technical scan (Dagster + Parquet/DuckDB)."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
