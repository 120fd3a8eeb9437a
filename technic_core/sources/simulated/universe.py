"""The simulated market's static side: its names (tickers, sectors, industries, company names, caps, listing
and delisting dates) and their earnings schedule, fixed per config — neither depends on the price path.
See docs/simulated-market.md.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import numpy as np

from technic_core.config import SECTORS
from technic_core.errors import ConfigError
from technic_core.sources import INDEX_SYMBOL, VOLATILITY_SYMBOL
from technic_core.sources.simulated.config import SimulationConfig
from technic_core.sources.simulated.parameters import (
    _MARKET_CAP_BOUNDS,
    _MEDIAN_MARKET_CAP,
    _STREAM_EARNINGS,
    _STREAM_UNIVERSE,
    _SURPRISE_CENTER,
    _SURPRISE_SCALE,
    _day_numbers,
)

#: `delist_index` of a name that never delists.
_NOT_DELISTED = np.iinfo(np.int64).max


class _SectorProfile(NamedTuple):
    share: float  # of all names
    volatility: float  # multiplier of idiosyncratic volatility
    beta: float  # mean market beta
    industries: tuple[str, ...]
    name_words: tuple[str, ...]  # words company names of the sector use


_SECTOR_PROFILES: dict[str, _SectorProfile] = {
    "Information Technology": _SectorProfile(
        0.14,
        1.15,
        1.20,
        (
            "Software",
            "Semiconductors & Semiconductor Equipment",
            "IT Services",
            "Technology Hardware, Storage & Peripherals",
            "Electronic Equipment, Instruments & Components",
        ),
        ("Systems", "Software", "Technologies", "Micro", "Networks", "Digital", "Semiconductor"),
    ),
    "Health Care": _SectorProfile(
        0.19,
        1.35,
        0.95,
        (
            "Biotechnology",
            "Pharmaceuticals",
            "Health Care Equipment & Supplies",
            "Health Care Providers & Services",
            "Life Sciences Tools & Services",
        ),
        ("Therapeutics", "Biosciences", "Pharmaceuticals", "Medical", "Health", "Genomics"),
    ),
    "Financials": _SectorProfile(
        0.15,
        0.85,
        1.05,
        ("Banks", "Capital Markets", "Insurance", "Consumer Finance", "Financial Services"),
        ("Financial", "Bancorp", "Capital", "Insurance", "Trust", "Partners"),
    ),
    "Consumer Discretionary": _SectorProfile(
        0.11,
        1.10,
        1.15,
        (
            "Specialty Retail",
            "Hotels, Restaurants & Leisure",
            "Automobiles",
            "Household Durables",
            "Textiles, Apparel & Luxury Goods",
        ),
        ("Brands", "Retail", "Motors", "Home", "Leisure", "Outfitters"),
    ),
    "Communication Services": _SectorProfile(
        0.05,
        1.05,
        1.00,
        ("Interactive Media & Services", "Entertainment", "Media", "Diversified Telecommunication Services"),
        ("Media", "Communications", "Entertainment", "Interactive", "Broadcasting"),
    ),
    "Industrials": _SectorProfile(
        0.14,
        0.95,
        1.05,
        ("Aerospace & Defense", "Machinery", "Building Products", "Professional Services", "Ground Transportation"),
        ("Industries", "Aerospace", "Logistics", "Machinery", "Engineering", "Controls"),
    ),
    "Consumer Staples": _SectorProfile(
        0.04,
        0.75,
        0.65,
        ("Food Products", "Beverages", "Household Products", "Consumer Staples Distribution & Retail"),
        ("Foods", "Beverage", "Consumer Products", "Farms", "Grocers"),
    ),
    "Energy": _SectorProfile(
        0.05,
        1.20,
        1.10,
        ("Oil, Gas & Consumable Fuels", "Energy Equipment & Services"),
        ("Energy", "Petroleum", "Resources", "Oilfield Services", "Midstream"),
    ),
    "Utilities": _SectorProfile(
        0.02,
        0.65,
        0.55,
        ("Electric Utilities", "Gas Utilities", "Multi-Utilities", "Water Utilities"),
        ("Power", "Electric", "Utilities", "Water"),
    ),
    "Real Estate": _SectorProfile(
        0.06,
        0.85,
        0.85,
        (
            "Residential REITs",
            "Industrial REITs",
            "Retail REITs",
            "Office REITs",
            "Real Estate Management & Development",
        ),
        ("Realty", "Properties", "Residential", "Land"),
    ),
    "Materials": _SectorProfile(
        0.05,
        1.00,
        1.05,
        ("Chemicals", "Metals & Mining", "Construction Materials", "Containers & Packaging"),
        ("Materials", "Chemicals", "Mining", "Minerals", "Packaging"),
    ),
}

_NAME_HEADS = (
    "Ar",
    "Bel",
    "Cor",
    "Dyn",
    "El",
    "Fen",
    "Gal",
    "Hel",
    "Ion",
    "Jun",
    "Kel",
    "Lum",
    "Mar",
    "Nov",
    "Or",
    "Pax",
    "Quin",
    "Ros",
    "Sol",
    "Tal",
    "Ul",
    "Ver",
    "Wes",
    "Xen",
    "Zen",
    "Alt",
    "Bri",
    "Cal",
    "Del",
    "Ever",
)
_NAME_TAILS = ("a", "ex", "ia", "on", "is", "ar", "en", "um", "o", "ix", "ant", "era", "ova", "eon", "ity")
_LEGAL_SUFFIXES = ("Inc.", "Corp.", "Holdings", "Group", "Co.", "Ltd.", "plc")

#: Ticker lengths 1–5 and their shares; letters weighted roughly like real first letters.
_TICKER_LENGTH_SHARES = np.array([0.003, 0.05, 0.40, 0.50, 0.047])
_LETTER_WEIGHTS = np.array([6, 5, 7, 5, 4, 4, 4, 3, 3, 2, 3, 4, 6, 4, 3, 5, 1, 4, 7, 4, 2, 3, 3, 1, 2, 1], dtype=float)
_CLASS_SHARE_SHARE = 0.003  # tickers like ABC.B
_DIGIT_TICKER_SHARE = 0.002  # invalid-looking tickers like AB2C, for the screener to reject
_RESERVED_TICKERS = {INDEX_SYMBOL, VOLATILITY_SYMBOL}


class _Universe:
    """Everything about the names that does not depend on the price path, drawn once per config."""

    def __init__(self, config: SimulationConfig, session_days: np.ndarray) -> None:
        rng = np.random.default_rng([config.seed, _STREAM_UNIVERSE])
        n = config.n_symbols
        self.size = n
        self.tickers = np.sort(self._draw_tickers(rng, n))
        profiles = [_SECTOR_PROFILES[sector] for sector in SECTORS]
        shares = np.array([p.share for p in profiles])
        self.sector = rng.choice(len(SECTORS), size=n, p=shares / shares.sum())
        industry_pick = rng.random(n)
        self.sector_names = np.array(SECTORS)[self.sector]
        self.industry_names = np.array(
            [profiles[s].industries[int(u * len(profiles[s].industries))] for s, u in zip(self.sector, industry_pick)]
        )
        self.company_names = self._draw_company_names(rng, profiles)

        log_cap = np.log(_MEDIAN_MARKET_CAP) + 1.8 * rng.standard_normal(n)
        cap = np.clip(np.exp(log_cap), *_MARKET_CAP_BOUNDS)
        size_score = np.log(cap / _MEDIAN_MARKET_CAP)
        log_price = np.log(25.0) + 0.45 * size_score + 0.7 * rng.standard_normal(n)
        ipo_log_price = np.log(18.0) + 0.25 * size_score + 0.4 * rng.standard_normal(n)
        ipo_names = rng.choice(n, size=round(config.ipo_fraction * n), replace=False)
        is_ipo = np.zeros(n, dtype=bool)
        is_ipo[ipo_names] = True
        self.start_price = np.where(
            is_ipo, np.clip(np.exp(ipo_log_price), 4.0, 80.0), np.clip(np.exp(log_price), 0.5, 2_000.0)
        )
        self.shares = np.maximum(np.round(cap / self.start_price), 1_000).astype(np.int64)

        sector_volatility = np.array([p.volatility for p in profiles])[self.sector]
        self.volatility = np.clip(
            0.021 * np.exp(-0.12 * size_score + 0.25 * rng.standard_normal(n)) * sector_volatility, 0.006, 0.08
        )
        sector_beta = np.array([p.beta for p in profiles])[self.sector]
        self.beta = np.clip(sector_beta + 0.3 * rng.standard_normal(n), 0.3, 2.0)
        self.sector_loading = np.clip(1.0 + 0.25 * rng.standard_normal(n), 0.3, 1.8)
        turnover = np.clip(0.0045 * np.exp(0.35 * rng.standard_normal(n)), 0.0015, 0.012)
        self.base_volume = turnover * self.shares
        self.trade_size = np.exp(rng.uniform(np.log(60.0), np.log(300.0), n))
        # Small caps halt more often: twice the average at $50M, half at the top.
        self.halt_weight = np.clip(np.exp(-0.18 * size_score), 0.5, 2.0)
        self.earnings_offset = rng.integers(0, 41, n)

        self._draw_listing_dates(rng, config, session_days, ipo_names, cap)

    @staticmethod
    def _draw_tickers(rng: np.random.Generator, count: int) -> np.ndarray:
        """Unique tickers, never the index or volatility symbols; three candidates per name leave room for
        the duplicates random letters produce."""
        candidates = 3 * count + 64
        lengths = rng.choice(np.arange(1, 6), size=candidates, p=_TICKER_LENGTH_SHARES)
        codes = (rng.choice(26, size=(candidates, 7), p=_LETTER_WEIGHTS / _LETTER_WEIGHTS.sum()) + ord("A")).astype(
            np.uint8
        )
        with_digit = (rng.random(candidates) < _DIGIT_TICKER_SHARE) & (lengths >= 3)
        digit_position = rng.integers(1, np.maximum(lengths, 2))
        codes[with_digit, digit_position[with_digit]] = ord("0") + rng.integers(0, 10, with_digit.sum())
        class_share = (rng.random(candidates) < _CLASS_SHARE_SHARE) & (lengths <= 4) & ~with_digit
        codes[class_share, lengths[class_share]] = ord(".")
        lengths = np.where(class_share, lengths + 2, lengths)
        codes[np.arange(7)[None, :] >= lengths[:, None]] = 0
        tickers = codes.view("S7").ravel().astype("U7")
        _, first = np.unique(tickers, return_index=True)
        ordered = tickers[np.sort(first)]
        ordered = ordered[~np.isin(ordered, list(_RESERVED_TICKERS))]
        if len(ordered) < count:
            raise ConfigError(f"n_symbols: could not draw {count} unique tickers")
        return ordered[:count]

    def _draw_company_names(self, rng: np.random.Generator, profiles: list[_SectorProfile]) -> np.ndarray:
        """ "<Stem> <sector word> <legal suffix>", e.g. "Novex Therapeutics Inc."."""
        n = self.size
        heads = rng.integers(0, len(_NAME_HEADS), n)
        tails = rng.integers(0, len(_NAME_TAILS), n)
        words = rng.random(n)
        suffixes = rng.integers(0, len(_LEGAL_SUFFIXES), n)
        return np.array(
            [
                f"{_NAME_HEADS[h]}{_NAME_TAILS[t]} "
                f"{profiles[s].name_words[int(w * len(profiles[s].name_words))]} {_LEGAL_SUFFIXES[x]}"
                for h, t, s, w, x in zip(heads, tails, self.sector, words, suffixes)
            ]
        )

    def _draw_listing_dates(
        self,
        rng: np.random.Generator,
        config: SimulationConfig,
        session_days: np.ndarray,
        ipo_names: np.ndarray,
        cap: np.ndarray,
    ) -> None:
        """Listing and delisting session indices (into the simulated sessions), and the displayed list date.

        Names listed at the epoch get a historical list date between 1980 and the epoch. IPO dates are
        stratified — one in each equal slice of (epoch, history_end] — so every stretch of history sees its
        share of new names, even in a small universe. Delistings need 180 calendar days of listing and
        favour small caps.
        """
        n = self.size
        first_day = int(session_days[0])
        last_day = int(_day_numbers(np.array([config.history_end]))[0])
        strata = (np.arange(len(ipo_names)) + rng.random(len(ipo_names))) / max(len(ipo_names), 1)
        ipo_day = first_day + 1 + (strata * (last_day - first_day)).astype(np.int64)
        self.list_index = np.zeros(n, dtype=np.int64)
        self.list_index[ipo_names] = np.searchsorted(session_days, ipo_day, side="left")
        is_ipo = self.list_index > 0

        historical_start = int(_day_numbers(np.array([dt.date(1980, 1, 2)]))[0])
        historical = np.busday_offset(
            rng.integers(historical_start, first_day - 7, n).astype("datetime64[D]"), 0, roll="forward"
        )
        listed_day = np.where(is_ipo, session_days[self.list_index], _day_numbers(historical))
        self.list_date = listed_day.astype("datetime64[D]")

        earliest_delist_day = np.maximum(first_day + 30, listed_day + 180)
        eligible = np.flatnonzero(earliest_delist_day < last_day)
        weights = cap[eligible] ** -0.35
        count = min(round(config.delist_fraction * n), len(eligible))
        delisted = rng.choice(eligible, size=count, replace=False, p=weights / weights.sum())
        room = np.maximum(last_day + 1 - earliest_delist_day, 0)
        delist_day = earliest_delist_day + (rng.random(n) * room).astype(np.int64)
        self.delist_index = np.full(n, _NOT_DELISTED, dtype=np.int64)
        self.delist_index[delisted] = np.searchsorted(session_days, delist_day[delisted], side="left")
        lead = rng.integers(5, 31, n)
        self.announce_index = np.where(
            self.delist_index == _NOT_DELISTED, _NOT_DELISTED, np.maximum(self.delist_index - lead, self.list_index + 1)
        )

    def listed(self, session_index: int) -> np.ndarray:
        return (self.list_index <= session_index) & (session_index < self.delist_index)


class _EarningsSchedule:
    """Quarterly report sessions and surprises of every name, fixed per config (they never depend on prices).

    A name reports in each season (from the 12th day of January, April, July and October) on its own
    offset of 0–40 days, jittered ±3 days per quarter and moved to the next session; reports before
    listing or without a listed session after them are dropped. Each quarter has its own generator, so the
    schedule of a quarter never depends on how many quarters the calendar covers.
    """

    def __init__(self, config: SimulationConfig, universe: _Universe, session_days: np.ndarray) -> None:
        epoch = dt.date.fromisoformat(str(session_days[0].astype("datetime64[D]")))
        last = dt.date.fromisoformat(str(session_days[-1].astype("datetime64[D]")))
        symbols, sessions, surprises = [], [], []
        first_quarter = 4 * epoch.year + (epoch.month - 1) // 3
        last_quarter = 4 * last.year + (last.month - 1) // 3
        for quarter in range(last_quarter - first_quarter + 1):
            year, quarter_of_year = divmod(first_quarter + quarter, 4)
            rng = np.random.default_rng([config.seed, _STREAM_EARNINGS, quarter])
            season = _day_numbers(np.array([dt.date(year, 3 * quarter_of_year + 1, 12)]))[0]
            day = season + universe.earnings_offset + rng.integers(-3, 4, universe.size)
            surprise = np.round(_SURPRISE_CENTER + _SURPRISE_SCALE * rng.standard_t(3, universe.size), 2)
            index = np.searchsorted(session_days, day, side="left")
            keep = (
                (day >= session_days[0])
                & (index + 1 < len(session_days))
                & (universe.list_index <= index)
                & (index + 1 < universe.delist_index)
            )
            symbols.append(np.flatnonzero(keep))
            sessions.append(index[keep])
            surprises.append(np.clip(surprise[keep], -150.0, 300.0))
        symbol = np.concatenate(symbols)
        session = np.concatenate(sessions).astype(np.int64)
        order = np.lexsort((symbol, session))
        self.symbol, self.session, self.surprise = symbol[order], session[order], np.concatenate(surprises)[order]

    def between(self, first: int, last: int) -> slice:
        """Rows of the reports made at the close of sessions first..last (indices, inclusive)."""
        lo = np.searchsorted(self.session, first, side="left")
        hi = np.searchsorted(self.session, last, side="right")
        return slice(int(lo), int(hi))
