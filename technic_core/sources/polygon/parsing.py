"""Polygon responses as frames and records: aggregates as `schema.BARS`, split records, ticker details.

Each bar's session is the New York calendar date of its stamp (grouped bars are stamped 16:00 New York,
per-ticker bars midnight New York).
"""

from __future__ import annotations

import datetime as dt
import logging

import polars as pl

from technic_core import calendar, schema
from technic_core.sources.polygon.splits import Split

_log = logging.getLogger(__name__)

#: Raw aggregate fields (grouped daily and per-ticker) and their types; `T` is only in grouped results.
_AGG_FIELDS: schema.Columns = {
    "T": pl.String,
    "o": pl.Float64,
    "h": pl.Float64,
    "l": pl.Float64,
    "c": pl.Float64,
    "v": pl.Float64,
    "vw": pl.Float64,
    "n": pl.Int64,
    "t": pl.Int64,
}
_AGG_NAMES = {
    "T": "symbol",
    "o": "open",
    "h": "high",
    "l": "low",
    "c": "close",
    "v": "volume",
    "vw": "vwap",
    "n": "trades",
}


def _aggregates_frame(rows: list[dict], symbol: str | None = None) -> pl.DataFrame:
    """Aggregate results as `schema.BARS`; each bar's session is the New York date of its stamp.

    `symbol` names the ticker of per-ticker results (which carry no `T`). Rows without a ticker or a
    timestamp cannot be placed and are dropped with a warning.
    """
    frame = pl.from_dicts(rows, schema=_AGG_FIELDS) if rows else pl.DataFrame(schema=_AGG_FIELDS)
    if symbol is not None:
        frame = frame.with_columns(pl.lit(symbol, dtype=pl.String).alias("T"))
    unplaceable = frame.filter(pl.col("T").is_null() | pl.col("t").is_null())
    if unplaceable.height:
        _log.warning("polygon dropped rows=%d reason='no ticker or timestamp'", unplaceable.height)
        frame = frame.filter(pl.col("T").is_not_null() & pl.col("t").is_not_null())
    session = pl.from_epoch("t", "ms").dt.replace_time_zone("UTC").dt.convert_time_zone(calendar.NEW_YORK).dt.date()
    return schema.conform(frame.rename(_AGG_NAMES).with_columns(session.alias("date")), schema.BARS, "polygon bars")


def _split_rows(rows: list[dict]) -> list[Split]:
    """Polygon split records as `Split`s; records without a positive ratio are skipped with a warning."""
    splits = []
    for row in rows:
        try:
            split = Split(
                str(row["ticker"]),
                dt.date.fromisoformat(str(row["execution_date"])),
                float(row["split_from"]),
                float(row["split_to"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            _log.warning("polygon skipped split record=%r reason=%r", row, str(exc))
            continue
        if split.split_from > 0 and split.split_to > 0:
            splits.append(split)
        else:
            _log.warning("polygon skipped split record=%r reason='non-positive ratio'", row)
    return splits


def _details_row(symbol: str, payload: dict | None, fetched: dt.date) -> dict[str, object]:
    """One `schema.TICKER_DETAILS` row from a details response (None: the ticker is unknown to Polygon,
    remembered as an empty row so it is not asked for again before the refresh interval)."""
    results = (payload or {}).get("results") or {}
    if not isinstance(results, dict):
        results = {}
    shares = results.get("weighted_shares_outstanding") or results.get("share_class_shares_outstanding")
    list_date = results.get("list_date")
    return {
        "date": fetched,
        "symbol": symbol,
        "name": results.get("name"),
        "sic_code": None if results.get("sic_code") is None else str(results["sic_code"]),
        "sic_description": results.get("sic_description"),
        "market_cap": results.get("market_cap"),
        "shares_outstanding": None if shares is None else int(shares),
        "list_date": _parse_date(list_date),
    }


def _parse_date(value: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None
