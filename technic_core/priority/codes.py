"""Integer symbol codes: the numpy representation the factors (and the reorder hook) work on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

# The factors are numpy over integer symbol codes, not polars queries. Why: a plan is made before every
# session (and the API makes one per ad-hoc scan), and at thousands of screened symbols polars' fixed costs —
# planning each query, hashing strings in each join and group_by — were most of a plan's time. Here every
# symbol column is encoded once (`_Codes`), after which a per-symbol aggregate is one np.bincount and aligning
# a factor to the screened symbols one gather.
#
# Missing values: polars nulls arrive as NaN, and NaN means "missing" throughout. Stored bars, results and
# earnings hold no NaN of their own (the quality checks reject NaN prices and ratings; indicators turn NaN
# into null), so on every valid input this is polars' null semantics. The factor functions run with numpy's
# divide and invalid warnings off: NaN from 0 / 0 or log(0) is how missing inputs propagate, not an error.
_nan_is_missing = np.errstate(divide="ignore", invalid="ignore")


class _Codes:
    """One integer code per distinct string across several string columns, so the columns can be joined and
    grouped as integers. `of[i]` holds the codes of column i, `strings` the string of each code.

    pyarrow's dictionary encoding over all columns at once (one hash table, so a string has one code in every
    column): cheaper than polars' string group_by on a bar panel, and it reads polars' string views without a
    copy. A null gets a code of its own.
    """

    def __init__(self, *columns: pl.Series) -> None:
        arrays = [column.to_arrow(compat_level=pl.CompatLevel.newest()) for column in columns]
        encoded = pc.dictionary_encode(pa.chunked_array(arrays, type=pa.string_view()), null_encoding="encode")
        # pyarrow drops empty chunks, so the codes are split by the columns' lengths, not by chunk
        codes = [chunk.indices.to_numpy().astype(np.intp) for chunk in encoded.chunks]
        all_codes = np.concatenate([np.empty(0, dtype=np.intp), *codes])
        self.of = np.split(all_codes, np.cumsum([len(array) for array in arrays])[:-1])
        self.strings = pl.Series(encoded.chunk(0).dictionary if encoded.num_chunks else [], dtype=pl.String)
        self.size = len(self.strings)

    def frame(self, name: str, values: np.ndarray) -> pl.DataFrame:
        """`symbol` and column `name` of the codes whose `values` (indexed by code) are not NaN."""
        known = ~np.isnan(values)
        return pl.DataFrame({"symbol": self.strings.filter(known), name: values[known]})


@dataclass(frozen=True)
class _Rows:
    """A frame's rows as numpy: the code of each row's symbol (`_Codes`) and its day number (NaN when null)."""

    frame: pl.DataFrame
    codes: np.ndarray
    days: np.ndarray

    @classmethod
    def of(cls, frame: pl.DataFrame, codes: np.ndarray) -> _Rows:
        return cls(frame, codes, frame.get_column("date").cast(pl.Float64).to_numpy())

    def values(self, column: str) -> np.ndarray:
        """A float column, NaN where null."""
        return self.frame.get_column(column).cast(pl.Float64).to_numpy()


def _day_numbers(days: list[dt.date]) -> np.ndarray:
    """Days since the epoch, as polars stores a Date: comparable with `_Rows.days`."""
    return np.array(days, dtype="datetime64[D]").astype(np.float64)


def _per_symbol_mean(codes: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and count of the non-missing `values` per symbol code (`codes` of the same rows); NaN mean for none."""
    known = ~np.isnan(values)
    if not known.all():
        codes, values = codes[known], values[known]
    count = np.bincount(codes, minlength=size)
    return np.bincount(codes, weights=values, minlength=size) / count, count


def _per_symbol_value(codes: np.ndarray, rows: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """The value of each symbol code's row among `rows` (a mask of one date: bars and results hold one row per
    symbol and date), NaN for a symbol without one."""
    value = np.full(size, np.nan)
    value[codes[rows]] = values[rows]
    return value
