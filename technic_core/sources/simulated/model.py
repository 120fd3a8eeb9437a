"""One session of the simulated market's recursion, for every symbol at once.

A session draws its random numbers, moves the market (regime chain, GARCH), lists new names, moves each
stock (its own shocks, news, earnings reactions, IPO pops and the planted drift), turns the latent path into
rounded bars, volume and halts, records the planted score, and moves the index and the volatility index.
The model is described in docs/simulated-market.md.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from technic_core.config import SECTORS
from technic_core.sources.simulated.config import SimulationConfig
from technic_core.sources.simulated.parameters import (
    _FINEST_TICKS_PER_DOLLAR,
    _INDEX_START,
    _INDEX_TRACKING,
    _IPO_POP_MEAN,
    _IPO_POP_SPREAD,
    _MARKET_GARCH,
    _NEWS_PROBABILITY,
    _NEWS_SIZE,
    _SECTOR_VOLATILITY,
    _STOCK_GARCH,
    _STREAM_MARKET,
    _STREAM_STOCKS,
    _SURPRISE_CENTER,
    _SURPRISE_SCALE,
    _VARIANCE_RISK_PREMIUM,
    _VIX_START,
    REGIME_TRANSITIONS,
    REGIMES,
    _Regime,
)
from technic_core.sources.simulated.planted import _RING, _WINDOW, _PlantedScore
from technic_core.sources.simulated.state import _Block, _State
from technic_core.sources.simulated.universe import _EarningsSchedule, _Universe

#: Bump when the recursion changes, so persisted checkpoints of an older model are never resumed.
MODEL_VERSION = 2


def _round_to_tick(prices: np.ndarray, ticks_per_dollar: np.ndarray) -> np.ndarray:
    """Round to the symbol-day's tick; one tick size per symbol-day keeps rounding monotone, so the OHLC
    order survives it."""
    return np.maximum(np.rint(prices * ticks_per_dollar) / ticks_per_dollar, 1.0 / _FINEST_TICKS_PER_DOLLAR)


class _Draws(NamedTuple):
    """A session's random numbers, in the order they are drawn: the order is part of the model."""

    # the market stream
    market_draw: float
    tracking_draw: float
    sector_draws: list[float]
    index_noise: np.ndarray  # bar shapes of the index and the volatility index
    regime_draw: float
    index_vwap_mix: float
    # the stocks' stream, one value per symbol
    z_idiosyncratic: np.ndarray
    z_open: np.ndarray
    z_volume: np.ndarray
    z_event: np.ndarray  # one "event" normal sizes whichever rare event a symbol has that day
    u_news: np.ndarray
    u_halt: np.ndarray
    u_vwap: np.ndarray
    u_high: np.ndarray
    u_low: np.ndarray


class _MarketMove(NamedTuple):
    """The session's market: its regime, its conditional variance, its volatility relative to the calm (bull)
    regime's, and each symbol's common (market + sector) return."""

    regime: _Regime
    variance: float
    calm_ratio: float
    common: np.ndarray


class _StockMoves(NamedTuple):
    """Each symbol's move on the session."""

    variance: np.ndarray  # the idiosyncratic variance the session's shocks were drawn with
    surprise_move: np.ndarray  # idiosyncratic shock, news jump and earnings reaction
    jumps: np.ndarray  # the part the open takes in full: IPO pop and earnings reaction
    earnings_volume: np.ndarray  # volume multiplier of an earnings reaction (1 without one)
    log_return: np.ndarray


class _Prices(NamedTuple):
    """A session's prices before rounding to ticks, and the latent price they moved from (`previous`)."""

    previous: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    vwap: np.ndarray
    ticks_per_dollar: np.ndarray


class _MarketModel:
    """The recursion of one config over its sessions (`session_days`: day numbers of the simulated sessions).

    `simulate_sessions` advances a `_State` through consecutive sessions; each session is `_advance`, a fixed
    sequence of steps that read and update the state. The steps draw nothing themselves: all of a session's
    random numbers come first (`_draws`), so the draws never depend on the code path.
    """

    def __init__(
        self,
        config: SimulationConfig,
        universe: _Universe,
        earnings: _EarningsSchedule,
        session_days: np.ndarray,
    ) -> None:
        self.config = config
        self._universe = universe
        self._earnings = earnings
        self._session_days = session_days
        self.planted = _PlantedScore(config, universe.size)

    def simulate_sessions(self, state: _State, first: int, length: int) -> _Block:
        """Advance `state` through sessions `first`…`first + length − 1`, recording their outputs."""
        horizon = self.config.alpha_horizon
        block = _Block(first, length, self._universe.size, horizon)
        for lag in range(1, horizon):
            block.scores[horizon - 1 - lag] = state.score_ring[(first - lag) % horizon]
        for row in range(length):
            self._advance(state, first + row, block, row)
        return block

    def initial_state(self) -> _State:
        n = self._universe.size
        horizon = self.config.alpha_horizon
        bull = REGIMES[0]
        return _State(
            regime=0,
            market_variance=bull.volatility**2,
            market_shock=0.0,
            index_close=_INDEX_START,
            vix=_VIX_START,
            log_price=np.log(self._universe.start_price),
            variance=self._universe.volatility**2,
            volume_state=np.zeros(n),
            halt_left=np.zeros(n, dtype=np.int64),
            bar_count=np.zeros(n, dtype=np.int64),
            last_close=np.full(n, np.nan),
            close_ring=np.zeros((_RING, n)),
            high_ring=np.zeros((_WINDOW, n)),
            volume_ring=np.zeros((_WINDOW, n)),
            avg_gain=np.zeros(n),
            avg_loss=np.zeros(n),
            score_ring=np.zeros((horizon, n)),
        )

    # --- one session ------------------------------------------------------------------------------------

    def _advance(self, state: _State, k: int, block: _Block, row: int) -> None:
        """Simulate session `k` for every symbol at once: returns, bars, halts, planted score, index, VIX.

        The order of the steps matters where they share state: listings reset prices before the move, the
        index weighs the prices before it, and the planted score sees the bars only after halts are known.
        """
        draws = self._draws(k)
        market = self._move_market(state, draws)
        listing = self._list_new_names(state, k)
        listed = self._universe.listed(k)
        moves = self._move_stocks(state, k, draws, market, listing)
        self._update_stock_variance(state, market.regime, moves)
        prices = self._prices(state, draws, market, moves)
        index_return = self._index_return(draws, market, listed, prices.previous)
        state.log_price += moves.log_return
        volume = self._volume(state, draws, market, moves, listing)
        has_bar = self._halt(state, draws, listed, listing)
        self._record_bars(block, row, has_bar, prices, volume)

        horizon = self.config.alpha_horizon
        close = _round_to_tick(prices.close, prices.ticks_per_dollar)
        scores = self.planted.record_bars_and_score(state, has_bar, close, block.high[row], volume, state.regime)
        state.score_ring[k % horizon] = scores
        block.scores[horizon - 1 + row] = scores
        block.close[row] = state.last_close
        self._advance_indices(state, block, row, index_return, market.variance, draws.index_noise, draws.index_vwap_mix)
        block.regime[row] = state.regime

    def _draws(self, k: int) -> _Draws:
        """Session `k`'s random numbers, from generators seeded by (seed, day number, stream)."""
        cfg, n = self.config, self._universe.size
        day = int(self._session_days[k])
        market_draws = np.random.default_rng([cfg.seed, day, _STREAM_MARKET])
        market_draw, tracking_draw, *sector_draws = market_draws.standard_normal(2 + len(SECTORS))
        index_noise = market_draws.standard_normal(8)
        regime_draw, index_vwap_mix = market_draws.random(2)
        stock_draws = np.random.default_rng([cfg.seed, day, _STREAM_STOCKS])
        z_idiosyncratic, z_open, z_volume, z_event = stock_draws.standard_normal((4, n))
        u_news, u_halt, u_vwap, u_high, u_low = stock_draws.random((5, n))
        return _Draws(
            market_draw,
            tracking_draw,
            sector_draws,
            index_noise,
            regime_draw,
            index_vwap_mix,
            z_idiosyncratic,
            z_open,
            z_volume,
            z_event,
            u_news,
            u_halt,
            u_vwap,
            u_high,
            u_low,
        )

    def _move_market(self, state: _State, draws: _Draws) -> _MarketMove:
        """Market factor: regime chain, then GARCH around the regime's volatility; sector shocks scale with it."""
        u = self._universe
        transition = np.cumsum(REGIME_TRANSITIONS[state.regime])
        state.regime = min(int(np.searchsorted(transition, draws.regime_draw, side="right")), len(REGIMES) - 1)
        regime = REGIMES[state.regime]
        shock_weight, persistence = _MARKET_GARCH
        market_variance = (
            (1 - shock_weight - persistence) * regime.volatility**2
            + shock_weight * state.market_shock**2
            + persistence * state.market_variance
        )
        state.market_shock = math.sqrt(market_variance) * draws.market_draw
        state.market_variance = market_variance
        calm_ratio = math.sqrt(market_variance) / REGIMES[0].volatility
        sector_shock = (_SECTOR_VOLATILITY * calm_ratio) * np.array(draws.sector_draws)
        common = u.beta * (regime.drift + state.market_shock) + u.sector_loading * sector_shock[u.sector]
        return _MarketMove(regime, market_variance, calm_ratio, common)

    def _list_new_names(self, state: _State, k: int) -> np.ndarray:
        """Listings reset the latent price to the offer price; returns which names list on session `k`."""
        u = self._universe
        listing = u.list_index == k
        if listing.any():
            state.log_price[listing] = np.log(u.start_price[listing])
            state.variance[listing] = 2.0 * u.volatility[listing] ** 2
            state.volume_state[listing] = 0.0
        return listing

    def _move_stocks(
        self, state: _State, k: int, draws: _Draws, market: _MarketMove, listing: np.ndarray
    ) -> _StockMoves:
        """Idiosyncratic shocks, news jumps, earnings reactions (to the previous session's reports), IPO pops
        and the planted drift, on top of the common move."""
        u, cfg = self._universe, self.config
        z_event = draws.z_event
        variance = state.variance
        surprise_move = np.sqrt(variance) * draws.z_idiosyncratic
        surprise_move += np.where(draws.u_news < _NEWS_PROBABILITY, _NEWS_SIZE * u.volatility * z_event, 0.0)
        ipo_pop = np.where(listing, _IPO_POP_MEAN + _IPO_POP_SPREAD * z_event, 0.0)
        jumps = ipo_pop.copy()
        earnings_volume = np.ones(u.size)
        if k > 0:
            reports = self._earnings.between(k - 1, k - 1)
            reacting = self._earnings.symbol[reports]
            surprise = np.clip((self._earnings.surprise[reports] - _SURPRISE_CENTER) / _SURPRISE_SCALE, -4.0, 4.0)
            reaction = u.volatility[reacting] * (1.6 * surprise + 1.2 * z_event[reacting])
            surprise_move[reacting] += reaction
            jumps[reacting] += reaction
            earnings_volume[reacting] = 2.5 + 0.8 * np.abs(surprise)
        planted = cfg.alpha_strength * self.planted.drift(state, k)
        log_return = market.common + surprise_move + ipo_pop + planted
        return _StockMoves(variance, surprise_move, jumps, earnings_volume, log_return)

    def _update_stock_variance(self, state: _State, regime: _Regime, moves: _StockMoves) -> None:
        """Stock GARCH: the next session's variance, its shock capped so one jump cannot explode it."""
        u = self._universe
        shock_weight, persistence = _STOCK_GARCH
        state.variance = (
            (1 - shock_weight - persistence) * regime.idiosyncratic_multiplier * u.volatility**2
            + shock_weight * np.minimum(moves.surprise_move * moves.surprise_move, 64.0 * u.volatility**2)
            + persistence * moves.variance
        )

    def _prices(self, state: _State, draws: _Draws, market: _MarketMove, moves: _StockMoves) -> _Prices:
        """Bars from the latent path: the open takes the overnight part of the move (all of a jump)."""
        u = self._universe
        variance, log_return, jumps = moves.variance, moves.log_return, moves.jumps
        total_volatility = np.sqrt(
            variance
            + (u.beta * u.beta) * market.variance
            + (u.sector_loading * (_SECTOR_VOLATILITY * market.calm_ratio)) ** 2
        )
        overnight = jumps + 0.25 * (log_return - jumps) + 0.25 * total_volatility * draws.z_open
        previous = np.exp(state.log_price)
        ticks_per_dollar = np.where(previous < 1.0, _FINEST_TICKS_PER_DOLLAR, 100.0)
        open_ = previous * np.exp(overnight)
        close = previous * np.exp(log_return)
        high = np.maximum(open_, close) * np.exp(-0.4 * total_volatility * np.log(draws.u_high))
        low = np.minimum(open_, close) * np.exp(0.4 * total_volatility * np.log(draws.u_low))
        vwap = draws.u_vwap * (high + low + close) / 3.0 + (1.0 - draws.u_vwap) * (open_ + close) / 2.0
        return _Prices(previous, open_, high, low, close, vwap, ticks_per_dollar)

    def _index_return(self, draws: _Draws, market: _MarketMove, listed: np.ndarray, previous: np.ndarray) -> float:
        """The index's return: the common move of the listed names, weighted by their caps before the session,
        plus a little tracking noise."""
        u = self._universe
        index_weights = np.where(listed, u.shares * previous, 0.0)
        index_common = float(index_weights @ market.common) / index_weights.sum() if listed.any() else 0.0
        return index_common + _INDEX_TRACKING * draws.tracking_draw

    def _volume(
        self, state: _State, draws: _Draws, market: _MarketMove, moves: _StockMoves, listing: np.ndarray
    ) -> np.ndarray:
        """Volume: turnover × persistent noise, surging on big moves, earnings, listings and volatile markets."""
        u, variance = self._universe, moves.variance
        state.volume_state = 0.7 * state.volume_state + 0.3 * draws.z_volume
        move_size = np.abs(moves.surprise_move) / np.sqrt(variance)
        volume = u.base_volume * np.exp(
            state.volume_state
            + 0.35 * np.maximum(move_size - 1.0, 0.0)
            + 0.25 * np.log(variance / u.volatility**2)
            + 0.4 * math.log(market.calm_ratio)
        )
        return np.maximum(np.rint(volume * moves.earnings_volume * np.where(listing, 5.0, 1.0)), 100.0)

    def _halt(self, state: _State, draws: _Draws, listed: np.ndarray, listing: np.ndarray) -> np.ndarray:
        """Halts start among listed names (never on the listing day) and last 1–3 sessions; returns which
        names publish a bar."""
        u, u_halt = self._universe, draws.u_halt
        halt_chance = self.config.halt_probability * u.halt_weight
        starting = listed & ~listing & (state.halt_left == 0) & (u_halt < halt_chance)
        halt_draw = u_halt[starting] / halt_chance[starting]  # uniform again, given the halt started
        state.halt_left[starting] = 1 + (halt_draw > 0.6) + (halt_draw > 0.85)
        halted = state.halt_left > 0
        state.halt_left[halted] -= 1
        return listed & ~halted

    def _record_bars(self, block: _Block, row: int, has_bar: np.ndarray, prices: _Prices, volume: np.ndarray) -> None:
        """The session's published values, prices rounded to ticks, into `block`'s `row`."""
        ticks_per_dollar = prices.ticks_per_dollar
        block.has_bar[row] = has_bar
        block.open[row] = _round_to_tick(prices.open, ticks_per_dollar)
        block.high[row] = _round_to_tick(prices.high, ticks_per_dollar)
        block.low[row] = _round_to_tick(prices.low, ticks_per_dollar)
        block.vwap[row] = _round_to_tick(prices.vwap, ticks_per_dollar)
        block.volume[row] = volume
        block.trades[row] = np.maximum(np.ceil(volume / self._universe.trade_size), 1.0)

    def _advance_indices(
        self,
        state: _State,
        block: _Block,
        row: int,
        index_return: float,
        market_variance: float,
        normal: np.ndarray,
        vwap_mix: float,
    ) -> None:
        """Index bar from the cap-weighted common return; volatility index from conditional market volatility."""
        regime = REGIMES[state.regime]
        volatility = math.sqrt(market_variance)
        previous = state.index_close
        close = previous * math.exp(index_return)
        open_ = previous * math.exp(0.3 * index_return + 0.15 * volatility * normal[0])
        high = max(open_, close) * math.exp(0.5 * volatility * abs(normal[1]))
        low = min(open_, close) * math.exp(-0.5 * volatility * abs(normal[2]))
        volume = round(75e6 * math.exp(0.25 * normal[3]) * (volatility / REGIMES[0].volatility) ** 0.5)
        vwap = vwap_mix * (high + low + close) / 3.0 + (1.0 - vwap_mix) * (open_ + close) / 2.0
        state.index_close = close
        block.index_bars[row, 0] = [*np.round([open_, high, low, close], 2), volume, round(vwap, 2)]
        block.index_trades[row] = max(1, round(volume / 120.0))

        blended_variance = 0.3 * market_variance + 0.7 * regime.volatility**2
        target = 100.0 * math.sqrt(252.0 * blended_variance) * _VARIANCE_RISK_PREMIUM + regime.vix_premium
        previous_vix = state.vix
        log_vix = math.log(previous_vix) + 0.12 * math.log(target / previous_vix) - 2.0 * index_return
        vix_close = math.exp(log_vix + 0.05 * normal[4])
        vix_open = previous_vix * math.exp(0.3 * math.log(vix_close / previous_vix) + 0.02 * normal[5])
        vix_high = max(vix_open, vix_close) * math.exp(0.04 * abs(normal[6]))
        vix_low = min(vix_open, vix_close) * math.exp(-0.03 * abs(normal[7]))
        state.vix = vix_close
        block.index_bars[row, 1] = [*np.round([vix_open, vix_high, vix_low, vix_close], 2), 0.0, np.nan]
