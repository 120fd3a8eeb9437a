"""Typed configuration: what a scan should do (`ScanConfig`) and where Technic runs (`Settings`).

Both reject out-of-range values with a message naming the culprit, so a typo fails loudly instead of
silently scanning with defaults: `ScanConfig` names the field (and rejects unknown ones), `Settings` the
environment variable.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from technic_core.errors import ConfigError

if TYPE_CHECKING:
    from technic_core.screens.language import Screen

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


#: Most symbols an ad-hoc scan's watchlist (`ScanConfig.symbols`) may name.
MAX_WATCHLIST = 5_000


def where_screen(text: str) -> Screen:
    """A scan's `where` compiled against the result columns (`technic_core.schema.RESULTS`); raises the
    language's `ScreenError`. Compiled once per text."""
    return _compiled_where(text)


@lru_cache(maxsize=256)
def _compiled_where(text: str) -> Screen:
    from technic_core import schema
    from technic_core.screens.language import column_kinds, compile

    return compile(text, column_kinds(schema.RESULTS))


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
    symbols: tuple[str, ...] | None = Field(
        None,
        min_length=1,
        max_length=MAX_WATCHLIST,
        description=f"a watchlist: scan only these of the screened universe (at most {MAX_WATCHLIST:,}; tickers "
        "such as AAPL or BRK.B, case-insensitive)",
    )
    where: str | None = Field(
        None,
        description="a screen (docs/screens.md), e.g. `rsi < 30 and close > sma_200`: results are the rows it "
        "selects; `max_signals` counts their buy signals",
    )

    @field_validator("sectors")
    @classmethod
    def _known_sectors(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        unknown = [s for s in value if s not in SECTORS]
        if unknown:
            raise ValueError(f"unknown sector(s) {unknown}; known: {', '.join(SECTORS)}")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _watchlist_text(cls, value: object) -> object:
        """Tickers as written, upper-cased and stripped; duplicates keep their first place."""
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return tuple(dict.fromkeys(item.strip().upper() for item in value))
        return value

    @field_validator("symbols")
    @classmethod
    def _tickers(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        from technic_core.screening import SYMBOL_PATTERN  # imports this module

        pattern = re.compile(SYMBOL_PATTERN)
        bad = [symbol for symbol in value if not pattern.match(symbol)]
        if bad:
            shown = ", ".join(repr(symbol[:20]) for symbol in bad[:10]) + (
                f" and {len(bad) - 10} more" if len(bad) > 10 else ""
            )
            raise ValueError(f"not a ticker (1–5 letters, optionally .X or -X, as in BRK.B): {shown}")
        return value

    @field_validator("where")
    @classmethod
    def _screen(cls, value: str | None) -> str | None:
        """Compiled against the result columns now, so a scan never starts with a screen it cannot apply; a
        refusal carries the screen language's place (`position`, `line`, `column`, `expected`) in its context."""
        if value is None or not value.strip():
            return None
        from technic_core.screens.language import ScreenError  # the screens package imports the warehouse, this

        try:
            where_screen(value)
        except ScreenError as error:
            raise PydanticCustomError("screen", "{detail}", {"detail": str(error), **error.to_dict()}) from None
        return value


#: A URI whose '//' was lost, as `pathlib.Path` prints one (`Path("s3://b/w")` is `s3:/b/w`); two or more
#: letters, so a Windows drive is never one, and `file:/abs` is a valid file URI, so that scheme is exempt.
_COLLAPSED_URI = re.compile(r"^(?!file:)(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/(?P<rest>[^/].*)$", re.IGNORECASE)

#: The environment `from_env` was given in place of the process's (None: the process's, and `.env`). A
#: context variable because `settings_customise_sources` takes no per-call argument; each thread and task has
#: its own, so concurrent loads cannot see each other's.
_GIVEN_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("technic_given_environ", default=None)

#: pydantic's message per error type, reworded for someone who set an environment variable.
_PROBLEMS = {
    "greater_than_equal": "must be ≥ {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be ≤ {le}",
    "less_than": "must be < {lt}",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "string_too_short": "must not be empty",
}


class _GivenEnvironment(EnvSettingsSource):
    """The variables of a mapping instead of `os.environ`, read by the same rules (prefix, aliases, case).

    `_load_env_vars` is where pydantic-settings' own `.env` source substitutes its variables too.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class TechnicSettings(BaseSettings):
    """Environment-backed settings: keyword arguments, then the variables, then `.env` in the working
    directory (when there is one), then the defaults.

    Variables this class does not know are ignored rather than rejected: the process environment and one
    `.env` file are shared by `Settings`, `api.settings.ApiSettings`, Dagster and AWS/GCP clients.
    """

    model_config = SettingsConfigDict(
        env_prefix="TECHNIC_",
        env_file=".env",
        # An empty variable means unset, as `VAR= command` is commonly used to clear one.
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        validate_default=True,
        # Aliases name variables; keyword arguments and Dagster resources use the field names.
        validate_by_name=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _GIVEN_ENVIRON.get()
        if environ is None:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        # A given environment stands for the whole configuration: neither the process's variables nor
        # `.env` may fill in what it leaves out.
        return init_settings, _GivenEnvironment(settings_cls, environ)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Self:
        """Settings from `environ` (default: the process environment and `.env`), with `overrides` (field
        names; None means "not overridden") on top; `ConfigError` naming each bad variable if invalid."""
        unknown = sorted(set(overrides) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"invalid {cls.__name__}: unknown setting(s) {', '.join(unknown)}")
        token = _GIVEN_ENVIRON.set(environ)
        try:
            # `model_validate` calls the settings' own `__init__` (pydantic does for a model that overrides it),
            # which reads the sources; unlike `cls(**values)` it takes the values as one mapping, not as
            # keyword arguments the type checker would match against BaseSettings' `_env_file`-style options.
            return cls.model_validate({name: value for name, value in overrides.items() if value is not None})
        except ValidationError as exc:
            problems = "; ".join(cls._describe(error) for error in exc.errors())
            raise ConfigError(f"invalid {cls.__name__}: {problems}") from None
        finally:
            _GIVEN_ENVIRON.reset(token)

    @classmethod
    def env_names(cls, name: str) -> tuple[str, ...]:
        """The environment variable(s) that set field `name`, preferred first."""
        alias = cls.model_fields[name].validation_alias
        if isinstance(alias, AliasChoices):
            return tuple(str(choice) for choice in alias.choices)
        return (f"{cls.model_config['env_prefix']}{name}".upper(),)

    @classmethod
    def _describe(cls, error: ErrorDetails) -> str:
        """'VARIABLE (field): problem'. The value itself is left out: it may be a key."""
        key = str(error["loc"][0]) if error["loc"] else ""
        name = next((field for field in cls.model_fields if key == field or key in cls.env_names(field)), None)
        template = _PROBLEMS.get(error["type"])
        ctx = error.get("ctx", {})
        bounds = {bound: f"{value:g}" if isinstance(value, float) else value for bound, value in ctx.items()}
        problem = template.format(**bounds) if template else error["msg"].removeprefix("Value error, ")
        if name is None:
            return f"{key or cls.__name__}: {problem}"
        return f"{' or '.join(cls.env_names(name))} ({name}): {problem}"


class Settings(TechnicSettings):
    """Where and against what Technic runs: `TECHNIC_*` variables (field name upper-cased after the prefix,
    e.g. `TECHNIC_SIM_SYMBOLS`); the Polygon ones also under their vendor-style names (`POLYGON_API_KEY`)."""

    warehouse: str = Field(
        "warehouse",
        min_length=1,
        description=(
            "data root: a directory ('/abs/path', 'relative/path', 'file:///abs/path') or an object-store URI "
            "('s3://bucket/prefix', 'gs://...', any fsspec scheme such as 'memory://'); see technic_core.storage"
        ),
    )
    source: str = Field("simulated", description="simulated | polygon | files")
    sim_symbols: int = Field(5_000, ge=1, le=20_000, description="simulated market size")
    sim_seed: int = Field(7, ge=0, description="simulated market seed")
    sim_epoch: dt.date | None = Field(
        None, description="simulated market's first session, YYYY-MM-DD (unset: the market's own, 2018-01-02)"
    )
    files_dir: Path | None = Field(None, description="'files' source: directory of CSV or Parquet files")
    files_strict: bool = Field(True, description="'files' source: fail on a bad file (false: skip it)")
    polygon_api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("TECHNIC_POLYGON_API_KEY", "POLYGON_API_KEY"),
        description="'polygon' source: API key, sent as a Bearer header",
    )
    polygon_base_url: str = Field(
        "https://api.polygon.io",
        min_length=1,
        validation_alias=AliasChoices("TECHNIC_POLYGON_BASE_URL", "POLYGON_BASE_URL"),
        description="'polygon' source: API root (a proxy or a test server)",
    )
    polygon_calls_per_minute: float = Field(
        5.0,
        ge=0,
        validation_alias=AliasChoices("TECHNIC_POLYGON_CALLS_PER_MINUTE", "POLYGON_CALLS_PER_MINUTE"),
        description="request rate limit (5 = free tier, 0 = no limit)",
    )
    polygon_reference_refresh_days: int = Field(28, ge=1, le=366, description="reuse a ticker list this long")
    polygon_details_refresh_days: int = Field(90, ge=1, le=3_660, description="refetch ticker details after this")
    polygon_details_per_run: int | None = Field(
        None, ge=0, description="ticker-details calls per process (unset: auto)"
    )
    polygon_volatility_index: bool = Field(
        False, description="also fetch I:VIX (needs an indices plan; one more call a day)"
    )
    polygon_limit_dir: Path | None = Field(
        None,
        description=(
            "directory of the rate-limit state every process using the key shares (unset: the system temp "
            "directory; a shared volume spans machines)"
        ),
    )
    # NoDecode: the variable is a comma-separated list, not the JSON pydantic-settings expects for a tuple.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="comma-separated keys the API accepts in X-API-Key"
    )

    @field_validator("warehouse", mode="before")
    @classmethod
    def _warehouse_text(cls, value: object) -> object:
        """A local root may come as a `Path`; the field keeps text so that a URI's '//' is never collapsed."""
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @field_validator("warehouse")
    @classmethod
    def _not_a_collapsed_uri(cls, value: str) -> str:
        """'s3:/bucket' would otherwise be a local directory named 's3:'; it is a URI that went through
        `pathlib.Path` (or a typo), so say how to write it."""
        match = _COLLAPSED_URI.match(value)
        if match:
            scheme, rest = match["scheme"], match["rest"]
            raise ValueError(f"{value!r} lacks a '/' after '{scheme}:' (pathlib drops it); write {scheme}://{rest}")
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        """The environment gives one comma-separated string; blanks around keys are typos, not key bytes."""
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value


class AlertSettings(TechnicSettings):
    """When a data team is told that something is wrong: the webhook notifications and the scan's deadline.

    Apart from `Settings` because the code location reads these when it loads (the deadline is part of the
    freshness policy, a definition) and the sensors at each tick: a bad source or warehouse variable must
    fail the runs that use it, not the loading of every definition.
    """

    alert_webhook_url: SecretStr | None = Field(
        None,
        description=(
            "Slack-compatible incoming webhook notified of failed runs and an overdue scan (unset: no "
            "notifications); secret, as such URLs carry their token"
        ),
    )
    dagster_ui_url: str | None = Field(
        None, min_length=1, description="base URL of the Dagster UI, for links to runs in notifications"
    )
    scan_overdue_minutes: int = Field(
        60,
        ge=1,
        # the deadline stays inside the regular session (09:30-16:00), so it is one cron tick a weekday
        le=390,
        description="minutes after the 09:30 New York open by which the session's scan_results must exist",
    )

    @field_validator("alert_webhook_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


def validated(model: type[StrictModel], values: Mapping[str, object]) -> StrictModel:
    """Build `model`, turning pydantic's error list into one `ConfigError` line per bad field."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or model.__name__}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid {model.__name__}: {problems}") from None
