"""Scan history: `scan_runs` rows, replayed scans that bootstrap the history, and the predictors' inputs.

Rows of `scan_runs` (one per scan, `schema.SCAN_RUNS`) come from three writers: the daily scan
(`scan_results`, scan id ``daily-<session>``), ad-hoc API scans, and replays (``replay-<session>-<nn>``).
A new warehouse has one daily row per session — every one with the default config — which cannot teach a
predictor what a config changes. Replays fill that gap: `sample_configs` draws typical user scans and
`replay_session` runs them with the real engine over a stored session, recording exactly what a scan would.

The mix replays draw from (documented because predictor errors are measured on it): all sectors or one to
three of them; at most 25–500 symbols; a minimum TechRating of 50–90 in steps of 5; sometimes a stop after
5–40 buy signals; batches of 50–250 symbols. Lookback and screening rules stay at their defaults — they
change what a rating means, and the optimizer does not tune them.

Predictor inputs (`history_features`) describe a run by its config, the session's market conditions and an
*emulation*: the config applied to the ratings of the latest scan before the run's session (the "rating
profile") — how many of its candidates would pass the filters, how many symbols it would visit before a
`max_signals` stop. Ratings move little from one session to the next, so this is most of the answer; the
learned models correct what it misses (the market moving ratings across thresholds, the regime).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import SupportsFloat, SupportsIndex

import numpy as np
import polars as pl

from technic_core import calendar, schema
from technic_core.config import SECTORS, ScanConfig
from technic_core.scalars import as_float
from technic_core.scan import ScanRun, Screened, run_scan
from technic_core.scoring import SIGNAL_THRESHOLDS
from technic_core.warehouse import Warehouse

REPLAY_PREFIX = "replay"
DAILY_PREFIX = "daily-"
#: Replays per session by default: a year of sessions gives a few thousand runs.
DEFAULT_REPLAYS_PER_SESSION = 8
_SEED = 20_240_601

#: Numeric predictor inputs, in model column order.
CONFIG_FEATURES = (
    "pipeline_run",
    "max_symbols",
    "sector_count",
    "min_tech_rating",
    "max_signals",
    "batch_size",
    "lookback_sessions",
    "min_history_sessions",
    "timeout_s",
)
#: Market-condition figures taken as they are from a conditions mapping; the regime adds `trend` and
#: `high_volatility`.
CONDITION_FIGURES = ("vix", "pct_advancing", "pct_above_sma_50", "index_volatility_20d")
CONDITION_FEATURES = (*CONDITION_FIGURES, "trend", "high_volatility")
EMULATION_FEATURES = ("profile_eligible", "profile_visited", "profile_results", "profile_signals")
#: How fast scans have been lately: the median duration of the previous `RECENT_RUNS` runs. Durations
#: depend on the machine and its load as much as on the config.
RECENT_FEATURES = ("recent_duration_s",)
PREDICTOR_FEATURES = CONFIG_FEATURES + CONDITION_FEATURES + EMULATION_FEATURES + RECENT_FEATURES
RECENT_RUNS = 20

_TREND_CODES = {"bull": 1.0, "sideways": 0.0, "bear": -1.0}
#: "No limit" is encoded as the largest limit `ScanConfig` accepts, so the value stays ordered (trees
#: split on it) and never missing.
_NO_LIMIT = {"max_symbols": 20_000.0, "max_signals": 100_000.0, "timeout_s": 3_600.0}


# -------------------------------------------------------------------- rows


def scan_run_row(
    scan_id: str,
    session: dt.date,
    config: ScanConfig,
    run: ScanRun,
    regime: str | None,
    duration_s: float,
    started_at: dt.datetime | None = None,
) -> pl.DataFrame:
    """The one `schema.SCAN_RUNS` row describing a finished scan (iterate `run` to the end first)."""
    return pl.DataFrame(
        [
            {
                "scan_id": scan_id,
                "date": session,
                "started_at": started_at or dt.datetime.now(dt.UTC),
                "duration_s": duration_s,
                "config_json": config.model_dump_json(),
                "regime": regime,
                "symbols_screened": run.total,
                "symbols_scanned": run.scanned,
                "symbols_rejected": run.rejected,
                "result_count": run.results,
                "signal_count": run.signals,
                "end_reason": run.end_reason,
            }
        ],
        schema=schema.SCAN_RUNS,
    )


# -------------------------------------------------------------------- replays


def sample_configs(session: dt.date, count: int = DEFAULT_REPLAYS_PER_SESSION) -> list[ScanConfig]:
    """`count` typical user scans (module docstring), the same for the same session on every machine."""
    rng = np.random.default_rng([_SEED, session.toordinal()])
    configs = []
    for _ in range(count):
        sectors = None
        if rng.random() >= 0.4:
            picked = rng.choice(len(SECTORS), size=int(rng.integers(1, 4)), replace=False)
            sectors = tuple(SECTORS[i] for i in sorted(picked))
        configs.append(
            ScanConfig(
                sectors=sectors,
                max_symbols=int(rng.choice([25, 50, 100, 200, 300, 500])),
                min_tech_rating=float(rng.choice(np.arange(50, 91, 5))),
                max_signals=int(rng.choice([5, 10, 20, 40])) if rng.random() < 0.35 else None,
                batch_size=int(rng.choice([50, 100, 250])),
            )
        )
    return configs


def replay_session(
    store: Warehouse,
    session: dt.date,
    configs: Sequence[ScanConfig],
    clock: Callable[[], float] = time.perf_counter,
) -> pl.DataFrame:
    """Run each config over `session`'s stored bars, universe and regime; one `SCAN_RUNS` row per config.

    The stored data is read once for all configs; each row's `duration_s` is that read plus its own scan,
    i.e. what a scan reading the warehouse by itself would take. Nothing is written (see `record_replays`).
    """
    started = clock()
    lookback = max(config.lookback_sessions for config in configs)
    bars = store.read("bars", calendar.sessions_back(session, lookback)[0], session)
    universe = store.read("universe", session, session)
    conditions = store.read("conditions", session, session)
    regime = conditions.get_column("regime")[0] if conditions.height else None
    load_s = clock() - started
    rows = []
    for number, config in enumerate(configs):
        scan_started = clock()
        run = run_scan(config, session, bars, universe, regime=regime)
        for _ in run:
            pass
        scan_id = f"{REPLAY_PREFIX}-{session.isoformat()}-{number:02d}"
        rows.append(scan_run_row(scan_id, session, config, run, regime, load_s + clock() - scan_started))
    return pl.concat(rows) if rows else schema.empty(schema.SCAN_RUNS)


def record_replays(store: Warehouse, session: dt.date, count: int = DEFAULT_REPLAYS_PER_SESSION) -> pl.DataFrame:
    """Replay `sample_configs(session, count)` and append each run to `scan_runs` (re-running replaces them)."""
    rows = replay_session(store, session, sample_configs(session, count))
    for row in rows.iter_slices(1):
        store.append_scan_run(row)
    return rows


# -------------------------------------------------------------------- rating profiles and emulation


@dataclass(frozen=True)
class RatingProfile:
    """The ratings of one stored scan, arranged for fast emulation: symbols in scan order (alphabetical).

    `results` are the rated rows themselves, in that order, and `previous` the session before's rows, for
    configs whose `where` screens them (`prev()` reads the previous session)."""

    session: dt.date
    sectors: np.ndarray  # sector index per symbol (-1 when unknown)
    ratings: np.ndarray
    results: pl.DataFrame
    previous: pl.DataFrame | None = None

    @classmethod
    def from_results(
        cls, session: dt.date, results: pl.DataFrame, previous: pl.DataFrame | None = None
    ) -> RatingProfile:
        rated = results.filter(pl.col("tech_rating").is_not_null()).sort("symbol")
        codes = {name: i for i, name in enumerate(SECTORS)}
        sectors = rated.get_column("sector").replace_strict(codes, default=-1, return_dtype=pl.Int64).to_numpy()
        return cls(session, sectors, rated.get_column("tech_rating").to_numpy(), rated, previous)

    def emulate(self, config: ScanConfig) -> dict[str, float]:
        """`EMULATION_FEATURES` of `config` run over these ratings, the way `run_scan` would select and stop.

        Candidates are the profile's symbols in the config's sectors and watchlist (`symbols`) in alphabetical
        order, capped at `max_symbols`; results are those rated at least `min_tech_rating` that its `where`
        keeps; with `max_signals`, the scan stops after the first batch that brings the buy signals to it.
        """
        chosen = np.ones(self.ratings.size, dtype=bool)
        if config.sectors is not None:
            chosen &= np.isin(self.sectors, [SECTORS.index(name) for name in config.sectors])
        if config.symbols is not None:
            chosen &= self.results.get_column("symbol").is_in(list(config.symbols)).to_numpy()
        candidates = self.ratings[chosen]
        eligible = candidates.size
        screened = self._screened(config.where)[chosen] if config.where is not None else None
        if config.max_symbols is not None:
            candidates = candidates[: config.max_symbols]
            screened = None if screened is None else screened[: config.max_symbols]
        kept = candidates >= config.min_tech_rating
        if screened is not None:
            kept &= screened
        signals = kept & (candidates >= SIGNAL_THRESHOLDS["Buy"])
        visited = candidates.size
        if config.max_signals is not None and candidates.size:
            batch_ends = np.arange(config.batch_size, candidates.size + config.batch_size, config.batch_size)
            batch_ends = np.minimum(batch_ends, candidates.size)
            reached = np.flatnonzero(np.cumsum(signals)[batch_ends - 1] >= config.max_signals)
            if reached.size:
                visited = int(batch_ends[reached[0]])
        return {
            "profile_eligible": float(eligible),
            "profile_visited": float(visited),
            "profile_results": float(kept[:visited].sum()),
            "profile_signals": float(signals[:visited].sum()),
        }

    def _screened(self, where: str) -> np.ndarray:
        """Per profile row, whether the screen `where` keeps it (as a scan's `where` keeps results)."""
        kept = Screened.of(where, self.previous).apply(self.results)[0].get_column("symbol")
        return self.results.get_column("symbol").is_in(kept).to_numpy()


def latest_profile(
    store: Warehouse, before: dt.date | None = None, stored: Sequence[dt.date] | None = None
) -> RatingProfile | None:
    """The rating profile of the latest stored results session (strictly before `before`, when given), with
    the session before it for screens that read `prev()`. `stored`: the sessions with results, when known."""
    stored = store.sessions("results") if stored is None else stored
    sessions = [s for s in stored if before is None or s < before]
    if not sessions:
        return None
    previous = store.read("results", sessions[-2], sessions[-2]) if len(sessions) > 1 else None
    return RatingProfile.from_results(sessions[-1], store.read("results", sessions[-1], sessions[-1]), previous)


# -------------------------------------------------------------------- predictor inputs


def feature_row(
    config: ScanConfig,
    conditions: Mapping[str, object],
    profile: RatingProfile | None,
    recent_duration_s: float = math.nan,
    pipeline_run: bool = False,
) -> dict[str, float]:
    """`PREDICTOR_FEATURES` of one (config, conditions) pair; unknown values are NaN.

    `recent_duration_s` is the median duration of the latest runs (`recent_duration`). `pipeline_run` marks
    the daily scan, whose duration also covers writing results; predictions are for interactive scans.
    """
    trend, volatility_state = _regime_parts(conditions)
    row = {
        "pipeline_run": float(pipeline_run),
        "max_symbols": _limit(config.max_symbols, "max_symbols"),
        "sector_count": float(len(config.sectors) if config.sectors is not None else len(SECTORS)),
        "min_tech_rating": float(config.min_tech_rating),
        "max_signals": _limit(config.max_signals, "max_signals"),
        "batch_size": float(config.batch_size),
        "lookback_sessions": float(config.lookback_sessions),
        "min_history_sessions": float(config.min_history_sessions),
        "timeout_s": _limit(config.timeout_s, "timeout_s"),
        **{name: _number(conditions.get(name)) for name in CONDITION_FIGURES},
        "trend": math.nan if trend is None else _TREND_CODES.get(trend, math.nan),
        "high_volatility": math.nan if volatility_state is None else float(volatility_state == "high"),
    }
    if profile is None:
        row.update({name: math.nan for name in EMULATION_FEATURES})
    else:
        row.update(profile.emulate(config))
    row["recent_duration_s"] = recent_duration_s
    return row


def history_features(store: Warehouse) -> pl.DataFrame:
    """Every stored scan run with its `PREDICTOR_FEATURES` and targets, oldest first.

    Conditions are those of the run's session; the profile is the latest results session strictly before
    it (what is known before the scan), so runs of the first results session have no emulation inputs;
    `recent_duration_s` is the median of the `RECENT_RUNS` runs before it.
    """
    runs = store.read("scan_runs").filter(pl.col("result_count").is_not_null() & pl.col("duration_s").is_not_null())
    if runs.height == 0:
        return pl.DataFrame()
    runs = runs.sort("date", "started_at", "scan_id").with_columns(
        pl.col("duration_s").shift(1).rolling_median(RECENT_RUNS, min_samples=1).alias("recent_duration_s")
    )
    dates = runs.get_column("date").unique().sort().to_list()
    conditions = {row["date"]: row for row in store.read("conditions", dates[0], dates[-1]).iter_rows(named=True)}
    result_sessions = store.sessions("results")
    profiles: dict[dt.date, RatingProfile | None] = {}
    rows = []
    for run in runs.iter_rows(named=True):
        session = run["date"]
        if session not in profiles:
            profiles[session] = latest_profile(store, before=session, stored=result_sessions)
        config = ScanConfig.model_validate(json.loads(run["config_json"]))
        features = feature_row(
            config,
            conditions.get(session, {}),
            profiles[session],
            recent_duration_s=_number(run["recent_duration_s"]),
            pipeline_run=run["scan_id"].startswith(DAILY_PREFIX),
        )
        rows.append(
            {
                "scan_id": run["scan_id"],
                "date": session,
                **features,
                "result_count": float(run["result_count"]),
                "duration_s": float(run["duration_s"]),
            }
        )
    return pl.DataFrame(rows)


def recent_duration(store: Warehouse, days: int = 30) -> float:
    """Median duration of the latest `RECENT_RUNS` runs of the last `days` calendar days (NaN if none)."""
    sessions = store.sessions("results")
    start = sessions[-1] - dt.timedelta(days=days) if sessions else None
    runs = store.read("scan_runs", start=start).sort("date", "started_at", "scan_id").tail(RECENT_RUNS)
    return as_float(runs.get_column("duration_s").median()) if runs.height else math.nan


def _regime_parts(conditions: Mapping[str, object]) -> tuple[str | None, str | None]:
    """(trend, volatility_state) from a conditions mapping: its own keys, or its "regime" string."""
    trend, volatility_state = conditions.get("trend"), conditions.get("volatility_state")
    if trend is None and isinstance(conditions.get("regime"), str):
        trend, _, volatility_state = str(conditions["regime"]).partition("_")
    return (str(trend) if trend else None), (str(volatility_state) if volatility_state else None)


def _limit(value: float | None, name: str) -> float:
    return _NO_LIMIT[name] if value is None else float(value)


def _number(value: object) -> float:
    """`value` as a float; NaN when it is missing (None) or not a number."""
    if not isinstance(value, str | SupportsFloat | SupportsIndex):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):  # text that is not a number, or a `__float__` that refuses
        return math.nan
