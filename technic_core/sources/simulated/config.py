"""What simulated market to generate: `SimulationConfig` and the defaults of its planted score.

Two markets with equal configs produce identical data; the model the knobs steer is described in
docs/simulated-market.md.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from technic_core import calendar
from technic_core.errors import ConfigError
from technic_core.sources.simulated.parameters import REGIMES

#: Features the planted score can weigh (their definitions: docs/simulated-market.md).
ALPHA_FEATURES: tuple[str, ...] = ("ret_5", "mom_63", "rsi_14", "volume_surge_sign", "dist_high_20")

#: Short-horizon reversal carries most of the weight, as in real 5–10 session predictability. Positive weights
#: on persistent trend features (mom_63, dist_high_20) feed back into prices — winners keep drifting up — and
#: widen the price dispersion year after year, so trend gets a small weight and distance to the high a
#: negative one (stocks stretched below their 20-session high rebound).
DEFAULT_ALPHA_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("ret_5", -0.40),
    ("rsi_14", -0.20),
    ("volume_surge_sign", 0.15),
    ("mom_63", 0.10),
    ("dist_high_20", -0.15),
)

#: Multipliers of a feature's weight in each regime (`REGIMES` order: bull, bear, chop) when the planted
#: score is state-dependent; features not listed keep their weight in every regime. Momentum pays in calm
#: bull markets and reverses in bear markets (momentum crashes); short-term reversal is stronger the more
#: volatile the market (bear > chop > bull, the order of the regimes' volatilities). See docs/simulated-market.md.
DEFAULT_ALPHA_REGIME_MULTIPLIERS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("ret_5", (1.0, 1.5, 1.25)),
    ("mom_63", (2.0, -2.5, -1.0)),
)
#: γ: the ret_5 term is multiplied by (1 + γ × v), v the clipped cross-sectional z-score of the symbol's own
#: ln(20-bar volatility). γ ≤ 1/3 keeps the multiplier ≥ 0, so reversal never turns into continuation.
DEFAULT_ALPHA_VOLATILITY_INTERACTION = 0.3


@dataclass(frozen=True)
class SimulationConfig:
    """What market to simulate. Two markets with equal configs produce identical data."""

    n_symbols: int = 5_000
    seed: int = 7
    #: First simulated session (a later date if it is not a session).
    epoch: dt.date = dt.date(2018, 1, 2)
    #: IPO and delisting dates are spread over [epoch, history_end]; sessions after it still trade.
    history_end: dt.date = dt.date(2026, 12, 31)
    ipo_fraction: float = 0.10
    delist_fraction: float = 0.08
    #: Chance a listed symbol starts a 1–3 session trading halt on a given session.
    halt_probability: float = 0.0005
    #: Total log return one unit of planted score adds over the next `alpha_horizon` sessions.
    alpha_strength: float = 0.0033
    alpha_horizon: int = 10
    alpha_weights: tuple[tuple[str, float], ...] = DEFAULT_ALPHA_WEIGHTS
    #: False plants the linear, regime-independent score ``Σ weight × z`` (the market of MODEL_VERSION 1);
    #: True scales the weights by the hidden regime and the ret_5 term by the symbol's own volatility.
    alpha_state_dependence: bool = True
    alpha_regime_multipliers: tuple[tuple[str, tuple[float, ...]], ...] = DEFAULT_ALPHA_REGIME_MULTIPLIERS
    alpha_volatility_interaction: float = DEFAULT_ALPHA_VOLATILITY_INTERACTION
    #: Sessions between state checkpoints (also the size of a cached block); it never changes the data.
    checkpoint_interval: int = 64

    def __post_init__(self) -> None:
        problems = []
        if not 1 <= self.n_symbols <= 50_000:
            problems.append(f"n_symbols: {self.n_symbols} is not in 1..50000")
        if self.seed < 0:
            problems.append(f"seed: {self.seed} is negative")
        if self.history_end <= self.epoch:
            problems.append(f"history_end: {self.history_end} is not after epoch {self.epoch}")
        elif self.history_end > calendar.last_known_session():
            problems.append(
                f"history_end: {self.history_end} is after the calendar's last session {calendar.last_known_session()}"
            )
        if self.epoch < calendar.CALENDAR_START:
            problems.append(f"epoch: {self.epoch} is before the calendar's start {calendar.CALENDAR_START}")
        for name in ("ipo_fraction", "delist_fraction"):
            if not 0.0 <= getattr(self, name) <= 0.5:
                problems.append(f"{name}: {getattr(self, name)} is not in [0, 0.5]")
        if not 0.0 <= self.halt_probability <= 0.05:
            problems.append(f"halt_probability: {self.halt_probability} is not in [0, 0.05]")
        if self.alpha_strength < 0:
            problems.append(f"alpha_strength: {self.alpha_strength} is negative")
        if not 1 <= self.alpha_horizon <= 63:
            problems.append(f"alpha_horizon: {self.alpha_horizon} is not in 1..63")
        unknown = [name for name, _ in self.alpha_weights if name not in ALPHA_FEATURES]
        if unknown:
            problems.append(f"alpha_weights: unknown feature(s) {unknown}; known: {', '.join(ALPHA_FEATURES)}")
        for name, multipliers in self.alpha_regime_multipliers:
            if name not in ALPHA_FEATURES:
                problems.append(
                    f"alpha_regime_multipliers: unknown feature {name!r}; known: {', '.join(ALPHA_FEATURES)}"
                )
            elif len(multipliers) != len(REGIMES):
                problems.append(
                    f"alpha_regime_multipliers: {name} has {len(multipliers)} multipliers, not one per regime "
                    f"({', '.join(r.name for r in REGIMES)})"
                )
        if not 0.0 <= self.alpha_volatility_interaction <= 1.0 / 3.0:
            problems.append(
                f"alpha_volatility_interaction: {self.alpha_volatility_interaction} is not in [0, 1/3] "
                "(the ret_5 multiplier 1 + γ × v, |v| ≤ 3, must stay ≥ 0)"
            )
        if not 1 <= self.checkpoint_interval <= 1_000:
            problems.append(f"checkpoint_interval: {self.checkpoint_interval} is not in 1..1000")
        if problems:
            raise ConfigError("invalid SimulationConfig: " + "; ".join(problems))
