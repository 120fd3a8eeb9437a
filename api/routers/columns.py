"""`GET /columns`: the column catalog — every column a result row carries beyond the scored row, described.

The answer is the registry itself (`technic_core.catalog.column_rows`), so it cannot drift from what scans
compute; each of these columns is also an `order_by` of the results endpoints.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from api import auth
from api.models import ColumnCatalog, ColumnInfo
from technic_core.catalog import column_rows

router = APIRouter(dependencies=[Depends(auth.reader)], tags=["reads"])

_CATALOG = ColumnCatalog(count=len(rows := column_rows()), columns=[ColumnInfo.model_validate(row) for row in rows])


@router.get("/columns", response_model=ColumnCatalog)
def columns() -> ColumnCatalog:
    """Every catalog column in catalog order: name, type, unit, group, description, lookback (earlier bars
    the first value needs), source (bars, index, universe or derived), why it can be null and, for the four
    screener aliases, the column it carries."""
    return _CATALOG
