"""The web page in a real browser (headless Chromium) against a real `technic serve`.

Results: the table fills with the newest session's rows, sorts, and follows a typed or saved screen; a bad
screen shows the API's message at the position it names; a batch file landing in the warehouse shows up
without a reload, also through a server restart, and the session's end is shown. Symbols: candles, moving
averages and the indicator chart are drawn, with the latest rating and recent screen hits. Screens: every
saved screen with its hits and performance. Ad-hoc scans stream into the page. At phone width nothing
overflows sideways, and the table and charts work from the keyboard. Every test fails on a console error.
"""

from __future__ import annotations

import time
from typing import Any

import polars as pl
import pytest

from technic_core.screens import ScreenLibrary
from technic_core.screens.evaluation import result_columns
from technic_core.screens.language import ScreenError, compile
from tests.web.conftest import PHONE
from tests.web.support import API_KEY, ServeProcess, WebWarehouse

#: A live batch must reach the page well within this (bench/web.py measures the real figure).
LIVE_DEADLINE_S = 5.0
#: Reconnecting after a server restart waits for the browser's retry delay (about 3 s) first.
RESUME_DEADLINE_S = 20.0

VISIBLE_ROWS = """(host) => {
  const root = document.querySelector(host);
  const keys = [...root.querySelectorAll('thead button')].map((b) => b.dataset.key);
  return [...root.querySelectorAll('tbody tr[data-index]')].map((tr) =>
    Object.fromEntries([...tr.children].map((td, i) => [keys[i], td.textContent])));
}"""

INKED_PIXELS = """(selector) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let inked = 0;
  for (let i = 3; i < data.length; i += 4) if (data[i]) inked++;
  return inked;
}"""


def latest_rows(warehouse: WebWarehouse) -> pl.DataFrame:
    session = warehouse.store.sessions("results")[-1]
    return warehouse.store.read("results", session, session)


def screened(rows: pl.DataFrame, expression: str) -> pl.DataFrame:
    return compile(expression, result_columns()).apply(rows)


def wait_for_count(page: Any, count: int, timeout_s: float = LIVE_DEADLINE_S) -> None:
    page.wait_for_function(
        "(count) => document.querySelector('main').dataset.state === 'ready'"
        " && document.querySelector('#row-count').dataset.count === String(count)",
        arg=count,
        timeout=timeout_s * 1000,
    )


def open_results(page: Any, hash_: str = "#/results") -> None:
    page.goto(f"/{hash_}")
    page.wait_for_selector("main[data-view=results][data-state=ready]")


def apply_screen(page: Any, expression: str) -> None:
    page.fill("#where", expression)
    page.press("#where", "Enter")


# ------------------------------------------------------------------------------------------ results


def test_results_table_fills_with_the_newest_session_best_rated_first(page, web_warehouse):
    rows = latest_rows(web_warehouse)
    open_results(page)
    wait_for_count(page, rows.height)
    expected = rows.sort(["tech_rating", "symbol"], descending=[True, False], nulls_last=True)
    shown = page.evaluate(VISIBLE_ROWS, "#results-table")
    assert shown, "no rows rendered"
    assert [row["symbol"] for row in shown[:10]] == expected.get_column("symbol").head(10).to_list()
    assert page.get_attribute("main", "data-session") == str(web_warehouse.live_session)


def test_clicking_headers_sorts_and_sorts_again_in_reverse(page, web_warehouse):
    rows = latest_rows(web_warehouse)
    open_results(page)
    wait_for_count(page, rows.height)
    page.click("#results-table thead button[data-key=symbol]")
    symbols = sorted(rows.get_column("symbol").to_list())
    assert [row["symbol"] for row in page.evaluate(VISIBLE_ROWS, "#results-table")][:15] == symbols[:15]
    page.click("#results-table thead button[data-key=symbol]")
    assert [row["symbol"] for row in page.evaluate(VISIBLE_ROWS, "#results-table")][:15] == symbols[::-1][:15]
    assert page.get_attribute("#results-table th:has(button[data-key=symbol])", "aria-sort") == "descending"
    page.click("#results-table thead button[data-key=rsi]")  # numbers sort high to low first
    rsi = [float(row["rsi"]) for row in page.evaluate(VISIBLE_ROWS, "#results-table") if row["rsi"]]
    assert rsi == sorted(rsi, reverse=True)
    assert "sort=rsi" not in page.url and "sort=-rsi" in page.url


def test_a_typed_screen_and_a_saved_screen_change_the_rows(page, web_warehouse):
    rows = latest_rows(web_warehouse)
    open_results(page)
    apply_screen(page, "rsi > 55 and close > sma_50")
    expected = screened(rows, "rsi > 55 and close > sma_50")
    assert 0 < expected.height < rows.height, "the test screen should select some rows, not all"
    wait_for_count(page, expected.height)
    shown = {row["symbol"] for row in page.evaluate(VISIBLE_ROWS, "#results-table")}
    assert shown <= set(expected.get_column("symbol").to_list())
    assert "where=" in page.url

    library = ScreenLibrary(web_warehouse.store).load().screens
    plain = [s for s in library.values() if not s.compile(result_columns()).prev_columns]
    saved = max(plain, key=lambda s: (screened(rows, s.expression).height, s.name))
    page.select_option("#saved-screen", saved.name)
    wait_for_count(page, screened(rows, saved.expression).height)
    assert page.input_value("#where") == saved.expression
    assert f"screen={saved.name}" in page.url

    with page.expect_download() as download:  # the rows as shown, every one of them
        page.click("#download-results")
    csv = pl.read_csv(download.value.path())
    assert csv.height == screened(rows, saved.expression).height
    assert {"symbol", "tech_rating", "signal"} <= set(csv.columns)


def test_a_typed_screen_is_saved_from_the_page_and_offered_as_a_saved_screen(page, console, web_warehouse):
    console.allow(r"status of 401 .*\[.*/screens/")  # the first attempt, before the key is given
    rows = latest_rows(web_warehouse)
    open_results(page)
    expression = "rsi < 45 and close > sma_50"
    apply_screen(page, expression)
    wait_for_count(page, screened(rows, expression).height)

    page.click("#save-screen")
    page.fill("#save-name", "page-oversold")
    page.fill("#save-title", "Oversold above the 50-day")
    page.click("#save-confirm")
    page.wait_for_selector("#save-error:not([hidden])")  # no key yet: the API's refusal, shown in the dialog
    page.click("#save-dialog button[value=cancel]")

    page.click("#key-button")
    page.fill("#key-input", API_KEY)
    page.click("#key-dialog button[value=save]")
    open_results(page, f"#/results?where={expression}")
    page.click("#save-screen")
    page.fill("#save-name", "page-oversold")
    page.fill("#save-title", "Oversold above the 50-day")
    page.click("#save-confirm")
    page.wait_for_function("() => location.hash.includes('screen=page-oversold')")
    assert page.input_value("#saved-screen") == "page-oversold"
    saved = ScreenLibrary(web_warehouse.store).load().screens["page-oversold"]
    assert saved.expression == expression and saved.title == "Oversold above the 50-day"
    wait_for_count(page, screened(rows, expression).height)


def test_an_invalid_screen_shows_the_api_message_at_its_position(page, console):
    console.allow(r"status of 422 .*\[.*/results/.*where=")  # the browser logs the API's 422 answer itself
    open_results(page)
    text = "rsi > 50 and (close >"
    with pytest.raises(ScreenError) as problem:
        compile(text, result_columns())
    apply_screen(page, text)
    page.wait_for_selector("#where-error:not([hidden])")
    message = page.inner_text("#where-error .message")
    assert problem.value.message in message
    assert f"line {problem.value.line}, column {problem.value.column}" in message
    caret = page.inner_text("#where-error .where-context").splitlines()
    assert caret[-1].index("^") == problem.value.column - 1
    assert page.evaluate("document.querySelector('#where').selectionStart") == problem.value.position
    assert page.get_attribute("#where", "aria-invalid") == "true"
    assert page.get_attribute("main", "data-state") == "error"

    apply_screen(page, "rsii > 50")  # an unknown name: the API's suggestions are offered
    page.wait_for_selector("#where-error button.suggestion[data-name=rsi]")
    page.click("#where-error button.suggestion[data-name=rsi]")
    page.wait_for_selector("main[data-state=ready]")
    assert page.input_value("#where") == "rsi > 50"
    assert page.is_hidden("#where-error")


def test_live_batches_appear_without_reload_and_survive_a_server_restart(
    page, console, web_warehouse: WebWarehouse, server: ServeProcess
):
    """Sorted by seq descending, each landed batch's rows show at the top, counted once."""
    # While the server is away the browser logs its refused reconnection attempts itself.
    console.allow(r"ERR_CONNECTION_REFUSED \[.*/events/results/")
    assert len(web_warehouse.pending) >= 3, "the warehouse keeps three batches back for this test"
    open_results(page, "#/results?sort=-seq")
    count = latest_rows(web_warehouse).height
    wait_for_count(page, count)

    landed = web_warehouse.land_next_batch()
    started = time.monotonic()
    wait_for_count(page, count + landed.height)
    assert time.monotonic() - started < LIVE_DEADLINE_S
    top = page.evaluate(VISIBLE_ROWS, "#results-table")[0]
    assert top["symbol"] == landed.sort("seq").get_column("symbol")[-1]
    assert "Live" in page.inner_text("#live-state")

    # With a screen on, the page follows the stream screened by it (`?where=`): only the rows it selects arrive.
    expression = "rsi > 50"
    apply_screen(page, expression)
    wait_for_count(page, screened(latest_rows(web_warehouse), expression).height)
    web_warehouse.land_next_batch()
    wait_for_count(page, screened(latest_rows(web_warehouse), expression).height)

    # A dropped connection: the server goes away while a batch lands, and comes back on the same port.
    server.stop()
    web_warehouse.land_next_batch()
    server.start()
    wait_for_count(page, screened(latest_rows(web_warehouse), expression).height, RESUME_DEADLINE_S)

    # The pipeline records the scan: the stream ends and the page says so.
    web_warehouse.finish_live_session(latest_rows(web_warehouse).height)
    page.wait_for_function(
        "() => document.querySelector('#live-state').textContent.includes('complete')", timeout=LIVE_DEADLINE_S * 1000
    )


def test_chosen_columns_are_shown_and_kept(page, web_warehouse):
    rows = latest_rows(web_warehouse).sort(["tech_rating", "symbol"], descending=[True, False], nulls_last=True)
    open_results(page)
    page.click("#choose-columns")
    page.fill("#column-filter", "adx")
    assert page.is_hidden("#column-list label[data-name=sector]")
    page.check("#column-list input[value=adx_14]")
    page.fill("#column-filter", "name")
    page.uncheck("#column-list input[value=name]")
    page.click("#columns-apply")
    page.wait_for_selector("#results-table thead button[data-key=adx_14]")
    page.wait_for_selector("main[data-state=ready]")
    assert not page.is_visible("#results-table thead button[data-key=name]")
    first = page.evaluate(VISIBLE_ROWS, "#results-table")[0]
    assert first["adx_14"] == f"{rows.get_column('adx_14')[0]:.1f}"
    page.reload()
    page.wait_for_selector("main[data-state=ready] #results-table thead button[data-key=adx_14]")


def test_keyboard_moves_through_rows_and_opens_a_symbol(page, web_warehouse):
    open_results(page, "#/results?sort=symbol")
    symbols = sorted(latest_rows(web_warehouse).get_column("symbol").to_list())
    page.focus("#results-table table")
    page.keyboard.press("ArrowDown")  # the first row became active on focus; this is the second
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector("main[data-view=symbol][data-state=ready]")
    assert page.url.endswith(f"#/symbol/{symbols[2]}")


# ------------------------------------------------------------------------------------------ symbols


def test_symbol_page_draws_candles_averages_and_indicator_history(page, web_warehouse):
    rows = latest_rows(web_warehouse).sort("tech_rating", descending=True, nulls_last=True)
    symbol = rows.get_column("symbol")[0]
    page.goto(f"/#/symbol/{symbol}")
    page.wait_for_selector("main[data-view=symbol][data-state=ready]")
    assert int(page.get_attribute("#price-chart canvas", "data-drawn")) == 252
    assert page.evaluate(INKED_PIXELS, "#price-chart canvas") > 5_000
    assert page.evaluate(INKED_PIXELS, "#indicator-chart canvas") > 500
    readout = page.inner_text("#price-readout")
    assert readout.startswith(str(web_warehouse.live_session))
    assert "SMA 50" in readout and "SMA 200" in readout
    stats = page.inner_text("#latest-stats")
    assert f"{rows.get_column('tech_rating')[0]:.1f}" in stats
    assert rows.get_column("signal")[0] in page.inner_text("#symbol-signal")

    hits = web_warehouse.store.read("screens").filter(pl.col("symbol") == symbol)
    if hits.height:
        assert set(page.locator("#screen-hits a").all_inner_texts()) == set(hits.get_column("screen").to_list())

    page.focus("#price-chart canvas")  # the cursor walks back one session per ←
    page.keyboard.press("End")
    page.keyboard.press("ArrowLeft")
    bars = web_warehouse.store.read("bars").filter(pl.col("symbol") == symbol).sort("date")
    assert page.inner_text("#price-readout").startswith(str(bars.get_column("date")[-2]))

    page.click(".ranges button[data-range='3M']")
    page.wait_for_function("() => document.querySelector('#price-chart canvas').dataset.drawn === '63'")
    assert "range=3M" in page.url
    page.select_option("#indicator-select", "rsi")
    assert page.inner_text("#indicator-readout").startswith(str(web_warehouse.live_session))


def test_unknown_symbol_says_so(page, console):
    console.allow(r"status of 404 .*\[.*/symbols/ZZZZ/")
    page.goto("/#/symbol/ZZZZ")
    page.wait_for_selector("main[data-view=symbol][data-state=error]")
    assert "unknown symbol ZZZZ" in page.inner_text("#latest-panel")


# ------------------------------------------------------------------------------------------ screens


def test_screens_list_hits_and_performance_with_a_chart(page, web_warehouse):
    library = ScreenLibrary(web_warehouse.store).load().screens
    newest = web_warehouse.store.sessions("screens")[-1]
    hits = web_warehouse.store.read("screens", newest, newest).group_by("screen").len()
    page.goto("/#/screens")
    page.wait_for_selector("main[data-view=screens][data-state=ready]")
    assert page.get_attribute("#screens-table", "data-rows") == str(len(library))
    shown = {row["title"]: row["hits"] for row in page.evaluate(VISIBLE_ROWS, "#screens-table")}
    for screen, count in hits.iter_rows():
        if library[screen].title in shown:
            assert shown[library[screen].title] == str(count)
    assert page.evaluate(INKED_PIXELS, "#screens-chart canvas") > 1_000

    best = hits.sort(["len", "screen"], descending=[True, False]).get_column("screen")[0]
    page.click(f"#screens-table a[href='#/screens/{best}']")
    page.wait_for_selector("main[data-view=screens][data-state=ready] #screen-expression")
    assert page.inner_text("#screen-expression") == library[best].expression
    assert page.get_attribute("#hits-table", "data-rows") == str(hits.filter(pl.col("screen") == best)["len"][0])


# ------------------------------------------------------------------------------------------ ad-hoc scans


def test_an_ad_hoc_scan_streams_into_the_page(page, console):
    console.allow(r"status of 422 .*\[.*/scan/stream\]")  # the refused screen below
    page.goto("/#/scan")
    page.wait_for_selector("#scan-form")
    page.fill("#scan-key", API_KEY)
    page.fill("#max-symbols", "30")
    page.fill("#batch-size", "10")
    page.fill("#scan-where", "rsi >")
    page.click("#start-scan")
    page.wait_for_selector("#scan-where-error:not([hidden])")
    assert "(line 1, column 6)" in page.inner_text("#scan-where-error .message")
    assert page.evaluate("document.querySelector('#scan-where').selectionStart") == len("rsi >")

    page.fill("#scan-where", "rsi > 0")
    page.click("#start-scan")
    page.wait_for_selector("main[data-state=ended]", timeout=30_000)
    assert page.is_hidden("#scan-where-error")
    assert "complete" in page.inner_text("#scan-state") or "max_signals" in page.inner_text("#scan-state")
    assert int(page.get_attribute("#scan-count", "data-count")) > 0
    assert all(float(row["rsi"]) > 0 for row in page.evaluate(VISIBLE_ROWS, "#scan-table"))
    assert "#/scan/adhoc-" in page.url


# ------------------------------------------------------------------------------------------ phone width


@pytest.mark.parametrize("page", [PHONE], indirect=True)
def test_phone_width_scrolls_only_the_table_sideways(page, web_warehouse):
    open_results(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.is_visible("#results-table tbody tr[data-index]")
    symbol = latest_rows(web_warehouse).get_column("symbol")[0]
    page.goto(f"/#/symbol/{symbol}")
    page.wait_for_selector("main[data-view=symbol][data-state=ready]")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.evaluate(INKED_PIXELS, "#price-chart canvas") > 2_000
    page.goto("/#/screens")
    page.wait_for_selector("main[data-view=screens][data-state=ready]")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert (
        page.evaluate("document.querySelector('#screens-chart canvas').getBoundingClientRect().right") <= PHONE["width"]
    )
