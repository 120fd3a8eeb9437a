"""Polygon.io's REST API as a market-data source: grouped daily bars, point-in-time tickers, splits.

Why this shape
--------------
* **One call per session.** The grouped-daily endpoint returns every US stock's bar for a date, so a
  one-year backfill is ~252 calls where a per-symbol loop needs one per symbol (5,000+); a daily update is
  one grouped call plus one splits call (a third, `I:VIX`, only when `volatility_index` is switched on).
  Per-ticker ranges remain for targeted repair of a few symbols (`ticker_bars`, or `bars(..., symbols=[...])`
  when that takes fewer calls).
* **Splits applied here.** Bars are requested unadjusted and adjusted locally from `/v3/reference/splits`:
  Polygon's own adjustment depends on the day of the request, so two fetches of one session a month apart
  would disagree. Stored bars are kept in the share basis of every split in a journal
  (`<warehouse>/polygon/splits.json`); when the journal learns a split, the stored `bars` and `index_bars`
  partitions before it are restated locally (prices × split_from / split_to, volume ÷ that), guarded by each
  file's hash so an interrupted restatement resumes without adjusting anything twice. The journal is state,
  not cache: deleting it forgets which splits the stored bars already include.
* **Sessions in New York.** Grouped bars are stamped 16:00 New York, per-ticker bars midnight New York; the
  session is the New York calendar date of the stamp (`calendar.session_of`'s rule, vectorized).
* **Calls are budgeted.** A token bucket (`POLYGON_CALLS_PER_MINUTE`, 0 = unlimited) spaces requests and
  honours `Retry-After`; 429s, 5xx, timeouts, network errors and malformed JSON are retried with exponential
  backoff and full jitter, with bounded concurrency. After the last attempt a `DataSourceError` names the
  endpoint and date, and since a source only returns whole ranges, the asset writes no partition.
* **Caches.** In the process: grouped bars per session and volatility-index bars. In the warehouse:
  `ticker_listings` (the point-in-time common-stock list, reused for `polygon_reference_refresh_days`) and
  `ticker_details` (SIC code and share count, refetched after `polygon_details_refresh_days`, at most
  `polygon_details_per_run` per process so the free tier's 5 calls a minute are not spent for hours on
  details; the rest follow in later runs, most liquid first). Every request counts in `stats.api_calls`;
  every session, list or range answered without one counts in `stats.cache_hits`.

What the protocol gets
----------------------
`bars` holds every ticker of the grouped response (common stocks, ETFs, preferreds, warrants...): the
warehouse keeps what the vendor priced, and `reference` (common stocks only) decides what is screened.
`reference` market caps are shares outstanding (from details) × the session's split-adjusted close;
`delist_date` stays null (Polygon does not announce delistings); sectors map SIC codes to GICS sectors.
`index_bars` takes `INDEX_SYMBOL` (SPY) from the grouped bars, and the volatility index from `I:VIX` only when
`volatility_index` is on (`TECHNIC_POLYGON_VOLATILITY_INDEX`). It is off by default because the free tier
has no indices access (the call would be refused every run) and because it is the one call a daily update
does not otherwise need; without it market conditions use SPY's realized volatility. Switched on but refused
by the plan, it logs one warning and returns no volatility rows instead of failing the run. `earnings` is
always empty: Polygon's stock plans have no earnings calendar.

Layout
------
``client.py`` rate limit, retry policy and the requests of one batch · ``shared_limit.py`` the rate limit's
state shared by every process of a machine (a locked file per key) · ``splits.py`` the split record, split
adjustment and the split journal · ``restatement.py`` keeping the journal current and restating stored
partitions · ``reference.py`` ticker list, ticker details and SIC → GICS sectors · ``parsing.py`` responses
as frames and records · ``source.py`` `PolygonSource` itself and its bar requests.
"""

from technic_core.sources.polygon.client import (
    DEFAULT_BASE_URL,
    MAX_RETRY_AFTER_S,
    NotEntitledError,
    RetryPolicy,
    TokenBucket,
    retry_after_seconds,
)
from technic_core.sources.polygon.reference import DETAILS_MINUTES_PER_RUN, SIC_SECTORS, sector_for_sic
from technic_core.sources.polygon.source import VOLATILITY_TICKER, PolygonSource
from technic_core.sources.polygon.splits import JOURNAL_PATH, Split, SplitJournal, adjust_for_splits, splits_frame

__all__ = [
    "DEFAULT_BASE_URL",
    "DETAILS_MINUTES_PER_RUN",
    "JOURNAL_PATH",
    "MAX_RETRY_AFTER_S",
    "SIC_SECTORS",
    "VOLATILITY_TICKER",
    "NotEntitledError",
    "PolygonSource",
    "RetryPolicy",
    "Split",
    "SplitJournal",
    "TokenBucket",
    "adjust_for_splits",
    "retry_after_seconds",
    "sector_for_sic",
    "splits_frame",
]
