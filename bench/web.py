"""The web page's speed in a real browser: time to interactive with a session of about 5,000 results, and how
long a live batch takes from its file's rename in the warehouse to its rows on the page.

A real `technic serve` (tests.web.support.ServeProcess) over a simulated warehouse whose newest complete
session holds `--rows` results, and a newest session still landing; headless Chromium through Playwright
(Debian's /usr/bin/chromium).

* Time to interactive: a fresh page navigates to that session's results; the figure is the page's own
  `technic:results-ready` mark (every row loaded, sorted and the first screenful rendered) measured from the
  navigation's start. Also the time a header click takes to re-sort and render, and to render after a jump
  to the end of the table.
* Live latency: the page shows the live session sorted by seq, newest first, so each new batch's rows are
  the first rows drawn; a MutationObserver notes the wall-clock instant the batch's last row is in the DOM,
  and the writer notes the instant `Warehouse.write_result_batch` returned (its rename is the write's last
  step). Half the batches land with no screen on, half with one (`rsi > 50`), whose new rows the page has
  to ask the API for.

Figures are medians over `--runs` (and over the batches); `bench/results/web.json`. Not asserted anywhere.

    python bench/web.py [--rows 5000] [--runs 7] [--live-batches 12]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests.web`, shared with the browser tests

from tests.web.conftest import CHROMIUM, CHROMIUM_ARGS, DESKTOP
from tests.web.support import ServeProcess, build_web_warehouse

RESULTS = Path(__file__).parent / "results" / "web.json"
#: Share of the simulated symbols the default screening rules pass (what the scan then rates), measured.
PASS_RATE = 0.75
SCREEN = "rsi > 50"

ARM_SEEN = """(seq) => { window.technicSeen = new Promise((resolve) => {
  const found = () => document.querySelector(`#results-table tr[data-key="${seq}"]`);
  const stamp = () => performance.timeOrigin + performance.now();
  if (found()) return resolve(stamp());
  const observer = new MutationObserver(() => {
    if (found()) { observer.disconnect(); resolve(stamp()); }
  });
  observer.observe(document.querySelector('#results-table tbody'), { childList: true });
}); }"""

TIMED_SORT = """() => new Promise((resolve) => {
  const started = performance.now();
  document.querySelector('#results-table thead button[data-key=rsi]').click();
  requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - started)));
})"""

TIMED_END = """() => new Promise((resolve) => {
  const started = performance.now();
  const table = document.querySelector('#results-table table');
  table.focus();
  table.dispatchEvent(new KeyboardEvent('keydown', { key: 'End', bubbles: true }));
  requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - started)));
})"""


def median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)], 1)


def time_to_interactive(browser: Any, base_url: str, session: str, runs: int) -> dict[str, Any]:
    ready, sorts, ends, rows = [], [], [], 0
    for _ in range(runs + 1):  # the first run warms the server's caches and is left out
        context = browser.new_context(viewport=DESKTOP, base_url=base_url)
        page = context.new_page()
        page.goto(f"/#/results/{session}")
        page.wait_for_selector("main[data-state=ready]", timeout=60_000)
        mark = page.evaluate("performance.getEntriesByName('technic:results-ready')[0].startTime")
        rows = int(page.get_attribute("#row-count", "data-count") or 0)
        sort = page.evaluate(TIMED_SORT)
        end = page.evaluate(TIMED_END)
        context.close()
        ready.append(mark)
        sorts.append(sort)
        ends.append(end)
    ready, sorts, ends = ready[1:], sorts[1:], ends[1:]
    return {
        "rows": rows,
        "time_to_interactive_ms": median(ready),
        "time_to_interactive_p90_ms": p90(ready),
        "sort_ms": median(sorts),
        "jump_to_end_ms": median(ends),
        "runs_ms": [round(value, 1) for value in ready],
    }


def live_latency(browser: Any, base_url: str, warehouse: Any, batches: int) -> dict[str, Any]:
    context = browser.new_context(viewport=DESKTOP, base_url=base_url)
    page = context.new_page()
    page.goto(f"/#/results/{warehouse.live_session}?sort=-seq")
    page.wait_for_selector("main[data-state=ready]", timeout=60_000)
    page.wait_for_function("() => document.querySelector('main').dataset.live === 'live'")
    plain: list[float] = []
    screened: list[float] = []
    batch_rows = warehouse.pending[0].height
    for number in range(batches):
        if number == batches // 2:
            page.fill("#where", SCREEN)
            page.press("#where", "Enter")
            page.wait_for_selector("main[data-state=ready]")
            page.wait_for_function("() => document.querySelector('main').dataset.live === 'live'")
        frame = warehouse.pending[0]
        expected = frame if number < batches // 2 else frame.filter(frame["rsi"] > 50)
        if expected.height == 0:
            warehouse.land_next_batch()
            continue
        last_seq = int(expected["seq"].max())
        page.evaluate(ARM_SEEN, last_seq)  # armed before the file lands
        warehouse.land_next_batch()
        landed = time.time() * 1000
        seen_at = page.evaluate("() => window.technicSeen")
        (plain if number < batches // 2 else screened).append(seen_at - landed)
        time.sleep(0.3)
    context.close()
    return {
        "live_batch_rows": batch_rows,
        "live_latency_ms": median(plain),
        "live_latency_p90_ms": p90(plain),
        "live_latency_with_screen_ms": median(screened) if screened else None,
        "live_latency_with_screen_p90_ms": p90(screened) if screened else None,
        "live_latency_runs_ms": [round(value, 1) for value in plain],
        "live_latency_with_screen_runs_ms": [round(value, 1) for value in screened],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000, help="results of the measured session (about)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--live-batches", type=int, default=12)
    arguments = parser.parse_args()
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    batch_size = 250
    symbols = math.ceil(arguments.rows / PASS_RATE)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="technic-bench-web-") as directory:
        started = time.perf_counter()
        warehouse = build_web_warehouse(
            Path(directory) / "warehouse",
            n_symbols=symbols,
            bar_sessions=260,
            scanned_sessions=2,
            batch_size=batch_size,
            live_batches_written=1,
        )
        built_s = time.perf_counter() - started
        if len(warehouse.pending) < arguments.live_batches:
            sys.exit(f"only {len(warehouse.pending)} live batches to land; ask for fewer or more rows")
        server = ServeProcess(warehouse.root, Path(directory) / "serve.log")
        base_url = server.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                session = str(warehouse.complete_sessions[-1])
                figures = time_to_interactive(browser, base_url, session, arguments.runs)
                figures |= live_latency(browser, base_url, warehouse, arguments.live_batches)
                chromium_version = browser.version
                browser.close()
        finally:
            server.stop()
    report = {
        **figures,
        "simulated_symbols": symbols,
        "batch_size": batch_size,
        "runs": arguments.runs,
        "live_batches": arguments.live_batches,
        "screen_for_live": SCREEN,
        "warehouse_build_s": round(built_s, 1),
        "chromium": chromium_version,
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, {os.cpu_count()} CPUs",
        # The machine may be shared: its 1-minute load average before and after the measurement.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "notes": "time_to_interactive: the page's technic:results-ready mark from navigation start (all rows "
        "loaded and sorted, first screen drawn); live_latency: file rename → the batch's last row in the DOM.",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({key: value for key, value in report.items() if not key.endswith("runs_ms")}, indent=2))


if __name__ == "__main__":
    main()
