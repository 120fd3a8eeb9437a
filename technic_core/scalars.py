"""Python values out of polars, narrowed to the type their column guarantees.

polars annotates an aggregate (`Series.mean()`, `.median()`, `.min()`, ...) as any Python value a column
could hold, or None, and a row (`DataFrame.row(..., named=True)`) as untyped values; a Float64 column's mean
is a float and a Date column's minimum a date. These helpers state which type the caller relies on and check
it, raising `TypeError` naming the value otherwise (as `float(None)` would), so a wrong assumption fails
where it is made rather than as a confusing error further on.
"""

from __future__ import annotations

import datetime as dt
from typing import SupportsFloat, SupportsIndex, SupportsInt


def as_float(value: object) -> float:
    """A numeric value (int, float, bool, Decimal, NumPy scalar) as a float; anything else, None included,
    raises `TypeError`."""
    if isinstance(value, SupportsFloat):
        return float(value)
    raise TypeError(f"expected a number, got {value!r}")


def as_int(value: object) -> int:
    """A numeric value as an int (truncated, like `int()`); anything else, None included, raises `TypeError`."""
    if isinstance(value, SupportsInt | SupportsIndex):
        return int(value)
    raise TypeError(f"expected an integer, got {value!r}")


def as_date(value: object) -> dt.date:
    """A date value as such; anything else, None included, raises `TypeError`."""
    if isinstance(value, dt.date):
        return value
    raise TypeError(f"expected a date, got {value!r}")
