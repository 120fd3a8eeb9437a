"""Charts of a session's scan for the UI: the TechRating distribution and signals by sector.

Rendered with matplotlib's Agg backend at a small size; each chart is a few tens of KB of base64 in the
event log, once per materialization.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import polars as pl

from technic_core import schema
from technic_core.scoring import SIGNAL_THRESHOLDS
from technic_pipelines.metadata import markdown_image

SIGNAL_COLOURS = {
    "Strong Buy": "#1a7f37",
    "Buy": "#7cc47f",
    "Neutral": "#c9ccd1",
    "Sell": "#f29b8f",
    "Strong Sell": "#c0392b",
}


def tech_rating_histogram(results: pl.DataFrame) -> str:
    """Distribution of TechRating with the signal thresholds marked."""
    figure, axis = plt.subplots(figsize=(6, 3))
    axis.hist(results.get_column("tech_rating").to_numpy(), bins=40, range=(0, 100), color="#4c72b0")
    for name, threshold in SIGNAL_THRESHOLDS.items():
        axis.axvline(threshold, color=SIGNAL_COLOURS[name], linestyle="--", linewidth=1)
    axis.set_xlabel("TechRating")
    axis.set_ylabel("symbols")
    axis.set_title(f"TechRating distribution ({results.height} results)")
    return markdown_image(figure, "TechRating distribution")


def signals_by_sector(results: pl.DataFrame) -> str:
    """Stacked horizontal bars: how many symbols of each sector landed in each signal band."""
    counts = (
        results.group_by("sector", "signal")
        .len()
        .pivot(on="signal", index="sector", values="len")
        .fill_null(0)
        .sort("sector", descending=True)
    )
    figure, axis = plt.subplots(figsize=(7, 4))
    left = [0] * counts.height
    sectors = counts.get_column("sector").fill_null("(none)").to_list()
    for signal in schema.SIGNALS:
        if signal not in counts.columns:
            continue
        values = counts.get_column(signal).to_list()
        axis.barh(sectors, values, left=left, color=SIGNAL_COLOURS[signal], label=signal)
        left = [a + b for a, b in zip(left, values)]
    axis.set_xlabel("symbols")
    axis.set_title("Signals by sector")
    axis.legend(fontsize=7, loc="lower right")
    return markdown_image(figure, "Signals by sector")
