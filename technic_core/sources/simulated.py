"""The embedded default market: a deterministic simulated US stock market.

Why simulate: pipelines, tests, benchmarks and ML evaluation need years of realistic daily data for
thousands of names without a vendor key, and ML needs a market whose predictable part is *known*, so a
model's skill can be measured against the truth instead of against noise.

Determinism and prefix consistency
----------------------------------
The market is one day-by-day recursion over all symbols, started at `SimulationConfig.epoch`. The random
draws of a session come from ``np.random.default_rng([seed, day_number, stream])`` (``day_number`` = days
since 1970-01-01), never from a generator shared across days, so a session's bars do not depend on which
range was asked first, and a closure added to the calendar later leaves every other session's draws alone.
The state after every `checkpoint_interval` sessions is kept, so a request resumes from the nearest
checkpoint; the last few generated blocks of sessions are kept too, so day-by-day requests are cheap.

Universe
--------
`n_symbols` names over the whole history, sorted by ticker: mostly 3–4 capitals, some 2 and 5, a handful
of single letters, a few class shares (``ABC.B``) and a few invalid-looking tickers with a digit, never
`INDEX_SYMBOL` or `VOLATILITY_SYMBOL`. Each has a GICS sector (`config.SECTORS`) and industry, a
log-normal market cap (median $2.5B, within $50M–$2T), a fixed share count, a market beta, a sector
loading and an idiosyncratic volatility that falls with size. Start prices are log-normal around $25 and
lower for small caps, so a few percent are penny stocks (< $5) the pre-screen must reject. About `ipo_fraction` of the names list after
the epoch and `delist_fraction` delist (small caps more often), both spread over [epoch, `history_end`];
a delisting is announced 5–30 sessions ahead, and from then on `reference` shows its `delist_date` (the
first session the symbol is no longer listed). Market caps in `reference` are shares × the session's (or
last) close, clipped to the band.

Returns (log, close to close)
-----------------------------
``r_i(t) = beta_i * m(t) + g_i * s_sector(i)(t) + e_i(t) + earnings_i(t) + planted_i(t)``

* ``m``: market factor, drift and volatility set by a Markov regime chain (bull / bear / chop, see
  `REGIMES`), with GARCH(1,1) clustering around the regime's volatility.
* ``s``: one shock per sector, scaled with the market's current volatility.
* ``e``: idiosyncratic GARCH(1,1) shocks (higher for small caps and for the bear / chop regimes) plus rare
  news jumps.
* ``earnings``: every symbol reports quarterly (after the close); the surprise (percent, fat-tailed) moves
  the stock at the next session's open, with a volume surge.
* ``planted``: the predictable part described below.

Bars: the open gaps part of the day's move (all of an earnings reaction), high and low extend beyond
open/close, vwap is a convex mix of O/H/L/C, prices are rounded to ticks ($0.01; $0.0001 below $1).
Volume is turnover (0.15–1.2 % of shares per session) with persistent log-normal noise, surging on big
moves, earnings reactions, listing days and volatile markets; trades = volume / a per-symbol trade size.
Trading halts (`halt_probability` per listed symbol-day, lasting 1–3 sessions) remove the symbol's bars;
the price moves on underneath and gaps on resumption. `INDEX_SYMBOL` follows the cap-weighted common
(market + sector) return of the listed names plus a little tracking noise — a diversified index, free of
idiosyncratic and planted moves — starting near $268 like SPY on the epoch; `VOLATILITY_SYMBOL` is a
mean-reverting level tracking the market's conditional volatility plus a regime premium, jumping when the
index falls.

Planted predictable part (ground truth for ML and prioritization)
-----------------------------------------------------------------
At the close of session t, for each symbol with a bar, six features are computed from that symbol's own
published bars only (a halted session is not a bar; ``C``/``H``/``V`` = close, high, volume, ``[-n]`` =
n bars back). The planted score weighs the first five; the weights depend on the session's hidden market
regime r(t) (the regime session t was drawn in, see `REGIMES` — known at its close, never a later one):

==================  ================================================================  ====  ======  ======  =====
feature             definition                                                        bars  bull    bear    chop
==================  ================================================================  ====  ======  ======  =====
ret_5               ln(C / C[-5])                                                     6     -0.40   -0.60   -0.50
rsi_14              Wilder RSI(14), seeded with the mean of the first 14 changes      15    -0.20   -0.20   -0.20
                    (TA-Lib's definition); undefined while gains + losses = 0
volume_surge_sign   max(ln(V / mean(V of the last 20 bars)), 0) × sign(C − C[-1])     20    +0.15   +0.15   +0.15
mom_63              ln(C / C[-63])                                                    64    +0.20   -0.25   -0.10
dist_high_20        C / max(H of the last 20 bars) − 1                                20    -0.15   -0.15   -0.15
ln σ_20             ln of the population std of the last 20 bar-to-bar log changes    21    —       —       —
                    ln(C[-j] / C[-j-1]), j = 0..19 (undefined where σ = 0); scales ret_5
==================  ================================================================  ====  ======  ======  =====

("the last 20 bars" include today's.) Each feature is z-scored (population std) across the symbols where it
is defined, clipped to ±3, and set to 0 where undefined (``z_f``, and ``v`` for ln σ_20, which scales the
ret_5 term in every regime). Then

``combined_i(t) = Σ_f W_f(r(t)) × z_f,i × (1 + γ × v_i if f = ret_5 else 1)``

with γ = `alpha_volatility_interaction` (0.3), and ``combined`` is z-scored and clipped the same way across
the symbols with a bar, giving the planted score ``a_i(t)`` (0 for symbols without a bar). ``W_f(r)`` is
`alpha_weights` (the base: ret_5 −0.40, rsi_14 −0.20, volume_surge_sign +0.15, mom_63 +0.10,
dist_high_20 −0.15) times the regime's multiplier from `alpha_regime_multipliers` (ret_5 ×1 / ×1.5 / ×1.25,
mom_63 ×2 / ×−2.5 / ×−1 in bull / bear / chop; other features ×1), which gives the table above. Why:

* **Momentum crashes** (Daniel & Moskowitz 2016, "Momentum crashes"): medium-term momentum pays in calm
  bull markets and turns into a loss in bear markets and high-volatility, directionless ones, when past
  losers rebound hardest. mom_63 is weighted +0.20 in the bull regime, −0.25 in bear and −0.10 in chop.
* **Short-term reversal is stronger in volatile names and volatile markets** (Nagel 2012, "Evaporating
  liquidity"; also Avramov, Chordia & Goyal 2006): the return to providing liquidity rises with volatility.
  The ret_5 weight grows with the regime's market volatility (bull < chop < bear: ×1, ×1.25, ×1.5), and
  the ret_5 term is scaled by 1 + γ × v, v the symbol's own 20-bar volatility relative to the session's
  cross-section (the multiplier stays ≥ 0 because γ ≤ 1/3 and |v| ≤ 3).

So a model that weighs the features the same in every state leaves predictable return on the table — above
all around regime changes; one that sees the observable state (the index's trend and volatility, a stock's
own volatility) can learn the difference. The hidden regime itself never reaches a warehouse.
``alpha_state_dependence=False`` plants the linear, regime-independent score ``z(Σ_f alpha_weights_f × z_f)``
instead — the market of `MODEL_VERSION` 1, where a linear model on the same features sits at the ceiling.

The score's effect is spread over the next ``H`` = `alpha_horizon` (10) sessions with linearly decaying
weights ``w_j = (H + 1 − j) / (H (H + 1) / 2)``, j = 1..H:

``planted_i(t) = alpha_strength × Σ_{j=1..H} w_j × a_i(t − j)``

so one session's score adds `alpha_strength` (0.0033) × a to the log return of the next H sessions in total,
and a score that persists adds about that much every session. The oracle expected log return from close(t)
to close(t + h) is the part already fixed by scores up to t:

``oracle_i(t, h) = alpha_strength × Σ_{m=0..H−1} a_i(t − m) × Σ_{k=1..min(h, H−m)} w_{k+m}``

(horizons beyond H equal H's). `oracle_expected_return` returns it, exactly: it is computed from the stored
per-session scores. With the defaults its mean daily cross-sectional Spearman rank IC against realized
forward log returns is about 0.14 for h = 5 and 0.15 for h = 10 (400–2,000 names, 2018-06 to 2019-12 or
2020-12; the linear world: 0.15 and 0.16); the tests hold both worlds to 0.10–0.20. The reversal's volatility
scaling costs rank IC — it puts more of the planted return on the noisiest names — which is why the
state-dependent world's oracle ranks a little worse. The weights, multipliers, γ, strength and horizon are
`SimulationConfig` knobs.

The oracle (and `market_regimes`) are for evaluation only: never a model feature, never in a warehouse.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import logging
import math
import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import numpy as np
import polars as pl

from technic_core import calendar, schema
from technic_core.config import SECTORS
from technic_core.errors import ConfigError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL, SourceStats
from technic_core.warehouse import write_bytes_atomic

_log = logging.getLogger(__name__)
#: Bump when the recursion changes, so persisted checkpoints of an older model are never resumed.
MODEL_VERSION = 2
#: Persisted checkpoints kept per market; older ones are deleted (they only speed up old backfills).
_PERSISTED_CHECKPOINTS = 2

#: Columns of `SimulatedMarket.oracle_expected_return`.
ORACLE_SCHEMA: dict[str, pl.DataType] = {
    "symbol": pl.String,
    "date": pl.Date,
    "horizon": pl.Int64,
    "expected_return": pl.Float64,
}

#: Columns of `SimulatedMarket.market_regimes`.
REGIMES_SCHEMA: dict[str, pl.DataType] = {"date": pl.Date, "regime": pl.String}

#: Features the planted score can weigh (see the module docstring for their definitions).
ALPHA_FEATURES: tuple[str, ...] = ("ret_5", "mom_63", "rsi_14", "volume_surge_sign", "dist_high_20")

#: Short-horizon reversal carries most of the weight, as in real 5–10 session predictability. Positive weights
#: on persistent trend features (mom_63, dist_high_20) feed back into prices — winners keep drifting up — and
#: widen the price dispersion year after year, so trend gets a small weight and distance to the high a
#: negative one (stocks stretched below their 20-session high rebound).
DEFAULT_ALPHA_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("ret_5", -0.40),
    ("rsi_14", -0.20),
    ("volume_surge_sign", 0.15),
    ("mom_63", 0.10),
    ("dist_high_20", -0.15),
)

#: Multipliers of a feature's weight in each regime (`REGIMES` order: bull, bear, chop) when the planted
#: score is state-dependent; features not listed keep their weight in every regime. Momentum pays in calm
#: bull markets and reverses in bear markets (momentum crashes); short-term reversal is stronger the more
#: volatile the market (bear > chop > bull, the order of the regimes' volatilities). See the module docstring.
DEFAULT_ALPHA_REGIME_MULTIPLIERS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("ret_5", (1.0, 1.5, 1.25)),
    ("mom_63", (2.0, -2.5, -1.0)),
)
#: γ: the ret_5 term is multiplied by (1 + γ × v), v the clipped cross-sectional z-score of the symbol's own
#: ln(20-bar volatility). γ ≤ 1/3 keeps the multiplier ≥ 0, so reversal never turns into continuation.
DEFAULT_ALPHA_VOLATILITY_INTERACTION = 0.3

@dataclass(frozen=True)
class SimulationConfig:
    """What market to simulate. Two markets with equal configs produce identical data."""

    n_symbols: int = 5_000
    seed: int = 7
    #: First simulated session (a later date if it is not a session).
    epoch: dt.date = dt.date(2018, 1, 2)
    #: IPO and delisting dates are spread over [epoch, history_end]; sessions after it still trade.
    history_end: dt.date = dt.date(2026, 12, 31)
    ipo_fraction: float = 0.10
    delist_fraction: float = 0.08
    #: Chance a listed symbol starts a 1–3 session trading halt on a given session.
    halt_probability: float = 0.0005
    #: Total log return one unit of planted score adds over the next `alpha_horizon` sessions.
    alpha_strength: float = 0.0033
    alpha_horizon: int = 10
    alpha_weights: tuple[tuple[str, float], ...] = DEFAULT_ALPHA_WEIGHTS
    #: False plants the linear, regime-independent score ``Σ weight × z`` (the market of MODEL_VERSION 1);
    #: True scales the weights by the hidden regime and the ret_5 term by the symbol's own volatility.
    alpha_state_dependence: bool = True
    alpha_regime_multipliers: tuple[tuple[str, tuple[float, ...]], ...] = DEFAULT_ALPHA_REGIME_MULTIPLIERS
    alpha_volatility_interaction: float = DEFAULT_ALPHA_VOLATILITY_INTERACTION
    #: Sessions between state checkpoints (also the size of a cached block); it never changes the data.
    checkpoint_interval: int = 64

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.n_symbols <= 50_000:
            problems.append(f"n_symbols: {self.n_symbols} is not in 1..50000")
        if self.seed < 0:
            problems.append(f"seed: {self.seed} is negative")
        if self.history_end <= self.epoch:
            problems.append(f"history_end: {self.history_end} is not after epoch {self.epoch}")
        elif self.history_end > calendar.last_known_session():
            problems.append(
                f"history_end: {self.history_end} is after the calendar's last session {calendar.last_known_session()}"
            )
        if self.epoch < calendar.CALENDAR_START:
            problems.append(f"epoch: {self.epoch} is before the calendar's start {calendar.CALENDAR_START}")
        for name in ("ipo_fraction", "delist_fraction"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                problems.append(f"{name}: {getattr(self, name)} is not in [0, 0.5]")
        if not 0.0 <= self.halt_probability <= 0.05:
            problems.append(f"halt_probability: {self.halt_probability} is not in [0, 0.05]")
        if self.alpha_strength < 0:
            problems.append(f"alpha_strength: {self.alpha_strength} is negative")
        if not 1 <= self.alpha_horizon <= 63:
            problems.append(f"alpha_horizon: {self.alpha_horizon} is not in 1..63")
        unknown = [name for name, _ in self.alpha_weights if name not in ALPHA_FEATURES]
        if unknown:
            problems.append(f"alpha_weights: unknown feature(s) {unknown}; known: {', '.join(ALPHA_FEATURES)}")
        for name, multipliers in self.alpha_regime_multipliers:
            if name not in ALPHA_FEATURES:
                problems.append(
                    f"alpha_regime_multipliers: unknown feature {name!r}; known: {', '.join(ALPHA_FEATURES)}"
                )
            elif len(multipliers) != len(REGIMES):
                problems.append(
                    f"alpha_regime_multipliers: {name} has {len(multipliers)} multipliers, not one per regime "
                    f"({', '.join(r.name for r in REGIMES)})"
                )
        if not 0.0 <= self.alpha_volatility_interaction <= 1.0 / 3.0:
            problems.append(
                f"alpha_volatility_interaction: {self.alpha_volatility_interaction} is not in [0, 1/3] "
                "(the ret_5 multiplier 1 + γ × v, |v| ≤ 3, must stay ≥ 0)"
            )
        if not 1 <= self.checkpoint_interval <= 1_000:
            problems.append(f"checkpoint_interval: {self.checkpoint_interval} is not in 1..1000")
        if problems:
            raise ConfigError("invalid SimulationConfig: " + "; ".join(problems))


# --- market parameters -------------------------------------------------------------------------------------


class _Regime(NamedTuple):
    name: str
    drift: float  # daily log drift of the market factor
    volatility: float  # daily volatility the market GARCH reverts to
    idiosyncratic_multiplier: float  # scales stocks' own variance target
    vix_premium: float  # points added to the volatility index's target


#: Market regimes in chain-state order; bull is the starting state.
REGIMES: tuple[_Regime, ...] = (
    _Regime("bull", 0.0006, 0.0075, 1.0, 0.0),
    _Regime("bear", -0.0010, 0.017, 1.35, 4.0),
    _Regime("chop", -0.0002, 0.013, 1.2, 3.0),
)
#: Daily transition probabilities (row: today's regime); expected stays ≈ 170 / 40 / 35 sessions.
REGIME_TRANSITIONS = np.array(
    [
        [0.9940, 0.0020, 0.0040],
        [0.0120, 0.9750, 0.0130],
        [0.0200, 0.0080, 0.9720],
    ]
)
_MARKET_GARCH = (0.08, 0.89)  # (shock weight, persistence) of the market's conditional variance
_STOCK_GARCH = (0.07, 0.91)
_SECTOR_VOLATILITY = 0.006  # daily, in the bull regime's market volatility
_NEWS_PROBABILITY = 0.002  # chance of an idiosyncratic news jump per symbol-day
_NEWS_SIZE = 4.0  # news jump std in units of the symbol's base volatility
_IPO_POP_MEAN, _IPO_POP_SPREAD = 0.10, 0.15  # first-day log return over the offer price
_INDEX_TRACKING = 0.001  # daily std of the index's own noise around its constituents' common moves
_FINEST_TICKS_PER_DOLLAR = 1e4  # below $1 prices tick in hundredths of a cent
_INDEX_START = 266.86  # SPY's close the session before the default epoch
_VIX_START = 11.0
_VARIANCE_RISK_PREMIUM = 1.2  # implied over expected volatility
_MARKET_CAP_BOUNDS = (50e6, 2e12)
_MEDIAN_MARKET_CAP = 2.5e9
_SURPRISE_CENTER, _SURPRISE_SCALE = 1.5, 6.0  # surprise_pct = center + scale × Student-t(3)
_RING = 64  # closes kept per symbol: enough for ret_5 and mom_63
_WINDOW = 20  # highs and volumes kept per symbol: volume_surge_sign and dist_high_20
_RSI_PERIOD = 14
_VOLATILITY_WINDOW = 20  # bar-to-bar changes in the symbol's own volatility (state-dependent planted score)
_BLOCK_CACHE_SIZE = 4
_BAR_VALUES = ("open", "high", "low", "close", "volume", "vwap", "trades")  # _Block arrays behind a bar row
_NOT_DELISTED = np.iinfo(np.int64).max

_STREAM_UNIVERSE, _STREAM_MARKET, _STREAM_STOCKS, _STREAM_EARNINGS = range(4)


class _SectorProfile(NamedTuple):
    share: float  # of all names
    volatility: float  # multiplier of idiosyncratic volatility
    beta: float  # mean market beta
    industries: tuple[str, ...]
    name_words: tuple[str, ...]  # words company names of the sector use


_SECTOR_PROFILES: dict[str, _SectorProfile] = {
    "Information Technology": _SectorProfile(
        0.14, 1.15, 1.20,
        ("Software", "Semiconductors & Semiconductor Equipment", "IT Services",
         "Technology Hardware, Storage & Peripherals", "Electronic Equipment, Instruments & Components"),
        ("Systems", "Software", "Technologies", "Micro", "Networks", "Digital", "Semiconductor"),
    ),
    "Health Care": _SectorProfile(
        0.19, 1.35, 0.95,
        ("Biotechnology", "Pharmaceuticals", "Health Care Equipment & Supplies",
         "Health Care Providers & Services", "Life Sciences Tools & Services"),
        ("Therapeutics", "Biosciences", "Pharmaceuticals", "Medical", "Health", "Genomics"),
    ),
    "Financials": _SectorProfile(
        0.15, 0.85, 1.05,
        ("Banks", "Capital Markets", "Insurance", "Consumer Finance", "Financial Services"),
        ("Financial", "Bancorp", "Capital", "Insurance", "Trust", "Partners"),
    ),
    "Consumer Discretionary": _SectorProfile(
        0.11, 1.10, 1.15,
        ("Specialty Retail", "Hotels, Restaurants & Leisure", "Automobiles", "Household Durables",
         "Textiles, Apparel & Luxury Goods"),
        ("Brands", "Retail", "Motors", "Home", "Leisure", "Outfitters"),
    ),
    "Communication Services": _SectorProfile(
        0.05, 1.05, 1.00,
        ("Interactive Media & Services", "Entertainment", "Media", "Diversified Telecommunication Services"),
        ("Media", "Communications", "Entertainment", "Interactive", "Broadcasting"),
    ),
    "Industrials": _SectorProfile(
        0.14, 0.95, 1.05,
        ("Aerospace & Defense", "Machinery", "Building Products", "Professional Services",
         "Ground Transportation"),
        ("Industries", "Aerospace", "Logistics", "Machinery", "Engineering", "Controls"),
    ),
    "Consumer Staples": _SectorProfile(
        0.04, 0.75, 0.65,
        ("Food Products", "Beverages", "Household Products", "Consumer Staples Distribution & Retail"),
        ("Foods", "Beverage", "Consumer Products", "Farms", "Grocers"),
    ),
    "Energy": _SectorProfile(
        0.05, 1.20, 1.10,
        ("Oil, Gas & Consumable Fuels", "Energy Equipment & Services"),
        ("Energy", "Petroleum", "Resources", "Oilfield Services", "Midstream"),
    ),
    "Utilities": _SectorProfile(
        0.02, 0.65, 0.55,
        ("Electric Utilities", "Gas Utilities", "Multi-Utilities", "Water Utilities"),
        ("Power", "Electric", "Utilities", "Water"),
    ),
    "Real Estate": _SectorProfile(
        0.06, 0.85, 0.85,
        ("Residential REITs", "Industrial REITs", "Retail REITs", "Office REITs",
         "Real Estate Management & Development"),
        ("Realty", "Properties", "Residential", "Land"),
    ),
    "Materials": _SectorProfile(
        0.05, 1.00, 1.05,
        ("Chemicals", "Metals & Mining", "Construction Materials", "Containers & Packaging"),
        ("Materials", "Chemicals", "Mining", "Minerals", "Packaging"),
    ),
}

_NAME_HEADS = (
    "Ar", "Bel", "Cor", "Dyn", "El", "Fen", "Gal", "Hel", "Ion", "Jun", "Kel", "Lum", "Mar", "Nov", "Or",
    "Pax", "Quin", "Ros", "Sol", "Tal", "Ul", "Ver", "Wes", "Xen", "Zen", "Alt", "Bri", "Cal", "Del", "Ever",
)
_NAME_TAILS = ("a", "ex", "ia", "on", "is", "ar", "en", "um", "o", "ix", "ant", "era", "ova", "eon", "ity")
_LEGAL_SUFFIXES = ("Inc.", "Corp.", "Holdings", "Group", "Co.", "Ltd.", "plc")

#: Ticker lengths 1–5 and their shares; letters weighted roughly like real first letters.
_TICKER_LENGTH_SHARES = np.array([0.003, 0.05, 0.40, 0.50, 0.047])
_LETTER_WEIGHTS = np.array(
    [6, 5, 7, 5, 4, 4, 4, 3, 3, 2, 3, 4, 6, 4, 3, 5, 1, 4, 7, 4, 2, 3, 3, 1, 2, 1], dtype=float
)
_CLASS_SHARE_SHARE = 0.003  # tickers like ABC.B
_DIGIT_TICKER_SHARE = 0.002  # invalid-looking tickers like AB2C, for the screener to reject
_RESERVED_TICKERS = {INDEX_SYMBOL, VOLATILITY_SYMBOL}


def _horizon_weights(horizon: int) -> np.ndarray:
    """w_j, j = 1..H: linearly decaying, summing to 1."""
    raw = np.arange(horizon, 0, -1, dtype=float)
    return raw / raw.sum()


def _oracle_coefficients(horizon_weights: np.ndarray, horizon: int) -> np.ndarray:
    """c_m = Σ_{k=1..min(h, H−m)} w_{k+m}: weight of the score m sessions back in the oracle of horizon h."""
    size = len(horizon_weights)
    return np.array([horizon_weights[m : min(m + horizon, size)].sum() for m in range(size)])


def _regime_weights(config: SimulationConfig) -> list[dict[str, float]]:
    """The planted weights of each regime (`REGIMES` order): `alpha_weights` × the regime's multiplier."""
    multipliers = dict(config.alpha_regime_multipliers)
    return [
        {name: weight * multipliers.get(name, (1.0,) * len(REGIMES))[index] for name, weight in config.alpha_weights}
        for index in range(len(REGIMES))
    ]


def _round_to_tick(prices: np.ndarray, ticks_per_dollar: np.ndarray) -> np.ndarray:
    """Round to the symbol-day's tick; one tick size per symbol-day keeps rounding monotone, so the OHLC
    order survives it."""
    return np.maximum(np.rint(prices * ticks_per_dollar) / ticks_per_dollar, 1.0 / _FINEST_TICKS_PER_DOLLAR)


def _day_numbers(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[D]").astype(np.int64)


def _zscore(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cross-sectional z-score over `valid`, clipped to ±3; 0 elsewhere and when there is no spread."""
    count = np.count_nonzero(valid)
    if count < 2:
        return np.zeros_like(values)
    centered = values - np.sum(values, where=valid) / count
    spread = math.sqrt(np.sum(centered * centered, where=valid) / count)
    if spread == 0:
        return np.zeros_like(values)
    return np.where(valid, np.clip(centered / spread, -3.0, 3.0), 0.0)


# --- static universe ---------------------------------------------------------------------------------------


class _Universe:
    """Everything about the names that does not depend on the price path, drawn once per config."""

    def __init__(self, config: SimulationConfig, session_days: np.ndarray) -> None:
        rng = np.random.default_rng([config.seed, _STREAM_UNIVERSE])
        n = config.n_symbols
        self.size = n
        self.tickers = np.sort(self._draw_tickers(rng, n))
        profiles = [_SECTOR_PROFILES[sector] for sector in SECTORS]
        shares = np.array([p.share for p in profiles])
        self.sector = rng.choice(len(SECTORS), size=n, p=shares / shares.sum())
        industry_pick = rng.random(n)
        self.sector_names = np.array(SECTORS)[self.sector]
        self.industry_names = np.array(
            [profiles[s].industries[int(u * len(profiles[s].industries))] for s, u in zip(self.sector, industry_pick)]
        )
        self.company_names = self._draw_company_names(rng, profiles)

        log_cap = np.log(_MEDIAN_MARKET_CAP) + 1.8 * rng.standard_normal(n)
        cap = np.clip(np.exp(log_cap), *_MARKET_CAP_BOUNDS)
        size_score = np.log(cap / _MEDIAN_MARKET_CAP)
        log_price = np.log(25.0) + 0.45 * size_score + 0.7 * rng.standard_normal(n)
        ipo_log_price = np.log(18.0) + 0.25 * size_score + 0.4 * rng.standard_normal(n)
        ipo_names = rng.choice(n, size=round(config.ipo_fraction * n), replace=False)
        is_ipo = np.zeros(n, dtype=bool)
        is_ipo[ipo_names] = True
        self.start_price = np.where(
            is_ipo, np.clip(np.exp(ipo_log_price), 4.0, 80.0), np.clip(np.exp(log_price), 0.5, 2_000.0)
        )
        self.shares = np.maximum(np.round(cap / self.start_price), 1_000).astype(np.int64)

        sector_volatility = np.array([p.volatility for p in profiles])[self.sector]
        self.volatility = np.clip(
            0.021 * np.exp(-0.12 * size_score + 0.25 * rng.standard_normal(n)) * sector_volatility, 0.006, 0.08
        )
        sector_beta = np.array([p.beta for p in profiles])[self.sector]
        self.beta = np.clip(sector_beta + 0.3 * rng.standard_normal(n), 0.3, 2.0)
        self.sector_loading = np.clip(1.0 + 0.25 * rng.standard_normal(n), 0.3, 1.8)
        turnover = np.clip(0.0045 * np.exp(0.35 * rng.standard_normal(n)), 0.0015, 0.012)
        self.base_volume = turnover * self.shares
        self.trade_size = np.exp(rng.uniform(np.log(60.0), np.log(300.0), n))
        # Small caps halt more often: twice the average at $50M, half at the top.
        self.halt_weight = np.clip(np.exp(-0.18 * size_score), 0.5, 2.0)
        self.earnings_offset = rng.integers(0, 41, n)

        self._draw_listing_dates(rng, config, session_days, ipo_names, cap)

    @staticmethod
    def _draw_tickers(rng: np.random.Generator, count: int) -> np.ndarray:
        """Unique tickers, never the index or volatility symbols; three candidates per name leave room for
        the duplicates random letters produce."""
        candidates = 3 * count + 64
        lengths = rng.choice(np.arange(1, 6), size=candidates, p=_TICKER_LENGTH_SHARES)
        codes = (rng.choice(26, size=(candidates, 7), p=_LETTER_WEIGHTS / _LETTER_WEIGHTS.sum()) + ord("A")).astype(
            np.uint8
        )
        with_digit = (rng.random(candidates) < _DIGIT_TICKER_SHARE) & (lengths >= 3)
        digit_position = rng.integers(1, np.maximum(lengths, 2))
        codes[with_digit, digit_position[with_digit]] = ord("0") + rng.integers(0, 10, with_digit.sum())
        class_share = (rng.random(candidates) < _CLASS_SHARE_SHARE) & (lengths <= 4) & ~with_digit
        codes[class_share, lengths[class_share]] = ord(".")
        lengths = np.where(class_share, lengths + 2, lengths)
        codes[np.arange(7)[None, :] >= lengths[:, None]] = 0
        tickers = codes.view("S7").ravel().astype("U7")
        _, first = np.unique(tickers, return_index=True)
        ordered = tickers[np.sort(first)]
        ordered = ordered[~np.isin(ordered, list(_RESERVED_TICKERS))]
        if len(ordered) < count:
            raise ConfigError(f"n_symbols: could not draw {count} unique tickers")
        return ordered[:count]

    def _draw_company_names(self, rng: np.random.Generator, profiles: list[_SectorProfile]) -> np.ndarray:
        """"<Stem> <sector word> <legal suffix>", e.g. "Novex Therapeutics Inc."."""
        n = self.size
        heads = rng.integers(0, len(_NAME_HEADS), n)
        tails = rng.integers(0, len(_NAME_TAILS), n)
        words = rng.random(n)
        suffixes = rng.integers(0, len(_LEGAL_SUFFIXES), n)
        return np.array(
            [
                f"{_NAME_HEADS[h]}{_NAME_TAILS[t]} "
                f"{profiles[s].name_words[int(w * len(profiles[s].name_words))]} {_LEGAL_SUFFIXES[x]}"
                for h, t, s, w, x in zip(heads, tails, self.sector, words, suffixes)
            ]
        )

    def _draw_listing_dates(
        self,
        rng: np.random.Generator,
        config: SimulationConfig,
        session_days: np.ndarray,
        ipo_names: np.ndarray,
        cap: np.ndarray,
    ) -> None:
        """Listing and delisting session indices (into the simulated sessions), and the displayed list date.

        Names listed at the epoch get a historical list date between 1980 and the epoch. IPO dates are
        stratified — one in each equal slice of (epoch, history_end] — so every stretch of history sees its
        share of new names, even in a small universe. Delistings need 180 calendar days of listing and
        favour small caps.
        """
        n = self.size
        first_day = int(session_days[0])
        last_day = int(_day_numbers(np.array([config.history_end]))[0])
        strata = (np.arange(len(ipo_names)) + rng.random(len(ipo_names))) / max(len(ipo_names), 1)
        ipo_day = first_day + 1 + (strata * (last_day - first_day)).astype(np.int64)
        self.list_index = np.zeros(n, dtype=np.int64)
        self.list_index[ipo_names] = np.searchsorted(session_days, ipo_day, side="left")
        is_ipo = self.list_index > 0

        historical_start = int(_day_numbers(np.array([dt.date(1980, 1, 2)]))[0])
        historical = np.busday_offset(
            rng.integers(historical_start, first_day - 7, n).astype("datetime64[D]"), 0, roll="forward"
        )
        listed_day = np.where(is_ipo, session_days[self.list_index], _day_numbers(historical))
        self.list_date = listed_day.astype("datetime64[D]")

        earliest_delist_day = np.maximum(first_day + 30, listed_day + 180)
        eligible = np.flatnonzero(earliest_delist_day < last_day)
        weights = cap[eligible] ** -0.35
        count = min(round(config.delist_fraction * n), len(eligible))
        delisted = rng.choice(eligible, size=count, replace=False, p=weights / weights.sum())
        room = np.maximum(last_day + 1 - earliest_delist_day, 0)
        delist_day = earliest_delist_day + (rng.random(n) * room).astype(np.int64)
        self.delist_index = np.full(n, _NOT_DELISTED, dtype=np.int64)
        self.delist_index[delisted] = np.searchsorted(session_days, delist_day[delisted], side="left")
        lead = rng.integers(5, 31, n)
        self.announce_index = np.where(
            self.delist_index == _NOT_DELISTED, _NOT_DELISTED, np.maximum(self.delist_index - lead, self.list_index + 1)
        )

    def listed(self, session_index: int) -> np.ndarray:
        return (self.list_index <= session_index) & (session_index < self.delist_index)


class _EarningsSchedule:
    """Quarterly report sessions and surprises of every name, fixed per config (they never depend on prices).

    A name reports in each season (from the 12th day of January, April, July and October) on its own
    offset of 0–40 days, jittered ±3 days per quarter and moved to the next session; reports before
    listing or without a listed session after them are dropped. Each quarter has its own generator, so the
    schedule of a quarter never depends on how many quarters the calendar covers.
    """

    def __init__(self, config: SimulationConfig, universe: _Universe, session_days: np.ndarray) -> None:
        epoch = dt.date.fromisoformat(str(session_days[0].astype("datetime64[D]")))
        last = dt.date.fromisoformat(str(session_days[-1].astype("datetime64[D]")))
        symbols, sessions, surprises = [], [], []
        first_quarter = 4 * epoch.year + (epoch.month - 1) // 3
        last_quarter = 4 * last.year + (last.month - 1) // 3
        for quarter in range(last_quarter - first_quarter + 1):
            year, quarter_of_year = divmod(first_quarter + quarter, 4)
            rng = np.random.default_rng([config.seed, _STREAM_EARNINGS, quarter])
            season = _day_numbers(np.array([dt.date(year, 3 * quarter_of_year + 1, 12)]))[0]
            day = season + universe.earnings_offset + rng.integers(-3, 4, universe.size)
            surprise = np.round(_SURPRISE_CENTER + _SURPRISE_SCALE * rng.standard_t(3, universe.size), 2)
            index = np.searchsorted(session_days, day, side="left")
            keep = (
                (day >= session_days[0])
                & (index + 1 < len(session_days))
                & (universe.list_index <= index)
                & (index + 1 < universe.delist_index)
            )
            symbols.append(np.flatnonzero(keep))
            sessions.append(index[keep])
            surprises.append(np.clip(surprise[keep], -150.0, 300.0))
        symbol = np.concatenate(symbols)
        session = np.concatenate(sessions).astype(np.int64)
        order = np.lexsort((symbol, session))
        self.symbol, self.session, self.surprise = symbol[order], session[order], np.concatenate(surprises)[order]

    def between(self, first: int, last: int) -> slice:
        """Rows of the reports made at the close of sessions first..last (indices, inclusive)."""
        lo = np.searchsorted(self.session, first, side="left")
        hi = np.searchsorted(self.session, last, side="right")
        return slice(int(lo), int(hi))


# --- recursion state and generated blocks ------------------------------------------------------------------


@dataclass
class _State:
    """Everything session k needs from sessions before it — the checkpointed memory of the recursion."""

    regime: int
    market_variance: float
    market_shock: float
    index_close: float
    vix: float
    log_price: np.ndarray  # latent log price (trades on during halts)
    variance: np.ndarray  # idiosyncratic GARCH variance of the next session
    volume_state: np.ndarray  # persistent log-volume deviation
    halt_left: np.ndarray  # sessions of halt still to come
    bar_count: np.ndarray  # published bars so far
    last_close: np.ndarray  # last published close (NaN before the first bar)
    close_ring: np.ndarray  # (_RING, N) published closes, slot bar_number % _RING
    high_ring: np.ndarray  # (_WINDOW, N)
    volume_ring: np.ndarray  # (_WINDOW, N)
    avg_gain: np.ndarray  # Wilder averages for rsi_14
    avg_loss: np.ndarray
    score_ring: np.ndarray  # (H, N) planted scores, slot session_index % H

    def copy(self) -> "_State":
        return copy.deepcopy(self)


class _Block:
    """Dense outputs of up to `checkpoint_interval` consecutive sessions (rows) × all symbols (columns)."""

    def __init__(self, first: int, length: int, n: int, horizon: int) -> None:
        self.first = first
        self.length = length
        self.has_bar = np.zeros((length, n), dtype=bool)
        self.open = np.empty((length, n))
        self.high = np.empty((length, n))
        self.low = np.empty((length, n))
        self.close = np.empty((length, n))  # last published close, also for halted names
        self.volume = np.empty((length, n))
        self.vwap = np.empty((length, n))
        self.trades = np.empty((length, n), dtype=np.int64)
        self.scores = np.empty((horizon - 1 + length, n))  # planted scores, H − 1 sessions of history first
        self.index_bars = np.empty((length, 2, 6))  # [INDEX, VOLATILITY] × open, high, low, close, volume, vwap
        self.index_trades = np.empty(length, dtype=np.int64)
        self.regime = np.empty(length, dtype=np.int8)


class SimulatedMarket:
    """A `MarketDataSource` over the simulated market; see the module docstring for the model.

    Every public call counts as an API call; one answered without simulating a session counts as a cache
    hit too. Calls are serialized by a lock, so one instance (and its checkpoints) can serve several threads.
    """

    name = "simulated"

    def __init__(self, config: SimulationConfig | None = None, state_cache_dir: Path | None = None) -> None:
        """`state_cache_dir`, when given, persists the newest recursion checkpoint between processes, so a
        daily run resumes near today instead of re-simulating every session since the epoch."""
        self.config = config or SimulationConfig()
        self.stats = SourceStats()
        self._sessions = calendar.sessions_between(self.config.epoch, calendar.last_known_session())
        if not self._sessions:
            raise ConfigError(f"epoch: {self.config.epoch} is after the calendar's last session")
        self._session_days = _day_numbers(np.array(self._sessions, dtype="datetime64[D]"))
        self._universe = _Universe(self.config, self._session_days)
        self._earnings = _EarningsSchedule(self.config, self._universe, self._session_days)
        self._tickers = pl.Series("symbol", self._universe.tickers, dtype=pl.String)
        self._ticker_index = {ticker: i for i, ticker in enumerate(self._universe.tickers.tolist())}
        self._columns = np.arange(self._universe.size)
        self._horizon_weights = _horizon_weights(self.config.alpha_horizon)
        self._alpha_weights = dict(self.config.alpha_weights)
        self._regime_weights = _regime_weights(self.config)
        self._checkpoints: dict[int, _State] = {0: self._initial_state()}
        self._blocks: OrderedDict[int, _Block] = OrderedDict()
        self._lock = threading.RLock()
        self._state_cache = _PersistedCheckpoints(state_cache_dir, self._market_key()) if state_cache_dir else None

    # --- public API ------------------------------------------------------------------------------------

    def reference(self, session: dt.date) -> pl.DataFrame:
        """Names listed on `session` (`schema.REFERENCE`), sorted by symbol; market cap at its close.

        `delist_date` is filled once the delisting has been announced (5–30 sessions ahead), null before.
        """
        with self._lock:
            self.stats.api_calls += 1
            index = self._session_index(session)
            if index is None:
                self.stats.cache_hits += 1
                return schema.empty(schema.REFERENCE)
            block, simulated = self._block(index // self.config.checkpoint_interval)
            if not simulated:
                self.stats.cache_hits += 1
            u = self._universe
            listed = np.flatnonzero(u.listed(index))
            delist_index = np.minimum(u.delist_index[listed], len(self._sessions) - 1)
            frame = pl.DataFrame(
                {
                    "symbol": self._tickers.gather(listed),
                    "name": u.company_names[listed],
                    "sector": u.sector_names[listed],
                    "industry": u.industry_names[listed],
                    "market_cap": np.clip(
                        u.shares[listed] * block.close[index - block.first, listed], *_MARKET_CAP_BOUNDS
                    ),
                    "shares_outstanding": u.shares[listed],
                    "list_date": u.list_date[listed],
                    "delist_date": self._session_days[delist_index].astype("datetime64[D]"),
                    "announced": u.announce_index[listed] <= index,
                }
            ).with_columns(pl.when(pl.col("announced")).then(pl.col("delist_date")).alias("delist_date"))
            return schema.conform(frame, schema.REFERENCE, "reference")

    def bars(self, start: dt.date, end: dt.date, symbols: Sequence[str] | None = None) -> pl.DataFrame:
        """`schema.BARS` rows for sessions in [start, end], sorted by (date, symbol); halted days absent.

        Unknown symbols are ignored. Dates before the epoch have no bars; an `end` after the calendar's last
        session raises `ConfigError`.
        """
        columns = None
        if symbols is not None:
            known = [self._ticker_index[s] for s in symbols if s in self._ticker_index]
            columns = np.unique(np.array(known, dtype=np.int64))

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            def selected(values: np.ndarray) -> np.ndarray:
                return values[rows] if columns is None else values[rows][:, columns]

            has_bar = selected(block.has_bar)
            session_rows, column = np.nonzero(has_bar)
            return pl.DataFrame(
                {
                    "symbol": self._tickers.gather(column if columns is None else columns[column]),
                    "date": np.repeat(self._session_dates(block, rows), has_bar.sum(axis=1)),
                    **{name: selected(getattr(block, name))[has_bar] for name in _BAR_VALUES},
                }
            )

        return self._collect(start, end, piece, schema.BARS, "bars")

    def index_bars(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`INDEX_SYMBOL` and `VOLATILITY_SYMBOL` bars for sessions in [start, end], sorted by (date, symbol).

        The volatility index is a level, not a traded fund: its volume is 0 and it has no vwap or trades.
        """

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            count = rows.stop - rows.start
            values = block.index_bars[rows].reshape(-1, 6)
            is_index = np.tile([True, False], count)
            return pl.DataFrame(
                {
                    "symbol": np.where(is_index, INDEX_SYMBOL, VOLATILITY_SYMBOL),
                    "date": np.repeat(self._session_dates(block, rows), 2),
                    "open": values[:, 0],
                    "high": values[:, 1],
                    "low": values[:, 2],
                    "close": values[:, 3],
                    "volume": values[:, 4],
                    "vwap": values[:, 5],
                    "trades": np.repeat(block.index_trades[rows], 2),
                    "is_index": is_index,
                }
            ).with_columns(
                pl.when(pl.col("is_index")).then(pl.col(column)).alias(column) for column in ("vwap", "trades")
            )

        return self._collect(start, end, piece, schema.BARS, "index_bars")

    def earnings(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """`schema.EARNINGS` rows with report dates in [start, end], sorted by (date, symbol).

        Reports are after the close; the market reacts at the next session. Every date the simulator answers
        for lies inside its simulated history, so `surprise_pct` is always filled: callers looking from a
        session must ignore the surprises of reports on or after it. The schedule is fixed when the market is
        built, so every call is a cache hit.
        """
        with self._lock:
            self.stats.api_calls += 1
            self.stats.cache_hits += 1
            first, last = self._index_range(start, end)
            rows = self._earnings.between(first, last)
            frame = pl.DataFrame(
                {
                    "symbol": self._tickers.gather(self._earnings.symbol[rows]),
                    "date": self._session_days[self._earnings.session[rows]].astype("datetime64[D]"),
                    "surprise_pct": self._earnings.surprise[rows],
                }
            )
            return schema.conform(frame, schema.EARNINGS, "earnings")

    def oracle_expected_return(self, start: dt.date, end: dt.date, horizon: int) -> pl.DataFrame:
        """The planted part of each symbol's log return from close(t) to close(t + horizon sessions).

        One row (`ORACLE_SCHEMA` columns) per symbol with a bar on t, for sessions t in [start, end], sorted by
        (date, symbol). Ground truth for evaluating models and prioritization — never a model feature.
        """
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(f"horizon: {horizon!r} is not a positive number of sessions")
        coefficients = self.config.alpha_strength * _oracle_coefficients(self._horizon_weights, horizon)
        history = self.config.alpha_horizon - 1

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            count = rows.stop - rows.start
            expected = np.zeros((count, self._universe.size))
            for lag, coefficient in enumerate(coefficients):
                first_row = history + rows.start - lag
                expected += coefficient * block.scores[first_row : first_row + count]
            session_rows, symbol = np.nonzero(block.has_bar[rows])
            return pl.DataFrame(
                {
                    "symbol": self._tickers.gather(symbol),
                    "date": self._session_dates(block, rows)[session_rows],
                    "horizon": np.full(len(symbol), horizon, dtype=np.int64),
                    "expected_return": expected[session_rows, symbol],
                }
            )

        return self._collect(start, end, piece, ORACLE_SCHEMA, "oracle")

    def market_regimes(self, start: dt.date, end: dt.date) -> pl.DataFrame:
        """The hidden market regime (`REGIMES` names) of each session in [start, end] — evaluation truth for
        regime classifiers, like the oracle never an input to one."""
        names = np.array([regime.name for regime in REGIMES])

        def piece(block: _Block, rows: slice) -> pl.DataFrame:
            return pl.DataFrame({"date": self._session_dates(block, rows), "regime": names[block.regime[rows]]})

        return self._collect(start, end, piece, REGIMES_SCHEMA, "regimes")

    # --- session bookkeeping ---------------------------------------------------------------------------

    def _check_end(self, end: dt.date) -> None:
        last = self._sessions[-1]
        if end > last:
            raise ConfigError(f"{end} is after the simulated market's last session {last} (the calendar's end)")

    def _session_index(self, session: dt.date) -> int | None:
        """Index of `session` among the simulated sessions; None before the epoch."""
        self._check_end(session)
        if session < self._sessions[0]:
            return None
        calendar.require_session(session)
        return self._index_range(session, session)[0]

    def _index_range(self, start: dt.date, end: dt.date) -> tuple[int, int]:
        """First and last session index inside [start, end] (first > last when there is none)."""
        self._check_end(end)
        bounds = _day_numbers(np.array([start, end], dtype="datetime64[D]"))
        first = int(np.searchsorted(self._session_days, bounds[0], side="left"))
        last = int(np.searchsorted(self._session_days, bounds[1], side="right")) - 1
        return first, last

    def _session_dates(self, block: _Block, rows: slice) -> np.ndarray:
        return self._session_days[block.first + rows.start : block.first + rows.stop].astype("datetime64[D]")

    def _collect(
        self,
        start: dt.date,
        end: dt.date,
        piece: Callable[[_Block, slice], pl.DataFrame],
        columns: dict[str, pl.DataType],
        name: str,
    ) -> pl.DataFrame:
        """Concatenate `piece(block, rows)` over the blocks holding sessions in [start, end], in date order.

        Blocks are fetched one at a time, so a long backfill keeps only a few blocks of dense arrays alive.
        """
        with self._lock:
            self.stats.api_calls += 1
            first, last = self._index_range(start, end)
            interval = self.config.checkpoint_interval
            pieces, simulated = [], False
            for number in range(first // interval, last // interval + 1) if first <= last else ():
                block, block_simulated = self._block(number)
                simulated |= block_simulated
                rows = slice(max(first - block.first, 0), min(last + 1 - block.first, block.length))
                pieces.append(piece(block, rows))
            if not simulated:
                self.stats.cache_hits += 1
            elif self._state_cache is not None:
                # the start of the newest block (a rerun or the next day resumes there) and its end
                for number in sorted(self._checkpoints)[-_PERSISTED_CHECKPOINTS:]:
                    self._state_cache.save(number, self._checkpoints[number])
            if not pieces:
                return schema.empty(columns)
            return schema.conform(pl.concat(pieces, rechunk=False), columns, name)

    # --- simulation ------------------------------------------------------------------------------------

    def _block(self, number: int) -> tuple[_Block, bool]:
        """Block `number` and whether it had to be simulated (resuming from the nearest earlier checkpoint)."""
        cached = self._blocks.get(number)
        if cached is not None:
            self._blocks.move_to_end(number)
            return cached, False
        resume = max(n for n in self._checkpoints if n <= number)
        if self._state_cache is not None and resume < number:
            persisted = self._state_cache.load_newest(after=resume, upto=number)
            if persisted is not None:
                resume, self._checkpoints[persisted[0]] = persisted
        state = self._checkpoints[resume].copy()
        for current in range(resume, number + 1):
            block = self._simulate_block(state, current)
            if current + 1 not in self._checkpoints:
                self._checkpoints[current + 1] = state.copy()
        self._blocks[number] = block
        while len(self._blocks) > _BLOCK_CACHE_SIZE:
            self._blocks.popitem(last=False)
        return block, True

    def _market_key(self) -> str:
        """Identity of the recursion: config, model version and the session calendar it runs over."""
        digest = hashlib.sha256()
        digest.update(f"{MODEL_VERSION}|{self.config!r}".encode())
        digest.update(np.asarray(self._session_days).tobytes())
        return digest.hexdigest()[:24]

    def _simulate_block(self, state: _State, number: int) -> _Block:
        """Advance `state` through block `number`'s sessions, recording their outputs."""
        interval = self.config.checkpoint_interval
        first = number * interval
        length = min(interval, len(self._sessions) - first)
        horizon = self.config.alpha_horizon
        block = _Block(first, length, self._universe.size, horizon)
        for lag in range(1, horizon):
            block.scores[horizon - 1 - lag] = state.score_ring[(first - lag) % horizon]
        for row in range(length):
            self._advance(state, first + row, block, row)
        return block

    def _initial_state(self) -> _State:
        n = self._universe.size
        horizon = self.config.alpha_horizon
        bull = REGIMES[0]
        return _State(
            regime=0,
            market_variance=bull.volatility**2,
            market_shock=0.0,
            index_close=_INDEX_START,
            vix=_VIX_START,
            log_price=np.log(self._universe.start_price),
            variance=self._universe.volatility**2,
            volume_state=np.zeros(n),
            halt_left=np.zeros(n, dtype=np.int64),
            bar_count=np.zeros(n, dtype=np.int64),
            last_close=np.full(n, np.nan),
            close_ring=np.zeros((_RING, n)),
            high_ring=np.zeros((_WINDOW, n)),
            volume_ring=np.zeros((_WINDOW, n)),
            avg_gain=np.zeros(n),
            avg_loss=np.zeros(n),
            score_ring=np.zeros((horizon, n)),
        )

    def _advance(self, state: _State, k: int, block: _Block, row: int) -> None:
        """Simulate session `k` for every symbol at once: returns, bars, halts, planted score, index, VIX."""
        u, cfg = self._universe, self.config
        day = int(self._session_days[k])
        market_draws = np.random.default_rng([cfg.seed, day, _STREAM_MARKET])
        market_draw, tracking_draw, *sector_draws = market_draws.standard_normal(2 + len(SECTORS))
        index_noise = market_draws.standard_normal(8)  # bar shapes of the index and the volatility index
        regime_draw, index_vwap_mix = market_draws.random(2)
        stock_draws = np.random.default_rng([cfg.seed, day, _STREAM_STOCKS])
        # One "event" normal sizes whichever rare event a symbol has that day (news, earnings, listing).
        z_idiosyncratic, z_open, z_volume, z_event = stock_draws.standard_normal((4, u.size))
        u_news, u_halt, u_vwap, u_high, u_low = stock_draws.random((5, u.size))

        # Market factor: regime chain, then GARCH around the regime's volatility.
        transition = np.cumsum(REGIME_TRANSITIONS[state.regime])
        state.regime = min(int(np.searchsorted(transition, regime_draw, side="right")), len(REGIMES) - 1)
        regime = REGIMES[state.regime]
        shock_weight, persistence = _MARKET_GARCH
        market_variance = (
            (1 - shock_weight - persistence) * regime.volatility**2
            + shock_weight * state.market_shock**2
            + persistence * state.market_variance
        )
        state.market_shock = math.sqrt(market_variance) * market_draw
        state.market_variance = market_variance
        calm_ratio = math.sqrt(market_variance) / REGIMES[0].volatility
        sector_shock = (_SECTOR_VOLATILITY * calm_ratio) * np.array(sector_draws)
        common = u.beta * (regime.drift + state.market_shock) + u.sector_loading * sector_shock[u.sector]

        # Listings reset the latent price to the offer price.
        listing = u.list_index == k
        if listing.any():
            state.log_price[listing] = np.log(u.start_price[listing])
            state.variance[listing] = 2.0 * u.volatility[listing] ** 2
            state.volume_state[listing] = 0.0
        listed = u.listed(k)

        # Idiosyncratic shocks, news jumps, earnings reactions (to the previous session's reports), IPO pops.
        variance = state.variance
        surprise_move = np.sqrt(variance) * z_idiosyncratic
        surprise_move += np.where(u_news < _NEWS_PROBABILITY, _NEWS_SIZE * u.volatility * z_event, 0.0)
        ipo_pop = np.where(listing, _IPO_POP_MEAN + _IPO_POP_SPREAD * z_event, 0.0)
        jumps = ipo_pop.copy()
        earnings_volume = np.ones(u.size)
        if k > 0:
            reports = self._earnings.between(k - 1, k - 1)
            reacting = self._earnings.symbol[reports]
            surprise = np.clip((self._earnings.surprise[reports] - _SURPRISE_CENTER) / _SURPRISE_SCALE, -4.0, 4.0)
            reaction = u.volatility[reacting] * (1.6 * surprise + 1.2 * z_event[reacting])
            surprise_move[reacting] += reaction
            jumps[reacting] += reaction
            earnings_volume[reacting] = 2.5 + 0.8 * np.abs(surprise)
        planted = cfg.alpha_strength * self._planted_drift(state, k)
        log_return = common + surprise_move + ipo_pop + planted

        # Stock GARCH: the next session's variance, its shock capped so one jump cannot explode it.
        shock_weight, persistence = _STOCK_GARCH
        state.variance = (
            (1 - shock_weight - persistence) * regime.idiosyncratic_multiplier * u.volatility**2
            + shock_weight * np.minimum(surprise_move * surprise_move, 64.0 * u.volatility**2)
            + persistence * variance
        )

        # Bars from the latent path: the open takes the overnight part of the move (all of a jump).
        total_volatility = np.sqrt(
            variance + (u.beta * u.beta) * market_variance + (u.sector_loading * (_SECTOR_VOLATILITY * calm_ratio)) ** 2
        )
        overnight = jumps + 0.25 * (log_return - jumps) + 0.25 * total_volatility * z_open
        previous = np.exp(state.log_price)
        ticks_per_dollar = np.where(previous < 1.0, _FINEST_TICKS_PER_DOLLAR, 100.0)
        open_ = previous * np.exp(overnight)
        close = previous * np.exp(log_return)
        high = np.maximum(open_, close) * np.exp(-0.4 * total_volatility * np.log(u_high))
        low = np.minimum(open_, close) * np.exp(0.4 * total_volatility * np.log(u_low))
        vwap = u_vwap * (high + low + close) / 3.0 + (1.0 - u_vwap) * (open_ + close) / 2.0
        index_weights = np.where(listed, u.shares * previous, 0.0)
        index_common = float(index_weights @ common) / index_weights.sum() if listed.any() else 0.0
        index_return = index_common + _INDEX_TRACKING * tracking_draw
        state.log_price += log_return

        # Volume: turnover × persistent noise, surging on big moves, earnings, listings and volatile markets.
        state.volume_state = 0.7 * state.volume_state + 0.3 * z_volume
        move_size = np.abs(surprise_move) / np.sqrt(variance)
        volume = u.base_volume * np.exp(
            state.volume_state
            + 0.35 * np.maximum(move_size - 1.0, 0.0)
            + 0.25 * np.log(variance / u.volatility**2)
            + 0.4 * math.log(calm_ratio)
        )
        volume = np.maximum(np.rint(volume * earnings_volume * np.where(listing, 5.0, 1.0)), 100.0)

        # Halts start among listed names (never on the listing day) and last 1–3 sessions.
        halt_chance = cfg.halt_probability * u.halt_weight
        starting = listed & ~listing & (state.halt_left == 0) & (u_halt < halt_chance)
        halt_draw = u_halt[starting] / halt_chance[starting]  # uniform again, given the halt started
        state.halt_left[starting] = 1 + (halt_draw > 0.6) + (halt_draw > 0.85)
        halted = state.halt_left > 0
        state.halt_left[halted] -= 1
        has_bar = listed & ~halted

        block.has_bar[row] = has_bar
        block.open[row] = _round_to_tick(open_, ticks_per_dollar)
        block.high[row] = _round_to_tick(high, ticks_per_dollar)
        block.low[row] = _round_to_tick(low, ticks_per_dollar)
        block.vwap[row] = _round_to_tick(vwap, ticks_per_dollar)
        block.volume[row] = volume
        block.trades[row] = np.maximum(np.ceil(volume / u.trade_size), 1.0)

        scores = self._record_bars_and_score(
            state, has_bar, _round_to_tick(close, ticks_per_dollar), block.high[row], volume, state.regime
        )
        state.score_ring[k % cfg.alpha_horizon] = scores
        block.scores[cfg.alpha_horizon - 1 + row] = scores
        block.close[row] = state.last_close
        self._advance_indices(state, block, row, index_return, market_variance, index_noise, index_vwap_mix)
        block.regime[row] = state.regime

    def _planted_drift(self, state: _State, k: int) -> np.ndarray:
        """Σ_j w_j a(k − j): the drift session k inherits from the last H sessions' planted scores."""
        horizon = self.config.alpha_horizon
        weights_by_slot = np.empty(horizon)
        weights_by_slot[(k - np.arange(1, horizon + 1)) % horizon] = self._horizon_weights
        return weights_by_slot @ state.score_ring

    def _record_bars_and_score(
        self,
        state: _State,
        has_bar: np.ndarray,
        close: np.ndarray,
        high: np.ndarray,
        volume: np.ndarray,
        regime: int,
    ) -> np.ndarray:
        """Append today's bars to each symbol's history and return the planted score a(t) (module docstring),
        weighted for today's hidden `regime` when the score is state-dependent.

        Works on all symbols at once; values of symbols without a bar are computed and then masked out,
        which is cheaper than gathering the subset that has one.
        """
        previous_bars = state.bar_count
        has_change = has_bar & (previous_bars >= 1)
        change = np.where(has_change, close - np.where(has_change, state.last_close, close), 0.0)
        smoothing = 1.0 / np.clip(previous_bars, 1, _RSI_PERIOD)
        state.avg_gain += np.where(has_change, smoothing * (np.maximum(change, 0.0) - state.avg_gain), 0.0)
        state.avg_loss += np.where(has_change, smoothing * (np.maximum(-change, 0.0) - state.avg_loss), 0.0)
        bar = np.flatnonzero(has_bar)
        state.close_ring[previous_bars[bar] % _RING, bar] = close[bar]
        state.high_ring[previous_bars[bar] % _WINDOW, bar] = high[bar]
        state.volume_ring[previous_bars[bar] % _WINDOW, bar] = volume[bar]
        state.last_close = np.where(has_bar, close, state.last_close)
        state.bar_count = previous_bars + has_bar

        bars = state.bar_count
        moves = state.avg_gain + state.avg_loss
        full_window = has_bar & (bars >= _WINDOW)
        # Features of symbols with too few bars read unfilled ring slots; they are masked out below.
        with np.errstate(divide="ignore", invalid="ignore"):
            features = {
                "ret_5": (np.log(close / self._close_back(state, 5)), has_bar & (bars > 5)),
                "mom_63": (np.log(close / self._close_back(state, 63)), has_bar & (bars > 63)),
                "rsi_14": (100.0 * state.avg_gain / moves, has_bar & (bars > _RSI_PERIOD) & (moves > 0)),
                "volume_surge_sign": (
                    np.maximum(np.log(volume / state.volume_ring.mean(axis=0)), 0.0) * np.sign(change),
                    full_window,
                ),
                "dist_high_20": (close / state.high_ring.max(axis=0) - 1.0, full_window),
            }
        weights = self._regime_weights[regime] if self.config.alpha_state_dependence else self._alpha_weights
        reversal_scale = self._reversal_volatility_scale(state, has_bar)
        combined = np.zeros(self._universe.size)
        for name, weight in weights.items():
            values, valid = features[name]
            term = weight * _zscore(np.where(valid, values, 0.0), valid)
            combined += term * reversal_scale if name == "ret_5" and reversal_scale is not None else term
        return _zscore(combined, has_bar)

    def _reversal_volatility_scale(self, state: _State, has_bar: np.ndarray) -> np.ndarray | None:
        """1 + γ × v: v is the clipped cross-sectional z-score of ln(σ), σ the population std of the symbol's
        last 20 bar-to-bar log close changes (0 where it has fewer than 21 bars or σ = 0). None when the
        score is linear (no state dependence or γ = 0)."""
        gamma = self.config.alpha_volatility_interaction
        if not self.config.alpha_state_dependence or gamma == 0:
            return None
        bars = state.bar_count
        lags = np.arange(_VOLATILITY_WINDOW + 1)[:, None]
        closes = state.close_ring[(bars[None, :] - 1 - lags) % _RING, self._columns[None, :]]
        with np.errstate(divide="ignore", invalid="ignore"):
            log_volatility = np.log(np.log(closes[:-1] / closes[1:]).std(axis=0))
        valid = has_bar & (bars > _VOLATILITY_WINDOW) & np.isfinite(log_volatility)
        return 1.0 + gamma * _zscore(np.where(valid, log_volatility, 0.0), valid)

    def _close_back(self, state: _State, lag: int) -> np.ndarray:
        """Each symbol's close `lag` bars before its latest one (garbage where it has fewer bars)."""
        return state.close_ring[(state.bar_count - 1 - lag) % _RING, self._columns]

    def _advance_indices(
        self,
        state: _State,
        block: _Block,
        row: int,
        index_return: float,
        market_variance: float,
        normal: np.ndarray,
        vwap_mix: float,
    ) -> None:
        """Index bar from the cap-weighted common return; volatility index from conditional market volatility."""
        regime = REGIMES[state.regime]
        volatility = math.sqrt(market_variance)
        previous = state.index_close
        close = previous * math.exp(index_return)
        open_ = previous * math.exp(0.3 * index_return + 0.15 * volatility * normal[0])
        high = max(open_, close) * math.exp(0.5 * volatility * abs(normal[1]))
        low = min(open_, close) * math.exp(-0.5 * volatility * abs(normal[2]))
        volume = round(75e6 * math.exp(0.25 * normal[3]) * (volatility / REGIMES[0].volatility) ** 0.5)
        vwap = vwap_mix * (high + low + close) / 3.0 + (1.0 - vwap_mix) * (open_ + close) / 2.0
        state.index_close = close
        block.index_bars[row, 0] = [*np.round([open_, high, low, close], 2), volume, round(vwap, 2)]
        block.index_trades[row] = max(1, round(volume / 120.0))

        blended_variance = 0.3 * market_variance + 0.7 * regime.volatility**2
        target = 100.0 * math.sqrt(252.0 * blended_variance) * _VARIANCE_RISK_PREMIUM + regime.vix_premium
        previous_vix = state.vix
        log_vix = math.log(previous_vix) + 0.12 * math.log(target / previous_vix) - 2.0 * index_return
        vix_close = math.exp(log_vix + 0.05 * normal[4])
        vix_open = previous_vix * math.exp(0.3 * math.log(vix_close / previous_vix) + 0.02 * normal[5])
        vix_high = max(vix_open, vix_close) * math.exp(0.04 * abs(normal[6]))
        vix_low = min(vix_open, vix_close) * math.exp(-0.03 * abs(normal[7]))
        state.vix = vix_close
        block.index_bars[row, 1] = [*np.round([vix_open, vix_high, vix_low, vix_close], 2), 0.0, np.nan]


class _PersistedCheckpoints:
    """The newest recursion checkpoints of one market on disk (a cache: deleting it only costs time).

    Files are written atomically and named by checkpoint number under a directory keyed by the market's
    identity; an unreadable file is logged, deleted and ignored, never trusted.
    """

    def __init__(self, root: Path, market_key: str) -> None:
        self.directory = root / market_key

    def _path(self, number: int) -> Path:
        return self.directory / f"checkpoint-{number:06d}.pkl"

    def _numbers(self) -> list[int]:
        if not self.directory.is_dir():
            return []
        return sorted(int(p.stem.split("-")[1]) for p in self.directory.glob("checkpoint-*.pkl"))

    def load_newest(self, after: int, upto: int) -> tuple[int, _State] | None:
        for number in reversed([n for n in self._numbers() if after < n <= upto]):
            path = self._path(number)
            try:
                state = pickle.loads(path.read_bytes())
                if isinstance(state, _State):
                    return number, state
                raise TypeError(f"unexpected {type(state).__name__}")
            except Exception as exc:  # a cache must never break a run: drop the file and resimulate
                _log.warning("ignoring unreadable simulator checkpoint %s: %s", path, exc)
                path.unlink(missing_ok=True)
        return None

    def save(self, number: int, state: _State) -> None:
        numbers = self._numbers()
        if numbers and numbers[-1] >= number:
            return
        write_bytes_atomic(self._path(number), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        for stale in [*numbers, number][:-_PERSISTED_CHECKPOINTS]:
            self._path(stale).unlink(missing_ok=True)
