"""The embedded default market: a deterministic simulated US stock market.

Why simulate: pipelines, tests, benchmarks and ML evaluation need years of realistic daily data for
thousands of names without a vendor key, and ML needs a market whose predictable part is *known*, so a
model's skill can be measured against the truth instead of against noise.

In short: one day-by-day recursion over all symbols from `SimulationConfig.epoch`, each session's draws
seeded by (seed, day, stream) so any range is prefix-consistent; a static universe with IPOs, delistings,
halts and quarterly earnings; returns from a regime-switching GARCH market, sector and idiosyncratic
shocks and a planted, regime-dependent predictable part whose oracle is exact (`oracle_expected_return`,
for evaluation only). The model, its formulas and the reasons for them are in docs/simulated-market.md.

Layout: ``config.py`` `SimulationConfig` · ``parameters.py`` the model's fixed numbers · ``universe.py`` names
and earnings schedule · ``state.py`` recursion state and generated blocks · ``model.py`` one session of the
recursion · ``planted.py`` the planted score and its oracle · ``checkpoints.py`` persisted checkpoints ·
``source.py`` `SimulatedMarket`.
"""

from technic_core.sources.simulated.config import (
    ALPHA_FEATURES,
    DEFAULT_ALPHA_REGIME_MULTIPLIERS,
    DEFAULT_ALPHA_VOLATILITY_INTERACTION,
    DEFAULT_ALPHA_WEIGHTS,
    SimulationConfig,
)
from technic_core.sources.simulated.model import MODEL_VERSION
from technic_core.sources.simulated.parameters import REGIME_TRANSITIONS, REGIMES
from technic_core.sources.simulated.source import ORACLE_SCHEMA, REGIMES_SCHEMA, SimulatedMarket

# Checkpoints persisted before this module became a package pickled their state as
# `technic_core.sources.simulated._State`; the name keeps them loadable.
from technic_core.sources.simulated.state import _State  # noqa: F401  (isort: skip)

__all__ = [
    "ALPHA_FEATURES",
    "DEFAULT_ALPHA_REGIME_MULTIPLIERS",
    "DEFAULT_ALPHA_VOLATILITY_INTERACTION",
    "DEFAULT_ALPHA_WEIGHTS",
    "MODEL_VERSION",
    "ORACLE_SCHEMA",
    "REGIMES",
    "REGIMES_SCHEMA",
    "REGIME_TRANSITIONS",
    "SimulatedMarket",
    "SimulationConfig",
]
