"""Smart symbol prioritization: scan the symbols most likely to signal first, so the first Buy/Strong Buy
results reach users within the first batch and a scan can stop early without missing much.

A symbol's priority for session t is a weighted sum of four factor scores, each on 0–100 with 50 meaning
"no evidence either way", computed only from what is known *before* session t (so a plan can be built and
persisted before the session's bars arrive). Default weights 40/30/20/10 (`FactorWeights`).

What predicts today's signal
----------------------------
A signal is ``tech_rating ≥ 70`` (`scoring.SIGNAL_THRESHOLDS["Buy"]`). On the simulated market the
day-over-day rating change behaves like a random-walk step: it is barely autocorrelated, extrapolating the
last change or smoothing several past ratings both rank *worse* than yesterday's rating alone, and re-running
the indicators on a "flat" bar for today (to roll the windows forward) gains next to nothing. So the
strongest evidence is yesterday's rating and its distance from the threshold measured in daily rating
moves; older ratings and hit counts add noise, not information. The rest is today's own move, which no plan
made before the session can know: even ranking by the session's actual ratings leaves signals outside the
first quarter, because on many days more than a quarter of all names signal (`bench/prioritization.py`;
its figures are in `bench/results/prioritization.json`).

Layout
------
``config.py`` `PriorityConfig`, weights, tiers and reasons · ``codes.py`` the numpy representation the
factors share (integer symbol codes) · ``factors.py`` the four factor scores · ``plan.py`` priority score,
tier and the batch plan · ``hooks.py`` the scan-time hooks (`SectorHitRateReorder`, `PlanAnnotator`) ·
``metrics.py`` how early an order met the session's signals.

Everything is vectorized over all symbols at once — numpy over integer symbol codes (`codes.py` says why not
polars) — except the hooks' dict lookups of one batch's few hundred symbols.
"""

from technic_core.priority.config import (
    FACTOR_COLUMNS,
    FUNDAMENTAL_REASONS,
    HIGH_TIER_ABOVE,
    LOW_TIER_BELOW,
    NEUTRAL_SCORE,
    REASON_NO_REPORT,
    REASON_NO_SOURCE,
    REASON_NO_SURPRISE,
    REASON_SURPRISE,
    SIGNAL_THRESHOLD,
    TIER_HIGH,
    TIER_LOW,
    TIER_MEDIUM,
    TIERS,
    FactorWeights,
    PriorityConfig,
)
from technic_core.priority.factors import (
    ACTIVITY_SESSIONS,
    ACTIVITY_WINDOW,
    DEFAULT_RATING_DAILY_STD,
    FUNDAMENTAL_SCHEMA,
    HISTORY_COLUMNS,
    MIN_RATING_CHANGES,
    MOMENTUM_SCALE,
    MOMENTUM_SESSIONS,
    RATING_DAILY_STD_BOUNDS,
    SETUP_RSI_BAND,
    SURPRISE_SCALE,
    TREND_SCALE,
    VOLUME_SURGE_SCALE,
    activity_scores,
    fundamental_scores,
    historical_scores,
    setup_scores,
)
from technic_core.priority.hooks import PlanAnnotator, SectorHitRateReorder
from technic_core.priority.metrics import OrderMetrics, order_metrics, scan_positions, session_metrics
from technic_core.priority.plan import build_plan, prioritize, refresh_plan, score_symbols, tier_of

__all__ = [
    "ACTIVITY_SESSIONS",
    "ACTIVITY_WINDOW",
    "DEFAULT_RATING_DAILY_STD",
    "FACTOR_COLUMNS",
    "FUNDAMENTAL_REASONS",
    "FUNDAMENTAL_SCHEMA",
    "HIGH_TIER_ABOVE",
    "HISTORY_COLUMNS",
    "LOW_TIER_BELOW",
    "MIN_RATING_CHANGES",
    "MOMENTUM_SCALE",
    "MOMENTUM_SESSIONS",
    "NEUTRAL_SCORE",
    "RATING_DAILY_STD_BOUNDS",
    "REASON_NO_REPORT",
    "REASON_NO_SOURCE",
    "REASON_NO_SURPRISE",
    "REASON_SURPRISE",
    "SETUP_RSI_BAND",
    "SIGNAL_THRESHOLD",
    "SURPRISE_SCALE",
    "TIERS",
    "TIER_HIGH",
    "TIER_LOW",
    "TIER_MEDIUM",
    "TREND_SCALE",
    "VOLUME_SURGE_SCALE",
    "FactorWeights",
    "OrderMetrics",
    "PlanAnnotator",
    "PriorityConfig",
    "SectorHitRateReorder",
    "activity_scores",
    "build_plan",
    "fundamental_scores",
    "historical_scores",
    "order_metrics",
    "prioritize",
    "refresh_plan",
    "scan_positions",
    "score_symbols",
    "session_metrics",
    "setup_scores",
    "tier_of",
]
