"""Typed configuration: what a scan should do (`ScanConfig`) and where Technic runs (`Settings`).

Both reject unknown fields and out-of-range numbers with a message naming the field, so a typo in a request
or an environment variable fails loudly instead of silently scanning with defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from technic_core.errors import ConfigError

#: The 11 GICS sectors, as spelled everywhere in Technic.
SECTORS: tuple[str, ...] = (
    "Information Technology",
    "Health Care",
    "Financials",
    "Consumer Discretionary",
    "Communication Services",
    "Industrials",
    "Consumer Staples",
    "Energy",
    "Utilities",
    "Real Estate",
    "Materials",
)

#: Minimum market cap by sector, from the predecessor's tightened pre-screen (its Yahoo sector names mapped
#: to GICS): utilities are large by nature, REITs may be smaller.
DEFAULT_SECTOR_MIN_MARKET_CAP: dict[str, float] = {
    "Information Technology": 200e6,
    "Health Care": 200e6,
    "Financials": 300e6,
    "Consumer Discretionary": 150e6,
    "Industrials": 150e6,
    "Energy": 200e6,
    "Real Estate": 100e6,
    "Utilities": 500e6,
    "Materials": 150e6,
    "Communication Services": 200e6,
    "Consumer Staples": 200e6,
}


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ScreeningRules(StrictModel):
    """Pre-screen thresholds; each failing rule gives its own rejection reason."""

    min_price: float = Field(5.0, ge=0, description="reject below this close ($)")
    min_avg_dollar_volume: float = Field(1e6, ge=0, description="20-session mean of close × volume ($)")
    min_market_cap: float = Field(150e6, ge=0, description="floor for sectors not in the sector table ($)")
    sector_min_market_cap: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SECTOR_MIN_MARKET_CAP))
    max_price_to_dollar_volume: float = Field(
        1e-4, gt=0, description="close / avg dollar volume above this means too illiquid for the price"
    )
    max_daily_volatility: float = Field(0.15, gt=0, description="20-session std of daily returns")
    liquidity_window: int = Field(20, ge=2, le=260, description="sessions for dollar volume and volatility")
    reject_single_letter: bool = True
    min_history_sessions: int = Field(
        20, ge=1, le=260, description="sessions of bars a symbol needs before it can be screened"
    )

    @field_validator("sector_min_market_cap")
    @classmethod
    def _non_negative_caps(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if v < 0]
        if bad:
            raise ValueError(f"negative market-cap floor for {', '.join(bad)}")
        return value


class ScanConfig(StrictModel):
    """What one scan does. Defaults reproduce the daily market-open scan."""

    max_symbols: int | None = Field(None, ge=1, le=20_000, description="scan at most this many screened symbols")
    sectors: tuple[str, ...] | None = Field(None, description="restrict to these GICS sectors")
    lookback_sessions: int = Field(260, ge=30, le=1_000, description="sessions of history loaded per symbol")
    min_history_sessions: int = Field(
        30, ge=2, le=1_000, description="fewer bars than this and a symbol is rejected as too new"
    )
    min_tech_rating: float = Field(0.0, ge=0, le=100, description="drop results rated below this")
    max_signals: int | None = Field(None, ge=1, le=100_000, description="stop after this many Buy/Strong Buy")
    timeout_s: float | None = Field(None, gt=0, le=3_600, description="stop after this many seconds")
    batch_size: int = Field(250, ge=1, le=20_000, description="symbols per result batch")
    prioritize: bool = Field(True, description="scan the most promising symbols first")
    screening: ScreeningRules = Field(default_factory=ScreeningRules)

    @field_validator("sectors")
    @classmethod
    def _known_sectors(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = [s for s in value if s not in SECTORS]
        if unknown:
            raise ValueError(f"unknown sector(s) {unknown}; known: {', '.join(SECTORS)}")
        return value


class Settings(StrictModel):
    """Where and against what Technic runs; read from `TECHNIC_*` environment variables."""

    warehouse: Path = Field(Path("warehouse"), description="TECHNIC_WAREHOUSE: data root")
    source: str = Field("simulated", description="TECHNIC_SOURCE: simulated | polygon | files")
    sim_symbols: int = Field(5_000, ge=1, le=20_000, description="TECHNIC_SIM_SYMBOLS")
    sim_seed: int = Field(7, ge=0, description="TECHNIC_SIM_SEED")
    files_dir: Path | None = Field(None, description="TECHNIC_FILES_DIR")
    polygon_api_key: str | None = Field(None, repr=False, description="POLYGON_API_KEY")
    polygon_base_url: str = Field("https://api.polygon.io", min_length=1, description="POLYGON_BASE_URL")
    polygon_calls_per_minute: float = Field(
        5.0, ge=0, description="POLYGON_CALLS_PER_MINUTE: request rate limit (5 = free tier, 0 = no limit)"
    )
    polygon_reference_refresh_days: int = Field(
        28, ge=1, le=366, description="TECHNIC_POLYGON_REFERENCE_REFRESH_DAYS: reuse a ticker list this long"
    )
    polygon_details_refresh_days: int = Field(
        90, ge=1, le=3_660, description="TECHNIC_POLYGON_DETAILS_REFRESH_DAYS: refetch ticker details after this"
    )
    polygon_details_per_run: int | None = Field(
        None, ge=0, description="TECHNIC_POLYGON_DETAILS_PER_RUN: ticker-details calls per process (unset: auto)"
    )
    polygon_volatility_index: bool = Field(
        False,
        description="TECHNIC_POLYGON_VOLATILITY_INDEX: also fetch I:VIX (needs an indices plan; one more call a day)",
    )
    files_strict: bool = Field(True, description="TECHNIC_FILES_STRICT: fail on a bad file (false: skip it)")
    api_keys: tuple[str, ...] = Field(
        (), repr=False, description="TECHNIC_API_KEYS: comma-separated keys the API accepts in X-API-Key"
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        """The environment gives one comma-separated string; blanks around keys are typos, not key bytes."""
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Settings":
        env = os.environ if environ is None else environ
        names = {
            "warehouse": "TECHNIC_WAREHOUSE",
            "source": "TECHNIC_SOURCE",
            "sim_symbols": "TECHNIC_SIM_SYMBOLS",
            "sim_seed": "TECHNIC_SIM_SEED",
            "files_dir": "TECHNIC_FILES_DIR",
            "polygon_api_key": "POLYGON_API_KEY",
            "polygon_base_url": "POLYGON_BASE_URL",
            "polygon_calls_per_minute": "POLYGON_CALLS_PER_MINUTE",
            "polygon_reference_refresh_days": "TECHNIC_POLYGON_REFERENCE_REFRESH_DAYS",
            "polygon_details_refresh_days": "TECHNIC_POLYGON_DETAILS_REFRESH_DAYS",
            "polygon_details_per_run": "TECHNIC_POLYGON_DETAILS_PER_RUN",
            "polygon_volatility_index": "TECHNIC_POLYGON_VOLATILITY_INDEX",
            "files_strict": "TECHNIC_FILES_STRICT",
            "api_keys": "TECHNIC_API_KEYS",
        }
        values: dict[str, object] = {field: env[var] for field, var in names.items() if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return validated(cls, values)


def validated(model: type[StrictModel], values: Mapping[str, object]) -> StrictModel:
    """Build `model`, turning pydantic's error list into one `ConfigError` line per bad field."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or model.__name__}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid {model.__name__}: {problems}") from None
