"""Scan parameter presets, hot sectors and the warnings a config earns — the optimizer's building blocks.

`technic_core.ml.scan_predictors.suggest` combines them with the predictors: it starts from a goal's
preset, scopes it to the hot sectors when the preset asks for that, and picks the minimum TechRating whose
predicted result count lands closest to the preset's target band.

Presets (the predecessor's quick / deep scans, re-expressed on this engine):

===========  ===========  ===========  ==================  ===========  ==============
goal         sectors      max_symbols  min TechRating      max_signals  target results
===========  ===========  ===========  ==================  ===========  ==============
quick        hot only     300          65–85               20           5–25
balanced     hot only     1,000        60–80               none         15–60
deep         all          none         50–75               none         30–100
===========  ===========  ===========  ==================  ===========  ==============
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from technic_core.config import ScanConfig
from technic_core.errors import ConfigError
from technic_core.scoring import BUY_SIGNALS
from technic_core.warehouse import Warehouse

#: Above this many predicted results a scan is too broad to read; at zero it is too restrictive.
TOO_BROAD = 100
#: A minimum TechRating above this admits Strong Buys only.
HIGH_MIN_RATING = 80.0
#: Sessions of results whose signal rates decide the hot sectors, and how many sectors are hot at most.
HOT_SESSIONS = 5
HOT_SECTORS = 3


@dataclass(frozen=True)
class Preset:
    """A goal's starting config and the band of result counts it aims for."""

    hot_sectors_only: bool
    max_symbols: int | None
    min_ratings: tuple[float, ...]  # candidates the optimizer chooses from
    max_signals: int | None
    target: tuple[float, float]


PRESETS: dict[str, Preset] = {
    "quick": Preset(True, 300, (65.0, 70.0, 75.0, 80.0, 85.0), 20, (5.0, 25.0)),
    "balanced": Preset(True, 1_000, (60.0, 65.0, 70.0, 75.0, 80.0), None, (15.0, 60.0)),
    "deep": Preset(False, None, (50.0, 55.0, 60.0, 65.0, 70.0, 75.0), None, (30.0, 100.0)),
}


def preset(goal: str) -> Preset:
    """The preset of `goal`; an unknown goal raises `ConfigError` listing the known ones."""
    try:
        return PRESETS[goal]
    except KeyError:
        raise ConfigError(f"unknown goal {goal!r}; known: {', '.join(PRESETS)}") from None


def candidate_configs(goal: str, hot: list[str]) -> list[ScanConfig]:
    """The configs the optimizer weighs for `goal`: its preset at each candidate minimum TechRating."""
    chosen = preset(goal)
    sectors = tuple(hot) if chosen.hot_sectors_only and hot else None
    return [
        ScanConfig(
            sectors=sectors,
            max_symbols=chosen.max_symbols,
            min_tech_rating=rating,
            max_signals=chosen.max_signals,
        )
        for rating in chosen.min_ratings
    ]


def distance_to_band(count: float, band: tuple[float, float]) -> float:
    """0 inside the band, else how far outside it `count` lies."""
    low, high = band
    return max(low - count, 0.0, count - high)


def hot_sectors(store: Warehouse, sessions: int = HOT_SESSIONS, top: int = HOT_SECTORS) -> list[str]:
    """Sectors whose recent buy-signal rate beats the market's, best first (at most `top`).

    The rate is the share of a sector's scanned symbols signalled Buy or Strong Buy over the last
    `sessions` result sessions; an empty list when there are no results yet or no sector stands out.
    """
    recent = store.sessions("results")[-sessions:]
    if not recent:
        return []
    results = store.read("results", recent[0], recent[-1]).filter(pl.col("sector").is_not_null())
    if results.height == 0:
        return []
    is_buy = pl.col("signal").is_in(BUY_SIGNALS).fill_null(False).cast(pl.Float64)
    overall = float(results.select(is_buy.mean()).item())
    rates = results.group_by("sector").agg(is_buy.mean().alias("rate")).filter(pl.col("rate") > overall)
    return rates.sort(["rate", "sector"], descending=[True, False]).get_column("sector").head(top).to_list()


def config_warnings(config: ScanConfig, result_count: float) -> list[str]:
    """What a user should know before running `config`, given its predicted result count."""
    warnings = []
    if round(result_count) <= 0:
        warnings.append("predicted 0 results: the filters are too restrictive (lower min_tech_rating or widen sectors)")
    elif result_count > TOO_BROAD:
        warnings.append(
            f"predicted {result_count:.0f} results (> {TOO_BROAD}): the scan is too broad "
            "(raise min_tech_rating, pick sectors or cap max_symbols)"
        )
    if config.min_tech_rating > HIGH_MIN_RATING:
        warnings.append(
            f"min_tech_rating {config.min_tech_rating:g} > {HIGH_MIN_RATING:g} admits Strong Buys only and limits results"
        )
    return warnings
