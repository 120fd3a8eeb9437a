"""The planted predictable part of the simulated market: ground truth for ML and prioritization.

At each close, a score a(t) is computed from every symbol's own published bars, weighted by the session's
hidden regime; it adds drift to the next `alpha_horizon` sessions, and the oracle is the part of a future
return already fixed by the scores so far. Definitions and the reasons for them: docs/simulated-market.md.
"""

from __future__ import annotations

import math

import numpy as np

from technic_core.sources.simulated.config import SimulationConfig
from technic_core.sources.simulated.parameters import REGIMES
from technic_core.sources.simulated.state import _State

_RING = 64  # closes kept per symbol: enough for ret_5 and mom_63; a power of two (see _ring_slots)
_WINDOW = 20  # highs and volumes kept per symbol: volume_surge_sign and dist_high_20
_RSI_PERIOD = 14
_VOLATILITY_WINDOW = 20  # bar-to-bar changes in the symbol's own volatility (state-dependent planted score)


def _horizon_weights(horizon: int) -> np.ndarray:
    """w_j, j = 1..H: linearly decaying, summing to 1."""
    raw = np.arange(horizon, 0, -1, dtype=float)
    return raw / raw.sum()


def _oracle_coefficients(horizon_weights: np.ndarray, horizon: int) -> np.ndarray:
    """c_m = Σ_{k=1..min(h, H−m)} w_{k+m}: weight of the score m sessions back in the oracle of horizon h."""
    size = len(horizon_weights)
    return np.array([horizon_weights[m : min(m + horizon, size)].sum() for m in range(size)])


def _regime_weights(config: SimulationConfig) -> list[dict[str, float]]:
    """The planted weights of each regime (`REGIMES` order): `alpha_weights` × the regime's multiplier."""
    multipliers = dict(config.alpha_regime_multipliers)
    return [
        {name: weight * multipliers.get(name, (1.0,) * len(REGIMES))[index] for name, weight in config.alpha_weights}
        for index in range(len(REGIMES))
    ]


def _ring_slots(bar_numbers: np.ndarray) -> np.ndarray:
    """`bar_numbers % _RING` as a mask: the same slots (also of negative numbers, in two's complement) without
    an integer division per element, which dominated the score's cost on large markets."""
    return bar_numbers & (_RING - 1)


def _zscore(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Cross-sectional z-score over `valid`, clipped to ±3; 0 elsewhere and when there is no spread."""
    count = np.count_nonzero(valid)
    if count < 2:
        return np.zeros_like(values)
    centered = values - np.sum(values, where=valid) / count
    spread = math.sqrt(np.sum(centered * centered, where=valid) / count)
    if spread == 0:
        return np.zeros_like(values)
    return np.where(valid, np.clip(centered / spread, -3.0, 3.0), 0.0)


class _PlantedScore:
    """The planted score of one config: each session's a(t) from the bars published so far, and the drift the
    scores of the last `alpha_horizon` sessions add to the next one."""

    def __init__(self, config: SimulationConfig, size: int) -> None:
        self.config = config
        self._size = size
        #: w_j, j = 1..H: how a score's effect is spread over the next H sessions (also the oracle's weights).
        self.horizon_weights = _horizon_weights(config.alpha_horizon)
        self._alpha_weights = dict(config.alpha_weights)
        self._regime_weights = _regime_weights(config)

    def drift(self, state: _State, k: int) -> np.ndarray:
        """Σ_j w_j a(k − j): the drift session k inherits from the last H sessions' planted scores."""
        horizon = self.config.alpha_horizon
        weights_by_slot = np.empty(horizon)
        weights_by_slot[(k - np.arange(1, horizon + 1)) % horizon] = self.horizon_weights
        return weights_by_slot @ state.score_ring

    def record_bars_and_score(
        self,
        state: _State,
        has_bar: np.ndarray,
        close: np.ndarray,
        high: np.ndarray,
        volume: np.ndarray,
        regime: int,
    ) -> np.ndarray:
        """Append today's bars to each symbol's history and return the planted score a(t) (docs/simulated-market.md),
        weighted for today's hidden `regime` when the score is state-dependent.

        Works on all symbols at once; values of symbols without a bar are computed and then masked out,
        which is cheaper than gathering the subset that has one.
        """
        previous_bars = state.bar_count
        has_change = has_bar & (previous_bars >= 1)
        change = np.where(has_change, close - np.where(has_change, state.last_close, close), 0.0)
        smoothing = 1.0 / np.clip(previous_bars, 1, _RSI_PERIOD)
        state.avg_gain += np.where(has_change, smoothing * (np.maximum(change, 0.0) - state.avg_gain), 0.0)
        state.avg_loss += np.where(has_change, smoothing * (np.maximum(-change, 0.0) - state.avg_loss), 0.0)
        bar = np.flatnonzero(has_bar)
        state.close_ring[previous_bars[bar] % _RING, bar] = close[bar]
        state.high_ring[previous_bars[bar] % _WINDOW, bar] = high[bar]
        state.volume_ring[previous_bars[bar] % _WINDOW, bar] = volume[bar]
        state.last_close = np.where(has_bar, close, state.last_close)
        state.bar_count = previous_bars + has_bar

        bars = state.bar_count
        moves = state.avg_gain + state.avg_loss
        full_window = has_bar & (bars >= _WINDOW)
        # Features of symbols with too few bars read unfilled ring slots; they are masked out below.
        with np.errstate(divide="ignore", invalid="ignore"):
            features = {
                "ret_5": (np.log(close / self._close_back(state, 5)), has_bar & (bars > 5)),
                "mom_63": (np.log(close / self._close_back(state, 63)), has_bar & (bars > 63)),
                "rsi_14": (100.0 * state.avg_gain / moves, has_bar & (bars > _RSI_PERIOD) & (moves > 0)),
                "volume_surge_sign": (
                    np.maximum(np.log(volume / state.volume_ring.mean(axis=0)), 0.0) * np.sign(change),
                    full_window,
                ),
                "dist_high_20": (close / state.high_ring.max(axis=0) - 1.0, full_window),
            }
        weights = self._regime_weights[regime] if self.config.alpha_state_dependence else self._alpha_weights
        reversal_scale = self._reversal_volatility_scale(state, has_bar)
        combined = np.zeros(self._size)
        for name, weight in weights.items():
            values, valid = features[name]
            term = weight * _zscore(np.where(valid, values, 0.0), valid)
            combined += term * reversal_scale if name == "ret_5" and reversal_scale is not None else term
        return _zscore(combined, has_bar)

    def _reversal_volatility_scale(self, state: _State, has_bar: np.ndarray) -> np.ndarray | None:
        """1 + γ × v: v is the clipped cross-sectional z-score of ln(σ), σ the population std of the symbol's
        last 20 bar-to-bar log close changes (0 where it has fewer than 21 bars or σ = 0). None when the
        score is linear (no state dependence or γ = 0)."""
        gamma = self.config.alpha_volatility_interaction
        if not self.config.alpha_state_dependence or gamma == 0:
            return None
        lags = np.arange(_VOLATILITY_WINDOW + 1)[:, None]
        closes = np.take_along_axis(state.close_ring, _ring_slots(state.bar_count[None, :] - 1 - lags), axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_volatility = np.log(np.log(closes[:-1] / closes[1:]).std(axis=0))
        valid = has_bar & (state.bar_count > _VOLATILITY_WINDOW) & np.isfinite(log_volatility)
        return 1.0 + gamma * _zscore(np.where(valid, log_volatility, 0.0), valid)

    def _close_back(self, state: _State, lag: int) -> np.ndarray:
        """Each symbol's close `lag` bars before its latest one (garbage where it has fewer bars)."""
        return np.take_along_axis(state.close_ring, _ring_slots(state.bar_count[None, :] - 1 - lag), axis=0)[0]
