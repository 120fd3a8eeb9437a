"""The two row encoders of `api.events.encode_rows` (Python for a few rows, polars for more) send the same
rows: compared value by value on real scan results and on adversarial floats. A scan's `ScanRowEncoder`
sends what `encode_rows` would."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import polars as pl
import pytest

from api.events import PYTHON_ENCODED_ROWS, ScanRowEncoder, encode_rows, for_wire


def _by_polars(frame: pl.DataFrame) -> list[dict]:
    return [json.loads(line) for line in for_wire(frame).write_ndjson().splitlines()]


def _by_python(frame: pl.DataFrame) -> list[dict]:
    rows = []
    for offset in range(0, frame.height, PYTHON_ENCODED_ROWS):
        rows.extend(json.loads(line) for line in encode_rows(frame.slice(offset, PYTHON_ENCODED_ROWS)))
    return rows


def _same(left: object, right: object) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        # polars' own scaling is off by an ulp beyond 1e±18 (its result, not ours, is the inexact one)
        return left == right or math.isclose(left, right, rel_tol=1e-15)
    return left == right


def test_small_frames_encode_like_polars_on_real_results(market):
    results = market.results
    assert results.height > PYTHON_ENCODED_ROWS
    assert list(encode_rows(results)) == for_wire(results).write_ndjson().splitlines()  # polars: one query
    python, polars = _by_python(results), _by_polars(results)
    assert len(python) == results.height
    for ours, theirs in zip(python, polars, strict=True):
        assert list(ours) == list(theirs)  # same keys, same order
        assert all(_same(ours[key], theirs[key]) for key in ours), ours["symbol"]


def test_small_frames_encode_like_polars_on_adversarial_values():
    rng = np.random.default_rng(7)
    derived = rng.standard_normal(4000) * 10.0 ** rng.integers(-20, 20, 4000)
    derived[:12] = [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1e-310, 1.7e308, 0.5, 2.5, -0.05, 1e-7]
    frame = pl.DataFrame(
        {
            "symbol": [f"S{i}" if i % 7 else 'quote " and é\n' for i in range(derived.size)],
            "date": [dt.date(2024, 6, 28) + dt.timedelta(days=int(i % 3)) for i in range(derived.size)],
            "rsi": derived,
            "close": np.round(np.abs(np.nan_to_num(derived)) % 1000, 2),  # exact column: as stored, not rounded
            "volume": rng.integers(0, 10**9, derived.size),
            "golden_cross": [None if i % 5 == 0 else bool(i % 2) for i in range(derived.size)],
        }
    ).with_columns(pl.when(pl.int_range(pl.len()) % 11 == 0).then(None).otherwise(pl.col("rsi")).alias("rsi"))
    python, polars = _by_python(frame), _by_polars(frame)
    mismatched = [
        (ours, theirs)
        for ours, theirs in zip(python, polars, strict=True)
        if list(ours) != list(theirs) or not all(_same(ours[key], theirs[key]) for key in ours)
    ]
    assert not mismatched, mismatched[:3]
    assert python[2]["rsi"] is None and python[3]["rsi"] is None  # NaN and inf: JSON has neither


@pytest.mark.parametrize("rows", [1, PYTHON_ENCODED_ROWS, PYTHON_ENCODED_ROWS + 1])
def test_encoded_rows_are_compact_json_objects_in_frame_order(rows):
    frame = pl.DataFrame({"symbol": [f"S{i}" for i in range(rows)], "rsi": [1 / 3] * rows})
    lines = encode_rows(frame)
    assert [json.loads(line)["symbol"] for line in lines] == frame.get_column("symbol").to_list()
    assert all(" " not in line and json.loads(line)["rsi"] == 0.333333 for line in lines)


def test_a_scan_encoder_sends_its_batches_as_encode_rows_would(market):
    results = market.results.with_columns(pl.col("seq") + 1000, pl.lit(7, dtype=pl.Int64).alias("batch"))
    scored = results.drop("batch", "seq")
    half = scored.height // 2
    encoder, half_seen = ScanRowEncoder(), ScanRowEncoder()
    # two passes, the first in another column order: the enrich step sees a pass before the engine conforms it
    for seen in (encoder, half_seen):
        seen(scored.slice(0, half).select(reversed(scored.columns)))
    encoder(scored.slice(half))
    batches = [results.slice(0, 1), results.slice(half - 2, 5), results[[9, 2, half + 1]], results.slice(0, 0)]
    for batch in batches:
        assert encoder.rows(batch) == encode_rows(batch)
    # rows of a pass it never saw (not one of its scan's) are encoded for themselves
    assert half_seen.rows(results.slice(half - 2, 5)) == encode_rows(results.slice(half - 2, 5))
    encoder.forget()  # and after it forgot its rows
    assert encoder.rows(results.slice(0, 3)) == encode_rows(results.slice(0, 3))
