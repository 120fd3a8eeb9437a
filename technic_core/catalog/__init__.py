"""The screener's column catalog: the registry of every column (`registry`), the engine computing them all
for a whole bars panel (`engine.compute_catalog`) and the consensus rating (`consensus`)."""

from technic_core.catalog.engine import compute_catalog
from technic_core.catalog.registry import CATALOG, COLUMNS, SOURCES, UNITS, Column, column_rows, dtypes

__all__ = ["CATALOG", "COLUMNS", "SOURCES", "UNITS", "Column", "column_rows", "compute_catalog", "dtypes"]
