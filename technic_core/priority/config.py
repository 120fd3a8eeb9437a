"""What prioritization is configured by (`PriorityConfig`, `FactorWeights`) and the values it shares across
its modules: the signal threshold, the neutral score, the tiers and the fundamental reasons.

Tiers: high above 70, low below 40, medium in between (`tier_of`).
"""

from __future__ import annotations

import math

from pydantic import Field, field_validator, model_validator

from technic_core.config import StrictModel
from technic_core.scoring import SIGNAL_THRESHOLDS

#: The rating at which a symbol signals (Buy); what the plan tries to find early.
SIGNAL_THRESHOLD = SIGNAL_THRESHOLDS["Buy"]
#: A factor score meaning "no evidence either way".
NEUTRAL_SCORE = 50.0
#: Tier bounds on priority_score: high strictly above, low strictly below, medium in between (inclusive).
HIGH_TIER_ABOVE = 70.0
LOW_TIER_BELOW = 40.0
TIER_HIGH, TIER_MEDIUM, TIER_LOW = "high", "medium", "low"
TIERS = (TIER_HIGH, TIER_MEDIUM, TIER_LOW)

#: `fundamental_reason` values: why a symbol's fundamental score is what it is.
REASON_SURPRISE = "earnings_surprise"
REASON_NO_SURPRISE = "report_without_surprise"
REASON_NO_REPORT = "no_recent_report"
REASON_NO_SOURCE = "source_has_no_earnings"
FUNDAMENTAL_REASONS = (REASON_SURPRISE, REASON_NO_SURPRISE, REASON_NO_REPORT, REASON_NO_SOURCE)

FACTOR_COLUMNS = ("historical_score", "activity_score", "fundamental_score", "setup_score")


class FactorWeights(StrictModel):
    """Weight of each factor in priority_score: none negative, summing to 1 (so the score stays on 0–100)."""

    historical: float = 0.40
    activity: float = 0.30
    fundamental: float = 0.20
    setup: float = 0.10

    @field_validator("historical", "activity", "fundamental", "setup")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if not value >= 0:  # also rejects NaN
            raise ValueError(f"must be a number ≥ 0, got {value}")
        return value

    @model_validator(mode="after")
    def _sum_to_one(self) -> FactorWeights:
        total = self.historical + self.activity + self.fundamental + self.setup
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(
                f"weights must sum to 1, got {total:g} (historical {self.historical:g} + activity "
                f"{self.activity:g} + fundamental {self.fundamental:g} + setup {self.setup:g})"
            )
        return self

    def as_dict(self) -> dict[str, float]:
        """Weight by factor score column."""
        return dict(zip(FACTOR_COLUMNS, (self.historical, self.activity, self.fundamental, self.setup)))


class PriorityConfig(StrictModel):
    """How priorities are scored and planned. Build from untrusted input with `config.validated`, which turns
    a bad field into a `ConfigError` naming it."""

    weights: FactorWeights = Field(default_factory=FactorWeights)
    half_life_sessions: float = Field(
        0.5, gt=0, le=260, description="age (sessions) at which a past rating counts half as much as yesterday's"
    )
    history_sessions: int = Field(5, ge=1, le=260, description="past sessions of results the history reads")
    prior_weight: float = Field(
        0.01, ge=0, description="weight of the neutral prior, in units of a one-session-old observation"
    )
    alpha_tilt: float = Field(
        2.5, ge=0, le=30, description="rating points an alpha_score of 100 adds (and one of 0 takes away)"
    )
    fundamental_half_life_sessions: float = Field(1.0, gt=0, le=260, description="half-life of a surprise")
    earnings_lookback_sessions: int = Field(10, ge=1, le=260, description="sessions back a report still counts")
    exploration_share: float = Field(0.10, ge=0, le=0.5, description="share of each batch drawn from lower tiers")
    seed: int = Field(0, ge=0, description="seed of the exploration draw (combined with the session)")
    reorder: bool = Field(True, description="re-rank after each batch by sector and industry hit rates")
    reorder_strength: float = Field(20.0, ge=0, description="priority points per e-fold of a group's hit lift")
    reorder_prior_hits: float = Field(5.0, gt=0, description="pseudo-hits shrinking a group's lift toward 1")
