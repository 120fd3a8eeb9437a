"""Reference data from Polygon: the point-in-time common-stock list, ticker details, SIC → GICS sectors.

Both are cached in the warehouse (`ticker_listings`, `ticker_details`); details are fetched within a
per-process budget, most liquid names first. See the package docstring (`technic_core.sources.polygon`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import polars as pl

from technic_core import schema
from technic_core.errors import DataSourceError
from technic_core.sources import SourceStats
from technic_core.sources.polygon.client import _PAGE_LIMIT, _Requester
from technic_core.sources.polygon.parsing import _details_row
from technic_core.warehouse import Warehouse

_log = logging.getLogger(__name__)

#: Without an explicit per-process details budget, spend this many minutes of the rate limit on details.
DETAILS_MINUTES_PER_RUN = 10

#: SIC code ranges → GICS sector, most specific first: the first range containing a code wins. SIC is what
#: Polygon's ticker details carry; the mapping follows the SIC divisions and moves the well-known exceptions
#: (pharma, semiconductors, software, REITs, media...) to the GICS sector they are reported under.
SIC_SECTORS: tuple[tuple[int, int, str], ...] = (
    (1000, 1099, "Materials"),  # metal mining
    (1200, 1399, "Energy"),  # coal, oil and gas extraction and services
    (1400, 1499, "Materials"),
    (1531, 1531, "Consumer Discretionary"),  # operative builders (homebuilders)
    (2830, 2836, "Health Care"),  # drugs, biologicals
    (2840, 2844, "Consumer Staples"),  # soap, cosmetics
    (2700, 2799, "Communication Services"),  # publishing
    (2000, 2199, "Consumer Staples"),  # food, beverages, tobacco
    (2200, 2399, "Consumer Discretionary"),  # textiles, apparel
    (2400, 2499, "Materials"),
    (2500, 2599, "Consumer Discretionary"),  # furniture
    (2600, 2699, "Materials"),
    (2800, 2899, "Materials"),  # chemicals
    (2900, 2999, "Energy"),  # refining
    (3000, 3099, "Materials"),  # rubber, plastics
    (3100, 3199, "Consumer Discretionary"),  # leather goods
    (3200, 3399, "Materials"),  # glass, primary metals
    (3400, 3499, "Industrials"),
    (3570, 3579, "Information Technology"),  # computers
    (3630, 3639, "Consumer Discretionary"),  # household appliances
    (3500, 3599, "Industrials"),  # machinery
    (3600, 3699, "Information Technology"),  # electronics, semiconductors, communications equipment
    (3710, 3716, "Consumer Discretionary"),  # motor vehicles
    (3750, 3751, "Consumer Discretionary"),  # motorcycles, bicycles
    (3700, 3799, "Industrials"),  # aircraft, ships, rail
    (3840, 3851, "Health Care"),  # medical instruments
    (3800, 3899, "Information Technology"),  # measuring, optical, photographic instruments
    (3900, 3999, "Consumer Discretionary"),  # jewelry, toys, sporting goods
    (1500, 1799, "Industrials"),  # construction
    (100, 999, "Consumer Staples"),  # agriculture, fishing
    (4800, 4899, "Communication Services"),
    (4950, 4959, "Industrials"),  # waste management
    (4900, 4999, "Utilities"),
    (4000, 4799, "Industrials"),  # transportation
    (5120, 5122, "Health Care"),  # drug wholesale
    (5140, 5149, "Consumer Staples"),  # grocery wholesale
    (5170, 5172, "Energy"),  # petroleum wholesale
    (5000, 5199, "Industrials"),  # wholesale
    (5400, 5499, "Consumer Staples"),  # food stores
    (5912, 5912, "Consumer Staples"),  # drug stores
    (5200, 5999, "Consumer Discretionary"),  # retail
    (6798, 6798, "Real Estate"),  # REITs
    (6500, 6599, "Real Estate"),
    (6000, 6799, "Financials"),
    (7370, 7379, "Information Technology"),  # software, computer services
    (7800, 7899, "Communication Services"),  # motion pictures
    (8000, 8099, "Health Care"),  # health services
    (8731, 8731, "Health Care"),  # biological research
    (7000, 7299, "Consumer Discretionary"),  # hotels, personal services
    (7500, 7599, "Consumer Discretionary"),  # auto services
    (7900, 7999, "Consumer Discretionary"),  # amusement, recreation
    (8200, 8299, "Consumer Discretionary"),  # education
    (7300, 8999, "Industrials"),  # business, engineering and management services
)


def sector_for_sic(code: str | None) -> str | None:
    """The GICS sector of a SIC code (`SIC_SECTORS`); None when the code is missing or unclassifiable."""
    if code is None or not code.strip().isdigit():
        return None
    number = int(code)
    return next((sector for low, high, sector in SIC_SECTORS if low <= number <= high), None)


class _ReferenceData:
    """Mixed into `PolygonSource`: the ticker list, the details and the session bars `reference` reads.

    Uses the source's `warehouse`, `stats`, `details_budget`, its caches (`_listings`, `_listing_sessions`,
    `_details`, `_grouped`), `_today`, `_reference_refresh`, `_details_refresh`, `_adjusted` and `_run`.
    """

    warehouse: Warehouse
    stats: SourceStats
    details_budget: float
    _listings: dict[dt.date, pl.DataFrame]
    _listing_sessions: list[dt.date] | None
    _details: pl.DataFrame | None
    _grouped: dict[dt.date, pl.DataFrame]
    _today: Callable[[], dt.date]
    _reference_refresh: dt.timedelta
    _details_refresh: dt.timedelta
    _adjusted: Callable[[pl.DataFrame], pl.DataFrame]
    _run: Callable[[Callable[[_Requester], Any]], Any]

    def _listing_for(self, session: dt.date) -> pl.DataFrame:
        """The cached ticker snapshot serving `session`, fetching and caching one dated `session` if none."""
        if self._listing_sessions is None:
            self._listing_sessions = self.warehouse.sessions("ticker_listings")
        usable = [d for d in self._listing_sessions if session - self._reference_refresh <= d <= session]
        if usable:
            self.stats.cache_hits += 1
            snapshot = usable[-1]
            if snapshot not in self._listings:
                self._listings[snapshot] = self.warehouse.read("ticker_listings", snapshot, snapshot)
            return self._listings[snapshot].select("symbol", "name")
        params = {
            "market": "stocks",
            "type": "CS",
            "active": "true",
            "date": session.isoformat(),
            "sort": "ticker",
            "order": "asc",
            "limit": str(_PAGE_LIMIT),
        }
        rows = self._run(lambda r: r.pages("/v3/reference/tickers", params, f"common stocks listed on {session}"))
        listing = pl.from_dicts(rows, schema={"ticker": pl.String, "name": pl.String}) if rows else pl.DataFrame()
        if listing.is_empty():
            raise DataSourceError(f"Polygon listed no common stocks on {session}; refusing to cache an empty universe")
        frame = (
            listing.rename({"ticker": "symbol"})
            .filter(pl.col("symbol").is_not_null())
            .unique("symbol", keep="first", maintain_order=True)
            .with_columns(pl.lit(session).alias("date"))
        )
        self.warehouse.write_partition("ticker_listings", session, frame)
        self._listing_sessions = sorted({*self._listing_sessions, session})
        self._listings[session] = schema.conform(frame, schema.TICKER_LISTINGS, "ticker_listings")
        return self._listings[session].select("symbol", "name")

    def _session_bars(self, session: dt.date) -> pl.DataFrame:
        """Split-adjusted bars of `session` from this process, else from the warehouse, else none."""
        if session in self._grouped:
            return self._adjusted(self._grouped[session])
        if self.warehouse.has_partition("bars", session):
            return self.warehouse.read("bars", session, session)
        return schema.empty(schema.BARS)

    def _details_table(self) -> pl.DataFrame:
        """Newest cached details row per symbol."""
        if self._details is None:
            cached = self.warehouse.read("ticker_details")
            self._details = cached.sort("date").unique("symbol", keep="last").sort("symbol")
        return self._details

    def _details_for(self, symbols: pl.Series, session_bars: pl.DataFrame) -> pl.DataFrame:
        """Details of `symbols`, fetching missing and stale ones first within the per-process budget.

        Order of fetching: never fetched before stale; then the session's dollar volume (most liquid first,
        as those are the names screening keeps); then symbol.
        """
        known = self._details_table()
        today = self._today()
        candidates = (
            pl.DataFrame({"symbol": symbols})
            .join(known.select("symbol", "date"), on="symbol", how="left")
            .join(
                session_bars.select("symbol", (pl.col("close") * pl.col("volume")).alias("dollar_volume")),
                on="symbol",
                how="left",
            )
            .filter(pl.col("date").is_null() | (pl.col("date") < today - self._details_refresh))
            .sort(
                [pl.col("date").is_not_null(), "date", "dollar_volume", "symbol"],
                descending=[False, False, True, False],
                nulls_last=[False, False, True, False],
            )
        )
        take = candidates.get_column("symbol").to_list()[: int(min(candidates.height, self.details_budget))]
        if take:
            self.details_budget -= len(take)
            self._store_details(self._fetch_details(take, today), today)
            if len(take) < candidates.height:
                _log.info(
                    "polygon details budget spent; symbols=%d wait for a later run (TECHNIC_POLYGON_DETAILS_PER_RUN)",
                    candidates.height - len(take),
                )
        elif not candidates.height:
            self.stats.cache_hits += 1
        return self._details_table().drop("date")

    def _fetch_details(self, symbols: list[str], today: dt.date) -> pl.DataFrame:
        async def one(requester: _Requester, symbol: str) -> dict[str, object]:
            payload = await requester.get_optional(f"/v3/reference/tickers/{symbol}", {}, f"ticker details of {symbol}")
            return _details_row(symbol, payload, today)

        rows = self._run(lambda requester: requester.each(symbols, lambda s: one(requester, s)))
        _log.info("polygon fetched details symbols=%d", len(rows))
        return pl.DataFrame(rows, schema=schema.TICKER_DETAILS)

    def _store_details(self, fetched: pl.DataFrame, today: dt.date) -> None:
        """Merge `fetched` into today's `ticker_details` partition (a second run today adds to it)."""
        existing = self.warehouse.read("ticker_details", today, today)
        merged = pl.concat([existing, fetched]).unique("symbol", keep="last", maintain_order=True)
        self.warehouse.write_partition("ticker_details", today, merged)
        self._details = (
            pl.concat([self._details_table(), fetched]).sort("date").unique("symbol", keep="last").sort("symbol")
        )


def _sector_mapping(details: pl.DataFrame) -> dict[str, str | None]:
    codes = details.get_column("sic_code").drop_nulls().unique().to_list()
    return {code: sector_for_sic(code) for code in codes}
