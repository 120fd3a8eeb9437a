"""Technic's domain library: market data sources, screening, indicators, scoring, scanning, warehouse.

Pure Python/polars/numpy/duckdb: it never imports dagster or fastapi, so every piece can be tested and
reused without an orchestrator or a web server.
"""

__version__ = "0.1.0"
