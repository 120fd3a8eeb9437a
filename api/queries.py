"""Read-only warehouse queries of the API: DuckDB views over the Parquet files, and the model registry.

One in-memory DuckDB database (`Warehouse.connect()`, never the catalog file, so a Dagster write is never
blocked) is opened per process; each query runs on its own cursor, DuckDB's per-thread handle, because the
endpoints run in a thread pool. The views re-expand their globs on every query, so new partitions show up
without reconnecting. Values are always bound parameters; the only interpolated SQL is the ORDER BY column,
which comes from a closed list.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import polars as pl

from api.models import ORDER_COLUMNS, ModelInfo, ModelVersion, ResultFilters
from technic_core.errors import ConfigError
from technic_core.ml.registry import ModelRegistry
from technic_core.warehouse import Warehouse

logger = logging.getLogger(__name__)


class ResultQueries:
    """Result reads through one shared in-memory DuckDB database."""

    def __init__(self, store: Warehouse) -> None:
        self.store = store
        self._database = store.connect()
        self._lock = threading.Lock()

    def _query(self, sql: str, parameters: dict[str, Any]) -> pl.DataFrame:
        with self._lock:
            cursor = self._database.cursor()
        try:
            frame = pl.from_arrow(cursor.sql(sql, params=parameters).to_arrow_table())
        finally:
            cursor.close()
        if not isinstance(frame, pl.DataFrame):  # polars types any Arrow input's result; a table's is a frame
            raise TypeError(f"expected a DataFrame from an Arrow table, got {type(frame).__name__}")
        return frame

    def results(self, session: dt.date, filters: ResultFilters) -> pl.DataFrame:
        column = filters.order_by.lstrip("-")
        if column not in ORDER_COLUMNS:
            raise ValueError(f"order_by column {column!r} is not orderable")
        direction = "DESC" if filters.order_by.startswith("-") else "ASC"
        sql = (
            "SELECT * FROM results WHERE date = $date"
            " AND ($signal IS NULL OR signal = $signal)"
            " AND ($sector IS NULL OR sector = $sector)"
            " AND ($min_rating IS NULL OR tech_rating >= $min_rating)"
            f' ORDER BY "{column}" {direction} NULLS LAST, symbol LIMIT $limit'
        )
        return self._query(
            sql,
            {
                "date": session,
                "signal": filters.signal,
                "sector": filters.sector,
                "min_rating": filters.min_tech_rating,
                "limit": filters.limit,
            },
        )

    def result(self, session: dt.date, symbol: str) -> pl.DataFrame:
        sql = "SELECT * FROM results WHERE date = $date AND symbol = $symbol"
        return self._query(sql, {"date": session, "symbol": symbol})

    def close(self) -> None:
        self._database.close()


def model_registry(store: Warehouse) -> list[ModelInfo]:
    """Every model in the registry (`technic_core.ml.registry`): complete versions, their `metrics.json`
    and the champion. A directory that is not a model name is skipped and unreadable metrics show as null,
    with a warning: one damaged file must not take the health endpoint down."""
    registry = ModelRegistry(store)
    if not registry.root.is_dir():
        return []
    models = []
    for directory in sorted(path for path in registry.root.iterdir() if path.is_dir()):
        try:
            versions = registry.versions(directory.name)
        except ConfigError:
            continue
        models.append(
            ModelInfo(
                name=directory.name,
                champion=registry.champion(directory.name),
                versions=[ModelVersion(version=v, metrics=_metrics(registry, directory.name, v)) for v in versions],
            )
        )
    return models


def _metrics(registry: ModelRegistry, name: str, version: str) -> dict[str, Any] | None:
    try:
        metrics = registry.metrics(name, version)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("unreadable model metrics", extra={"model": name, "version": version, "error": str(exc)})
        return None
    return metrics if isinstance(metrics, dict) else None
