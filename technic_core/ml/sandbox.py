"""A warehouse filled from a market-data source by the core functions alone, without Dagster.

Why: model tests, benchmarks and notebooks need months of labeled history — bars, universe, conditions,
daily scan results, outcomes — and running the Dagster assets session by session costs minutes of
orchestration (and chart rendering) for what these steps compute in seconds. The steps are the same core
calls the assets make (`screen`, `market_conditions`, `run_scan`, `session_outcomes`), so the data is the
same shape; the assets remain the production path.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Sequence

import polars as pl

from technic_core import calendar
from technic_core.config import ScanConfig, ScreeningRules
from technic_core.ml.labels import label_ready, session_outcomes
from technic_core.ml.scan_history import scan_run_row
from technic_core.scan import run_scan
from technic_core.scoring import market_conditions
from technic_core.screening import screen
from technic_core.sources import MarketDataSource
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)

#: Index history the regime's 200-session SMA needs.
_INDEX_LOOKBACK = 260


def fill_warehouse(
    store: Warehouse,
    source: MarketDataSource,
    sessions: Sequence[dt.date],
    config: ScanConfig = ScanConfig(),
    rules: ScreeningRules = ScreeningRules(),
) -> None:
    """Write bars (with `config.lookback_sessions` of history before the first session), then for each of
    `sessions` its universe, conditions, daily scan results (+ a `daily-<session>` scan run) and, where
    the bars already hold its future, its outcomes."""
    ordered = sorted(sessions)
    first_bar = calendar.sessions_back(ordered[0], config.lookback_sessions)[0]
    bars = source.bars(first_bar, ordered[-1])
    index_bars = source.index_bars(calendar.sessions_back(ordered[0], _INDEX_LOOKBACK)[0], ordered[-1])
    for (day,), frame in bars.partition_by("date", as_dict=True).items():
        store.write_partition("bars", day, frame)
    bar_sessions = set(store.sessions("bars"))
    for session in ordered:
        started = time.perf_counter()
        window = bars.filter(pl.col("date").is_between(calendar.sessions_back(session, config.lookback_sessions)[0], session))
        universe = screen(source.reference(session), window, session, rules)
        store.write_partition("universe", session, universe)
        conditions = market_conditions(window, index_bars, session)
        store.write_partition("conditions", session, conditions)
        regime = conditions.get_column("regime")[0]
        run = run_scan(config, session, window, universe, regime=regime)
        store.begin_results(session)
        written = 0
        for batch in run:
            store.write_result_batch(session, batch.batch, batch.results)
            written += 1
        store.finish_results(session, written)
        store.append_scan_run(
            scan_run_row(f"daily-{session.isoformat()}", session, config, run, regime, time.perf_counter() - started)
        )
    for session in ordered:
        if label_ready(session, bar_sessions):
            results = store.read("results", session, session)
            store.write_partition("outcomes", session, session_outcomes(results, bars, session))
    _log.info("filled %s with %d sessions", store, len(ordered))
