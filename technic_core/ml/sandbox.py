"""A warehouse filled from a market-data source without Dagster, by the daily pipeline's own steps.

Why: model tests, benchmarks and notebooks need months of labeled history (bars, universe, conditions,
priority plans, daily scan results, outcomes), and running the Dagster assets session by session costs
minutes of orchestration and chart rendering. The steps are `technic_core.daily`'s, the very functions the
assets call, so what the ML benchmark evaluates is the production path.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

from technic_core import calendar, daily
from technic_core.config import ScanConfig, ScreeningRules
from technic_core.ml.labels import label_ready, session_outcomes
from technic_core.sources import MarketDataSource
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)


def fill_warehouse(
    store: Warehouse,
    source: MarketDataSource,
    sessions: Sequence[dt.date],
    config: ScanConfig = daily.DEFAULT_SCAN,
    rules: ScreeningRules = daily.DEFAULT_RULES,
) -> None:
    """Write bars (with the scan's lookback of history before the first session), then for each of
    `sessions` its universe, conditions, priority plan, daily scan results (+ its scan run) and, where the
    bars already hold its future, its outcomes."""
    ordered = sorted(sessions)
    first_bar = daily.window_start(ordered[0], config.lookback_sessions)
    first_index_bar = daily.window_start(ordered[0], daily.INDEX_LOOKBACK)
    if first_index_bar < first_bar:
        daily.write_index_bars(
            store, source, calendar.sessions_between(first_index_bar, calendar.previous_session(first_bar))
        )
    daily.write_bars(store, source, calendar.sessions_between(first_bar, ordered[-1]), every_session=False)
    earnings = daily.source_earnings(source, ordered[0], ordered[-1])
    index_bars = daily.read_index_bars(store, ordered[0], ordered[-1])
    for session in ordered:
        daily.screen_session(store, source, session, rules)
        daily.session_conditions(store, session, index_bars)
        daily.plan_session(store, session, earnings, config.batch_size)
        daily.scan_session(store, session, config)
    bar_sessions = set(store.sessions("bars"))
    bars = store.read("bars", ordered[0], ordered[-1])
    for session in ordered:
        if label_ready(session, bar_sessions):
            results = store.read("results", session, session)
            store.write_partition("outcomes", session, session_outcomes(results, bars, session))
    _log.info("filled %s with %d sessions", store, len(ordered))
