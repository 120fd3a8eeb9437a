"""Read-only warehouse queries of the API: DuckDB views over the Parquet files, and the model registry.

One in-memory DuckDB database (`Warehouse.connect()`, never the catalog file, so a Dagster write is never
blocked) is opened per process; each query runs on its own cursor, DuckDB's per-thread handle, because the
endpoints run in a thread pool. The views re-expand their globs on every query, so new partitions show up
without reconnecting. Values are always bound parameters; the only interpolated SQL is the ORDER BY column,
which comes from a closed list.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any

import polars as pl

from api.models import ORDER_COLUMNS, ModelInfo, ModelVersion, ResultFilters
from technic_core.warehouse import Warehouse

logger = logging.getLogger(__name__)

CHAMPION_FILE = "champion.json"
METRICS_FILE = "metrics.json"


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
            return pl.from_arrow(cursor.sql(sql, params=parameters).to_arrow_table())  # type: ignore[return-value]
        finally:
            cursor.close()

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
    """Every model under `models/<name>/<version>/`, with its champion (`models/<name>/champion.json`,
    `{"version": ...}`) and each version's `metrics.json`. Unreadable JSON is logged and shown as null:
    one damaged file must not take the health endpoint down."""
    root = store.root / "models"
    if not root.is_dir():
        return []
    models = []
    for model_dir in sorted(path for path in root.iterdir() if path.is_dir()):
        champion = _json_file(model_dir / CHAMPION_FILE)
        versions = [
            ModelVersion(version=version_dir.name, metrics=_json_file(version_dir / METRICS_FILE))
            for version_dir in sorted(path for path in model_dir.iterdir() if path.is_dir())
        ]
        version = champion.get("version") if champion else None
        models.append(ModelInfo(name=model_dir.name, champion=str(version) if version else None, versions=versions))
    return models


def _json_file(path: Path) -> dict[str, Any] | None:
    try:
        loaded = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("unreadable model registry file", extra={"path": str(path), "error": str(exc)})
        return None
    return loaded if isinstance(loaded, dict) else None
