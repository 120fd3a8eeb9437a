"""Model features for a whole symbol × session panel, built in one vectorized pass.

Four kinds of feature, each for a reason:

* **Indicator features** (`RAW_FEATURES`): the scan's own indicators (`technic_core.catalog`) made
  scale-free — MACD and SMA gaps relative to the close — plus log returns over 1, 5 and 10 bars, a
  signed volume surge (``max(ln volume_ratio, 0) × sign(ret_1)``: heavy volume on an up day is not the
  same evidence as on a down day, and a tree would need many splits to learn that product) and the
  stock's own realized volatility (`volatility_20`, the population std of its last 20 ret_1).
* **Per-session cross-sectional ranks** (`rank_<feature>`, in (-0.5, 0.5)): a 5 % monthly gain means
  something else in a bull run than in a crash; its rank among that session's stocks does not. Ranks are
  over every symbol with a bar on the session, so training and inference see the same cross-section.
* **Trailing rank means** over 5 and 10 bars of the fast-moving features (`FAST_FEATURES`): a short-horizon
  signal is spent in days, so how it looked over the last two weeks says how much of it is still ahead.
* **Regime** (`regime_trend` -1/0/1 and `regime_high_volatility` 0/1 from `scoring.classify_regime`): the
  same setup may pay differently in a bear market (momentum crashes), and reversal pays more in volatile
  markets and, with `rank_volatility_20`, in volatile names; a single rank cannot say that, a model
  combining a feature with these can (`CONDITIONING_FEATURES`).

Only a symbol's own bars up to the row's session enter its features (the ranks add other symbols' bars of
the same session), so a feature never looks ahead. Missing inputs (warm-up, young symbols) stay null and
reach the model as missing values, never as zeros.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import numpy as np
import polars as pl

from technic_core import schema
from technic_core.catalog import compute_catalog
from technic_core.errors import ConfigError
from technic_core.scalars import as_date
from technic_core.scoring import score

#: Scale-free indicator features, in model column order.
RAW_FEATURES: tuple[str, ...] = (
    "rsi",
    "macd_to_close",
    "macd_hist_to_close",
    "bb_width",
    "atr_pct",
    "volume_ratio",
    "mom_21",
    "mom_63",
    "mom_126",
    "close_to_sma_50",
    "close_to_sma_200",
    "dist_high_20",
    "dist_low_20",
    "ret_1",
    "ret_5",
    "ret_10",
    "volume_surge_signed",
    "volatility_20",
)

#: Features whose information is spent within days; their rank is also averaged over the last bars.
FAST_FEATURES: tuple[str, ...] = ("ret_1", "ret_5", "rsi", "volume_surge_signed", "dist_high_20")
TRAILING_WINDOWS: tuple[int, ...] = (5, 10)

REGIME_FEATURES: tuple[str, ...] = ("regime_trend", "regime_high_volatility")

#: Features every tree may combine with the one feature it models (`alpha` "linear_residual" and
#: "additive_monotone"): the state a setup's payoff may depend on — the regime and the stock's own volatility
#: rank. Continuous market-state features (20-session volatility and return of the cross-section's median
#: return) were tried and dropped: conditioned on them, the trees learned the last bear market's weights and
#: kept applying them for weeks after the simulated regime had turned (the features lag), which cost 0.004
#: rank IC (5 sessions) and 0.010 (10 sessions) against the ridge over 2022-04 to 2022-12; with the regime
#: flags alone the model ties the ridge there.
CONDITIONING_FEATURES: tuple[str, ...] = (*REGIME_FEATURES, "rank_volatility_20")

RANK_FEATURES: tuple[str, ...] = tuple(f"rank_{name}" for name in RAW_FEATURES)
TRAILING_FEATURES: tuple[str, ...] = tuple(
    f"rank_{name}_mean_{window}" for name in FAST_FEATURES for window in TRAILING_WINDOWS
)

#: Every model feature, in the column order models are trained and scored with.
FEATURES: tuple[str, ...] = RAW_FEATURES + RANK_FEATURES + TRAILING_FEATURES + REGIME_FEATURES

#: Sessions of bars inference loads so features match training: the 200-bar SMA plus the recursive
#: averages' (RSI, MACD, ATR) convergence — the scan's own default lookback.
FEATURE_LOOKBACK_SESSIONS = 260

_RETURN_LAGS = (1, 5, 10)
_VOLATILITY_WINDOW = 20
_TREND_CODES = {"bull": 1.0, "sideways": 0.0, "bear": -1.0}

#: Conditions columns `build_features` reads for the regime features.
REGIME_COLUMNS = ("date", "trend", "volatility_state")


def build_features(
    bars: pl.DataFrame,
    conditions: pl.DataFrame | None = None,
    sessions: Sequence[dt.date] | None = None,
    with_tech_rating: bool = False,
) -> pl.DataFrame:
    """`symbol`, `date`, `close`, every column of `FEATURES` (Float64, null when undefined) per bar.

    `bars` is a long panel (`schema.BARS`) of any symbols and sessions. `conditions` (`schema.CONDITIONS`,
    or just `REGIME_COLUMNS`) gives the regime per session; without it the regime features are null.
    `sessions`, when given, limits the output to those sessions — ranks and trailing means are then
    computed only where they are needed, which makes scoring one session cheap. `with_tech_rating` adds the
    scan's `tech_rating` (a baseline for evaluation, not a feature).
    """
    # Sorted by (symbol, date) first: the catalog keeps the input's row order, and the shifts below need it.
    panel = (bars if bars.height else schema.empty(schema.BARS)).sort("symbol", "date")
    indicators = compute_catalog(panel, columns=(*schema.INDICATORS, "history_sessions"))
    if with_tech_rating:
        indicators = score(indicators)
    close, bars_so_far = pl.col("close"), pl.col("history_sessions")
    # Rows are sorted by (symbol, date): a shift of k rows is k bars back while the symbol has more than k.
    returns = [
        pl.when(bars_so_far > lag).then((close / close.shift(lag)).log()).alias(f"ret_{lag}") for lag in _RETURN_LAGS
    ]
    frame = indicators.with_columns(
        (pl.col("macd") / close).alias("macd_to_close"),
        (pl.col("macd_hist") / close).alias("macd_hist_to_close"),
        (close / pl.col("sma_50") - 1.0).alias("close_to_sma_50"),
        (close / pl.col("sma_200") - 1.0).alias("close_to_sma_200"),
        *returns,
    ).with_columns(
        (pl.col("volume_ratio").log().clip(lower_bound=0.0) * pl.col("ret_1").sign()).alias("volume_surge_signed"),
        # per symbol, so the rolling sums start at its first bar and a later bar never changes the rounding
        pl.when(bars_so_far > _VOLATILITY_WINDOW)
        .then(pl.col("ret_1").rolling_std(_VOLATILITY_WINDOW, ddof=0).over("symbol"))
        .alias("volatility_20"),
    )
    if sessions is not None:
        wanted = sorted(set(sessions))
        frame = frame.filter(pl.col("date") >= _first_session_needed(frame, wanted))
    frame = frame.with_columns(pl.col(name).fill_nan(None) for name in RAW_FEATURES).with_columns(
        centered_rank(name).over("date").alias(f"rank_{name}") for name in RAW_FEATURES
    )
    frame = frame.with_columns(
        pl.col(f"rank_{name}").rolling_mean(window, min_samples=1).over("symbol").alias(f"rank_{name}_mean_{window}")
        for name in FAST_FEATURES
        for window in TRAILING_WINDOWS
    )
    if sessions is not None:
        frame = frame.filter(pl.col("date").is_in(wanted))
    frame = frame.join(_regime_features(conditions), on="date", how="left")
    extra = ["tech_rating"] if with_tech_rating else []
    return frame.select("symbol", "date", "close", *extra, *FEATURES)


def regime_conditions(session: dt.date, regime: str | None) -> pl.DataFrame:
    """A one-row conditions frame from a scan's regime string ("<trend>_<volatility_state>")."""
    trend, _, volatility_state = (regime or "").partition("_")
    return pl.DataFrame(
        {"date": [session], "trend": [trend or None], "volatility_state": [volatility_state or None]},
        schema={"date": pl.Date, "trend": pl.String, "volatility_state": pl.String},
    )


def feature_matrix(frame: pl.DataFrame, features: Sequence[str]) -> np.ndarray:
    """The `features` columns of `frame` as a float32 matrix (nulls → NaN, xgboost's missing value).

    A missing column raises `ConfigError` naming it: a model silently scored on a shifted column order
    would produce confident nonsense.
    """
    missing = [name for name in features if name not in frame.columns]
    if missing:
        raise ConfigError(f"feature column(s) missing at inference: {', '.join(missing)}")
    if not features:
        return np.empty((frame.height, 0), dtype=np.float32)
    return frame.select(pl.col(name).cast(pl.Float32) for name in features).to_numpy()


def centered_rank(name: str) -> pl.Expr:
    """Percentile rank of a column within its group (use with `.over`), centered:
    (rank − 0.5) / count − 0.5 ∈ (-0.5, 0.5); null stays null and does not count."""
    column = pl.col(name)
    return (column.rank("average") - 0.5) / column.count() - 0.5


def _first_session_needed(frame: pl.DataFrame, wanted: list[dt.date]) -> dt.date:
    """The earliest session whose ranks the trailing means of `wanted` sessions read.

    A trailing mean at session t covers the symbol's last bars, which reach further back than the
    calendar window when it was halted; every session from the earliest such bar on is kept whole, so
    its ranks are over the full cross-section, exactly as in a computation over the whole panel.
    """
    if not wanted:
        return dt.date.max
    active = frame.filter(pl.col("date").is_in(wanted)).get_column("symbol").unique().to_list()
    lead_in = (
        frame.filter(pl.col("symbol").is_in(active) & (pl.col("date") < wanted[0]))
        .group_by("symbol")
        .agg(pl.col("date").sort().tail(max(TRAILING_WINDOWS) - 1).first())
    )
    return min(as_date(lead_in.get_column("date").min() or wanted[0]), wanted[0])


def _regime_features(conditions: pl.DataFrame | None) -> pl.DataFrame:
    """`date` plus the numeric regime features, one row per session of `conditions`."""
    columns = {"date": pl.Date, "regime_trend": pl.Float64, "regime_high_volatility": pl.Float64}
    if conditions is None or conditions.height == 0:
        return pl.DataFrame(schema=columns)
    return conditions.select(
        "date",
        pl.col("trend").replace_strict(_TREND_CODES, default=None, return_dtype=pl.Float64).alias("regime_trend"),
        pl.when(pl.col("volatility_state").is_null())
        .then(None)
        .otherwise((pl.col("volatility_state") == "high").cast(pl.Float64))
        .alias("regime_high_volatility"),
    ).unique("date", keep="last")
