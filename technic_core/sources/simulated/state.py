"""The simulated market's recursion memory (`_State`, what a checkpoint holds) and its output (`_Block`, the
dense arrays of a run of consecutive sessions)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np


@dataclass
class _State:
    """Everything session k needs from sessions before it — the checkpointed memory of the recursion."""

    regime: int
    market_variance: float
    market_shock: float
    index_close: float
    vix: float
    log_price: np.ndarray  # latent log price (trades on during halts)
    variance: np.ndarray  # idiosyncratic GARCH variance of the next session
    volume_state: np.ndarray  # persistent log-volume deviation
    halt_left: np.ndarray  # sessions of halt still to come
    bar_count: np.ndarray  # published bars so far
    last_close: np.ndarray  # last published close (NaN before the first bar)
    close_ring: np.ndarray  # (_RING, N) published closes, slot bar_number % _RING
    high_ring: np.ndarray  # (_WINDOW, N)
    volume_ring: np.ndarray  # (_WINDOW, N)
    avg_gain: np.ndarray  # Wilder averages for rsi_14
    avg_loss: np.ndarray
    score_ring: np.ndarray  # (H, N) planted scores, slot session_index % H

    def copy(self) -> _State:
        return copy.deepcopy(self)


class _Block:
    """Dense outputs of consecutive sessions (rows) × all symbols (columns): the sessions `first`… of one
    block of `checkpoint_interval` sessions, up to its end or to the last session asked for."""

    def __init__(self, first: int, length: int, n: int, horizon: int) -> None:
        self.first = first
        self.length = length
        self.has_bar = np.zeros((length, n), dtype=bool)
        self.open = np.empty((length, n))
        self.high = np.empty((length, n))
        self.low = np.empty((length, n))
        self.close = np.empty((length, n))  # last published close, also for halted names
        self.volume = np.empty((length, n))
        self.vwap = np.empty((length, n))
        self.trades = np.empty((length, n), dtype=np.int64)
        self.scores = np.empty((horizon - 1 + length, n))  # planted scores, H − 1 sessions of history first
        self.index_bars = np.empty((length, 2, 6))  # [INDEX, VOLATILITY] × open, high, low, close, volume, vwap
        self.index_trades = np.empty(length, dtype=np.int64)
        self.regime = np.empty(length, dtype=np.int8)
