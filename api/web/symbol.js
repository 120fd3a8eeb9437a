// Symbol: price candles with SMA 50/200 and volume over a chosen range, an indicator's stored history, the
// latest rating and signal, and the saved screens the symbol hit recently.
//
// One history request covers the range plus 199 earlier sessions, so the 200-session average is drawn from
// the range's first day; the averages are computed here from the closes (the stored sma_50/sma_200 exist
// only on scanned sessions).

import { download, getJSON, listOf, url } from './api.js';
import { LineChart, PriceChart, sma } from './chart.js';
import { columnCatalog } from './data.js';
import { escapeHtml, formatCompact, formatPercent, formatPrice, formatterFor, labelOf, signalClass } from './format.js';

export const RANGES = [
  ['1M', 21],
  ['3M', 63],
  ['6M', 126],
  ['1Y', 252],
  ['2Y', 504],
  ['5Y', 1260],
];
const DEFAULT_RANGE = '1Y';
const WARM_UP = 199;
/** Indicators offered under the price chart: [column, how to draw]. */
const INDICATORS = {
  tech_rating: { range: [0, 100], guides: [50] },
  rsi: { range: [0, 100], guides: [30, 70] },
  macd_hist: { bars: true },
  macd: { with: 'macd_signal' },
  adx_14: { guides: [25] },
  stoch_k: { range: [0, 100], guides: [20, 80], with: 'stoch_d' },
  cci_20: { guides: [-100, 100] },
  mfi_14: { range: [0, 100], guides: [20, 80] },
  bb_pct_b: { guides: [0, 1] },
  rel_volume: { guides: [1] },
  consensus_rating: { range: [-1, 1], guides: [0] },
  alpha_score: {},
};
const LATEST_FIELDS = ['tech_rating', 'signal', 'consensus_signal', 'rsi', 'change_1d', 'rel_volume', 'atr_pct', 'adx_14', 'alpha_score'];
const COLUMNS = [
  'date', 'open', 'high', 'low', 'close', 'volume', 'name', 'sector', 'industry',
  ...new Set([...Object.keys(INDICATORS), 'macd_signal', 'stoch_d', ...LATEST_FIELDS]),
];

function column(rows, name) {
  return rows.map((row) => (row[name] === undefined ? null : row[name]));
}

export function render(main, route) {
  const state = { symbol: '', range: DEFAULT_RANGE, indicator: 'tech_rating', rows: [], shown: [], ticket: 0 };
  main.innerHTML = `
    <section class="symbol" aria-labelledby="symbol-title">
      <div class="symbol-head">
        <h1 id="symbol-title"></h1>
        <span id="symbol-name" class="meta"></span>
        <span id="symbol-price" class="price"></span>
        <span id="symbol-change"></span>
        <span id="symbol-signal"></span>
      </div>
      <div class="view-head">
        <div class="ranges" role="group" aria-label="Range">
          ${RANGES.map(([label]) => `<button type="button" data-range="${label}" aria-pressed="false">${label}</button>`).join('')}
        </div>
        <button type="button" class="secondary" id="download-csv">Download CSV</button>
        <span class="status" id="symbol-status" aria-live="polite"></span>
      </div>
      <div class="symbol-grid">
        <div>
          <div class="legend" aria-hidden="true">
            <span><span class="swatch price"></span>Price</span>
            <span><span class="swatch sma50"></span>SMA 50</span>
            <span><span class="swatch sma200"></span>SMA 200</span>
          </div>
          <div class="chart" id="price-chart"></div>
          <output class="readout" id="price-readout" for="price-chart"></output>
          <h2><label for="indicator-select">Indicator history</label></h2>
          <select id="indicator-select">
            ${Object.keys(INDICATORS).map((name) => `<option value="${name}">${escapeHtml(labelOf(name))}</option>`).join('')}
          </select>
          <p class="note">Values stored by the scan on the sessions it scanned this symbol.</p>
          <div class="chart" id="indicator-chart"></div>
          <output class="readout" id="indicator-readout" for="indicator-chart"></output>
        </div>
        <aside>
          <div class="panel" id="latest-panel"><h2>Latest rating</h2><p class="note">Loading…</p></div>
          <div class="panel" id="screens-panel"><h2>Screens hit recently</h2><p class="note">Loading…</p></div>
        </aside>
      </div>
    </section>`;
  const $ = (selector) => main.querySelector(selector);
  const status = $('#symbol-status');
  const colors = getComputedStyle(document.documentElement);
  const priceReadout = $('#price-readout');
  const indicatorReadout = $('#indicator-readout');
  let catalog = new Map();

  const priceChart = new PriceChart($('#price-chart'), {
    label: 'Price candles with SMA 50 and SMA 200, and volume',
    onCursor: (index) => showPrice(index),
  });
  const indicatorChart = new LineChart($('#indicator-chart'), {
    label: 'Indicator history',
    onCursor: (index) => showIndicator(index),
  });

  function showPrice(index) {
    const rows = state.shown;
    const at = index ?? rows.length - 1;
    const row = rows[at];
    if (!row) {
      priceReadout.textContent = '';
      return;
    }
    const parts = [
      row.date,
      `O ${formatPrice(row.open)}  H ${formatPrice(row.high)}  L ${formatPrice(row.low)}  C ${formatPrice(row.close)}`,
      `Vol ${formatCompact(row.volume)}`,
    ];
    if (state.sma50[at] !== null) parts.push(`SMA 50 ${formatPrice(state.sma50[at])}`);
    if (state.sma200[at] !== null) parts.push(`SMA 200 ${formatPrice(state.sma200[at])}`);
    priceReadout.textContent = parts.join(' · ');
  }

  function showIndicator(index) {
    const rows = state.shown;
    const name = state.indicator;
    const format = formatterFor(name, catalog.get(name));
    let at = index;
    if (at === null || at === undefined) {
      at = rows.length - 1;
      while (at >= 0 && (rows[at][name] === null || rows[at][name] === undefined)) at--;
    }
    const row = rows[at];
    if (!row) {
      indicatorReadout.textContent = 'Not scanned in this range.';
      return;
    }
    const value = row[name];
    const extra = INDICATORS[name].with;
    const second = extra && row[extra] !== null && row[extra] !== undefined ? ` · ${labelOf(extra)} ${formatterFor(extra, catalog.get(extra))(row[extra])}` : '';
    indicatorReadout.textContent = `${row.date} · ${labelOf(name)} ${value === null || value === undefined ? 'not scanned' : format(value)}${second}`;
  }

  function drawIndicator() {
    const name = state.indicator;
    const spec = INDICATORS[name];
    const series = [{ label: labelOf(name), values: column(state.shown, name), color: colors.getPropertyValue('--accent').trim(), bars: spec.bars }];
    if (spec.with) series.push({ label: labelOf(spec.with), values: column(state.shown, spec.with), color: colors.getPropertyValue('--sma50').trim() });
    indicatorChart.canvas.setAttribute('aria-label', `${labelOf(name)} history of ${state.symbol}`);
    indicatorChart.setData({ dates: column(state.shown, 'date'), series, guides: spec.guides || [], range: spec.range || null });
    showIndicator(null);
  }

  function draw() {
    const rows = state.rows;
    const closes = column(rows, 'close');
    const sma50 = sma(closes, 50);
    const sma200 = sma(closes, 200);
    const sessions = Object.fromEntries(RANGES)[state.range];
    const start = Math.max(0, rows.length - sessions);
    state.shown = rows.slice(start);
    state.sma50 = sma50.slice(start);
    state.sma200 = sma200.slice(start);
    const shown = state.shown;
    priceChart.setData({
      dates: column(shown, 'date'),
      open: column(shown, 'open'),
      high: column(shown, 'high'),
      low: column(shown, 'low'),
      close: column(shown, 'close'),
      volume: column(shown, 'volume'),
      overlays: [
        { label: 'SMA 50', values: state.sma50, color: colors.getPropertyValue('--sma50').trim() },
        { label: 'SMA 200', values: state.sma200, color: colors.getPropertyValue('--sma200').trim() },
      ],
    });
    priceChart.canvas.setAttribute(
      'aria-label',
      `${state.symbol} daily candles from ${shown[0]?.date ?? ''} to ${shown.at(-1)?.date ?? ''}, with SMA 50, SMA 200 and volume`,
    );
    showPrice(null);
    drawIndicator();
    status.textContent = `${shown.length} sessions, ${shown[0]?.date ?? ''} – ${shown.at(-1)?.date ?? ''}`;
  }

  function showHeader() {
    const rows = state.rows;
    const last = rows.at(-1);
    const previous = rows.at(-2);
    const named = [...rows].reverse().find((row) => row.name);
    $('#symbol-title').textContent = state.symbol;
    $('#symbol-name').textContent = named ? `${named.name}${named.sector ? ` · ${named.sector}` : ''}` : '';
    $('#symbol-price').textContent = last ? formatPrice(last.close) : '';
    const change = last && previous && previous.close ? last.close / previous.close - 1 : null;
    const changeBox = $('#symbol-change');
    changeBox.textContent = change === null ? '' : `${change >= 0 ? '+' : ''}${formatPercent(change)} on ${last.date}`;
    changeBox.className = change === null ? '' : change >= 0 ? 'up' : 'down';
    const rated = [...rows].reverse().find((row) => row.tech_rating !== null && row.tech_rating !== undefined);
    $('#symbol-signal').innerHTML = rated && rated.signal ? `<span class="badge ${signalClass(rated.signal)}">${escapeHtml(rated.signal)}</span>` : '';
    const panel = $('#latest-panel');
    if (!rated) {
      panel.innerHTML = '<h2>Latest rating</h2><p class="note">Not scanned in this range.</p>';
      return;
    }
    const stats = LATEST_FIELDS.filter((name) => rated[name] !== null && rated[name] !== undefined).map((name) => {
      const value = rated[name];
      const text = name.endsWith('signal') ? value : formatterFor(name, catalog.get(name))(value);
      return `<div class="stat"><b class="${name.endsWith('signal') ? signalClass(value) : ''}">${escapeHtml(text)}</b><span>${escapeHtml(labelOf(name))}</span></div>`;
    });
    panel.innerHTML = `<h2>Latest rating</h2><p class="note">Scanned on <time>${escapeHtml(rated.date)}</time></p><div class="stats" id="latest-stats">${stats.join('')}</div>`;
  }

  async function loadScreens(ticket) {
    const panel = $('#screens-panel');
    try {
      const body = await getJSON(`/symbols/${encodeURIComponent(state.symbol)}/screens`);
      if (ticket !== state.ticket) return;
      const hits = listOf(body, 'hits');
      if (!hits.length) {
        panel.innerHTML = `<h2>Screens hit recently</h2><p class="note">No saved screen selected ${escapeHtml(state.symbol)}${body.from ? ` between ${escapeHtml(body.from)} and ${escapeHtml(body.to)}` : ''}.</p>`;
        return;
      }
      const days = new Map();
      for (const hit of hits) {
        if (!days.has(hit.date)) days.set(hit.date, []);
        days.get(hit.date).push(hit);
      }
      panel.innerHTML = `<h2>Screens hit recently</h2><div id="screen-hits">${[...days]
        .map(
          ([date, items]) =>
            `<div class="hit-day"><time>${escapeHtml(date)}</time><ul class="chips">${items
              .map((hit) => `<li><a href="#/screens/${encodeURIComponent(hit.screen)}" title="rank ${hit.rank ?? '?'}">${escapeHtml(hit.screen)}</a></li>`)
              .join('')}</ul></div>`,
        )
        .join('')}</div>`;
    } catch (error) {
      if (ticket === state.ticket) panel.innerHTML = `<h2>Screens hit recently</h2><p class="error-note">${escapeHtml(error.message)}</p>`;
    }
  }

  async function load() {
    const ticket = ++state.ticket;
    main.dataset.state = 'loading';
    status.textContent = 'Loading…';
    $('#symbol-title').textContent = state.symbol;
    for (const button of main.querySelectorAll('.ranges button')) button.setAttribute('aria-pressed', String(button.dataset.range === state.range));
    loadScreens(ticket);
    try {
      const sessions = Object.fromEntries(RANGES)[state.range] + WARM_UP;
      const [body, names] = await Promise.all([
        getJSON(`/symbols/${encodeURIComponent(state.symbol)}/history`, { sessions, columns: COLUMNS.join(',') }),
        columnCatalog(),
      ]);
      if (ticket !== state.ticket) return;
      catalog = names;
      state.rows = listOf(body, 'rows');
      showHeader();
      draw();
      main.dataset.state = 'ready';
    } catch (error) {
      if (ticket !== state.ticket) return;
      main.dataset.state = 'error';
      status.textContent = '';
      $('#latest-panel').innerHTML = `<h2>Latest rating</h2><p class="error-note" role="alert">${escapeHtml(error.message)}</p>`;
      priceChart.setData({ dates: [], open: [], high: [], low: [], close: [], volume: [], overlays: [] });
      indicatorChart.setData({ dates: [], series: [] });
      priceReadout.textContent = '';
      indicatorReadout.textContent = '';
    }
  }

  main.querySelector('.ranges').addEventListener('click', (event) => {
    const button = event.target.closest('button[data-range]');
    if (!button) return;
    location.hash = `#/symbol/${encodeURIComponent(state.symbol)}?range=${button.dataset.range}${state.indicator !== 'tech_rating' ? `&indicator=${state.indicator}` : ''}`;
  });
  $('#indicator-select').addEventListener('change', (event) => {
    state.indicator = event.target.value;
    history.replaceState(null, '', `#/symbol/${encodeURIComponent(state.symbol)}?range=${state.range}&indicator=${state.indicator}`);
    drawIndicator();
  });
  $('#download-csv').addEventListener('click', async () => {
    const sessions = Object.fromEntries(RANGES)[state.range];
    const address = url(`/symbols/${encodeURIComponent(state.symbol)}/history`, { sessions, format: 'csv' });
    try {
      await download(address, `${state.symbol}-${state.range}.csv`);
    } catch (error) {
      status.textContent = `Download failed: ${error.message}`;
    }
  });

  function update(next) {
    const symbol = (next.segments[1] || '').toUpperCase();
    const range = RANGES.some(([label]) => label === next.params.get('range')) ? next.params.get('range') : DEFAULT_RANGE;
    const indicator = next.params.get('indicator') in INDICATORS ? next.params.get('indicator') : 'tech_rating';
    $('#indicator-select').value = indicator;
    const indicatorChanged = indicator !== state.indicator;
    state.indicator = indicator;
    if (symbol !== state.symbol || range !== state.range) {
      state.symbol = symbol;
      state.range = range;
      document.title = `Technic · ${symbol}`;
      if (!symbol) {
        status.textContent = 'Type a symbol in the search box above.';
        return;
      }
      load();
    } else if (indicatorChanged) {
      drawIndicator();
    }
  }

  update(route);
  return { update, dispose() { state.ticket++; } };
}
