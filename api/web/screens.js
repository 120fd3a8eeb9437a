// Screens: every saved screen with its hits on the newest screened session and whether its hits paid —
// mean forward returns over 5 and 10 sessions against the scanned universe — as a table and a bar chart;
// #/screens/{name} shows one screen: its expression, its latest hits and its performance.

import { ApiError, getJSON, listOf, pooled } from './api.js';
import { BarChart } from './chart.js';
import { columnCatalog, savedScreens } from './data.js';
import { tableColumns } from './results.js';
import { escapeHtml, formatInteger, formatNumber, formatPercent } from './format.js';
import { VirtualTable } from './table.js';

const HORIZONS = [5, 10];
/** What the latest hits table shows of each hit's result row, after its rank and symbol. */
const HIT_COLUMNS = ['name', 'close', 'change_1d', 'rsi', 'tech_rating', 'signal'];
const CONCURRENCY = 6;

const NAMES = {
  mean: ['mean', 'mean_fwd_ret', 'mean_return', 'fwd_ret_mean', 'mean_ret'],
  median: ['median', 'median_fwd_ret', 'median_return', 'fwd_ret_median'],
  excess: ['excess', 'mean_excess', 'excess_return', 'excess_mean', 'excess_vs_universe'],
  t: ['t_excess', 't_stat', 't', 'tstat'],
  positive: ['positive', 'share_positive', 'positive_share', 'pct_positive', 'hit_rate'],
  universe: ['universe', 'universe_mean', 'mean_universe', 'universe_fwd_ret'],
};

function pick(row, names, horizon) {
  for (const name of names) {
    for (const key of [`${name}_${horizon}d`, `${name}_${horizon}`, `${name}${horizon}d`]) {
      if (row[key] !== undefined) return row[key];
    }
  }
  return null;
}

function pickPlain(row, names) {
  for (const name of names) if (row[name] !== undefined) return row[name];
  return null;
}

/**
 * A screen's performance answer as {sessions, hits, byHorizon: {5: {mean, median, excess, t, positive,
 * universe}, 10: …}}, whether the API answers one summary row with `_5d`/`_10d` columns (as
 * technic_core.screens.evaluation.performance does) or one row per horizon.
 */
export function normalizePerformance(body) {
  const rows = listOf(body, 'rows', 'summary', 'performance', 'horizons');
  const candidates = rows.length ? rows : body && typeof body === 'object' ? [body.summary || body] : [];
  const screenRows = candidates.filter((row) => row && (row.kind === undefined || row.kind === 'screen'));
  const result = { sessions: null, hits: null, byHorizon: {} };
  if (!screenRows.length) return result;
  const perHorizon = screenRows.filter((row) => row.horizon !== undefined);
  for (const horizon of HORIZONS) {
    const row = perHorizon.find((r) => Number(r.horizon) === horizon);
    const entry = {};
    for (const [field, names] of Object.entries(NAMES)) entry[field] = row ? pickPlain(row, names) : pick(screenRows[0], names, horizon);
    if (entry.universe === null && entry.mean !== null && entry.excess !== null) entry.universe = entry.mean - entry.excess;
    result.byHorizon[horizon] = entry;
  }
  const first = screenRows[0];
  result.sessions = first.sessions ?? null;
  result.hits = first.hits ?? first.count ?? null;
  return result;
}

/** A hits answer as {date, count (every hit of the session), rows (this page), source, note}. */
function hitsOf(body) {
  const rows = listOf(body, 'rows', 'hits');
  const count = [body && body.total, body && body.count].find(Number.isInteger) ?? rows.length;
  return { date: body && body.date ? body.date : null, count, rows, source: body && body.source, note: body && body.note };
}

const signed = (value) => (value === null || value === undefined ? '' : `${value > 0 ? '+' : ''}${formatPercent(value)}`);
const share = (value) => (value === null || value === undefined ? '' : formatPercent(value));

export function render(main, route) {
  let disposed = false;
  let view = null;
  function show(next) {
    const name = next.segments[1] || '';
    if (view && view.name === name) return;
    view?.dispose?.();
    view = name ? detail(main, name, () => disposed) : overview(main, () => disposed);
  }
  show(route);
  return {
    update: show,
    dispose() {
      disposed = true;
      view?.dispose?.();
    },
  };
}

function overview(main, gone) {
  main.dataset.state = 'loading';
  main.innerHTML = `
    <section aria-labelledby="screens-title">
      <div class="view-head">
        <h1 id="screens-title">Screens</h1>
        <span class="meta" id="screens-meta">Loading…</span>
      </div>
      <div class="screens-layout">
        <div>
          <div id="screens-table" class="table-host short"></div>
          <p class="note">Hits: symbols each screen selected on the newest screened session. Returns: the hits' mean
            forward return over 5 and 10 sessions, and its excess over the scanned universe's mean on the same
            sessions (only sessions whose forward returns are known count).</p>
        </div>
        <div class="panel">
          <h2>Do they pay?</h2>
          <p class="note">Mean excess forward return of each screen's hits over the universe.</p>
          <div class="chart" id="screens-chart"></div>
          <output class="readout" id="screens-readout" for="screens-chart"></output>
        </div>
      </div>
    </section>`;
  const meta = main.querySelector('#screens-meta');
  const readout = main.querySelector('#screens-readout');
  const table = new VirtualTable(main.querySelector('#screens-table'), {
    label: 'Saved screens',
    rowKey: (row) => row.name,
    empty: 'No saved screens.',
    onOpen: (row) => {
      location.hash = `#/screens/${encodeURIComponent(row.name)}`;
    },
  });
  table.setColumns([
    { key: 'title', label: 'Screen', format: (v) => v ?? '', link: (row) => `#/screens/${encodeURIComponent(row.name)}`, width: 'wide' },
    { key: 'hits', label: 'Hits', numeric: true, format: (v) => (v === null ? '…' : formatInteger(v)), title: 'hits on the newest screened session' },
    { key: 'mean_5', label: '5d mean', numeric: true, format: signed, title: "hits' mean 5-session forward return" },
    { key: 'excess_5', label: '5d excess', numeric: true, format: signed, title: 'mean 5-session return over the universe' },
    { key: 't_5', label: '5d t', numeric: true, format: (v) => formatNumber(v, 2), title: 't-statistic of the daily mean 5-session excess' },
    { key: 'positive_5', label: '5d > 0', numeric: true, format: share, title: 'share of hits with a positive 5-session return' },
    { key: 'mean_10', label: '10d mean', numeric: true, format: signed },
    { key: 'excess_10', label: '10d excess', numeric: true, format: signed },
    { key: 'evaluated', label: 'Hits evaluated', numeric: true, format: (v) => formatInteger(v), title: 'hits with known forward returns' },
  ]);
  const chart = new BarChart(main.querySelector('#screens-chart'), {
    label: 'Mean excess forward return per screen, 5 and 10 sessions',
    onCursor: (index) => {
      const rows = chart.rowsShown || [];
      const row = rows[index ?? -1];
      readout.textContent = row
        ? `${row.title}: 5d excess ${signed(row.excess_5)}, 10d excess ${signed(row.excess_10)} (${formatInteger(row.evaluated)} hits evaluated)`
        : '';
    },
  });

  (async () => {
    let screens;
    try {
      screens = await savedScreens();
    } catch (error) {
      meta.textContent = error instanceof ApiError ? error.message : `Could not load screens: ${error.message}`;
      main.dataset.state = 'error';
      return;
    }
    // GET /screens carries each screen's hits on the newest session with stored hits; a screen whose
    // current version recorded none there (saved or changed since) has them evaluated by the hits endpoint.
    const hitsDate = screens.find((screen) => screen.hits_date)?.hits_date ?? null;
    const rows = screens.map((screen) => ({
      name: screen.name,
      title: screen.title || screen.name,
      hits: Number.isInteger(screen.hits) ? screen.hits : null,
      evaluated: null,
    }));
    table.sortBy('hits', true);
    table.setRows(rows);
    await pooled(rows, CONCURRENCY, async (row) => {
      const [hits, performance] = await Promise.allSettled([
        row.hits === null
          ? getJSON(`/screens/${encodeURIComponent(row.name)}/hits/${hitsDate || 'latest'}`, { columns: 'symbol' })
          : Promise.resolve(null),
        getJSON(`/screens/${encodeURIComponent(row.name)}/performance`),
      ]);
      if (gone()) return;
      if (hits.status === 'fulfilled' && hits.value) row.hits = hitsOf(hits.value).count;
      else if (row.hits === null) row.hits = 0;
      if (performance.status === 'fulfilled') {
        const summary = normalizePerformance(performance.value);
        for (const horizon of HORIZONS) {
          const entry = summary.byHorizon[horizon] || {};
          row[`mean_${horizon}`] = entry.mean ?? null;
          row[`excess_${horizon}`] = entry.excess ?? null;
          row[`t_${horizon}`] = entry.t ?? null;
          row[`positive_${horizon}`] = entry.positive ?? null;
        }
        row.evaluated = summary.hits;
      }
    });
    if (gone()) return;
    table.setRows(rows);
    meta.textContent = `${rows.length} saved screens${hitsDate ? ` · hits on ${hitsDate}` : ''}`;
    const charted = rows.filter((row) => row.excess_5 !== null && row.excess_5 !== undefined).sort((a, b) => b.excess_5 - a.excess_5);
    chart.rowsShown = charted;
    if (charted.length) {
      chart.setData({
        labels: charted.map((row) => row.title),
        groups: [
          { label: '5 sessions', values: charted.map((row) => row.excess_5), color: getComputedStyle(document.documentElement).getPropertyValue('--accent').trim() },
          { label: '10 sessions', values: charted.map((row) => row.excess_10), color: getComputedStyle(document.documentElement).getPropertyValue('--sma200').trim() },
        ],
        format: signed,
      });
    } else {
      readout.textContent = 'No screen has hits with known forward returns yet.';
    }
    main.dataset.state = 'ready';
  })();
  return { name: '', dispose() {} };
}

function detail(main, name, gone) {
  main.dataset.state = 'loading';
  main.innerHTML = `
    <section aria-labelledby="screen-title">
      <p><a href="#/screens">← All screens</a></p>
      <div class="view-head"><h1 id="screen-title">${escapeHtml(name)}</h1><span class="meta" id="screen-meta"></span></div>
      <div class="screens-layout split">
        <div>
          <p id="screen-description"></p>
          <code class="expression" id="screen-expression"></code>
          <p><a id="screen-open" href="#/results?screen=${encodeURIComponent(name)}">Show in results</a></p>
          <h2 id="hits-title">Hits</h2>
          <p class="note" id="hits-note"></p>
          <div id="hits-table" class="table-host short"></div>
        </div>
        <div class="panel">
          <h2>Do its hits pay?</h2>
          <div class="stats" id="performance-stats"></div>
          <div class="chart" id="performance-chart"></div>
          <output class="readout" id="performance-readout" for="performance-chart"></output>
        </div>
      </div>
    </section>`;
  const $ = (selector) => main.querySelector(selector);
  const hitsTable = new VirtualTable($('#hits-table'), {
    label: 'Latest hits',
    rowKey: (row) => row.symbol,
    empty: 'No hits on this session.',
    onOpen: (row) => {
      location.hash = `#/symbol/${encodeURIComponent(row.symbol)}`;
    },
  });
  const readout = $('#performance-readout');
  const chart = new BarChart($('#performance-chart'), {
    label: 'Mean forward return of the hits, the universe and the excess, over 5 and 10 sessions',
    onCursor: (index) => {
      const labels = ["Hits' mean", "Hits' median", 'Universe mean', 'Excess'];
      const values = chart.data && index !== null ? chart.data.groups.map((group) => `${group.label}: ${signed(group.values[index])}`) : [];
      readout.textContent = index === null ? '' : `${labels[index]} — ${values.join(', ')}`;
    },
  });

  (async () => {
    // The hits of the session the overview counts (the newest with stored hits), else the newest results.
    const listed = savedScreens().catch(() => []);
    const day = listed.then((all) => all.find((screen) => screen.hits_date)?.hits_date || 'latest');
    const [screens, hits, performance] = await Promise.allSettled([
      listed,
      day.then((date) =>
        getJSON(`/screens/${encodeURIComponent(name)}/hits/${date}`, { limit: 1000, columns: HIT_COLUMNS.join(',') }),
      ),
      getJSON(`/screens/${encodeURIComponent(name)}/performance`),
    ]);
    if (gone()) return;
    const screen = screens.status === 'fulfilled' ? screens.value.find((s) => s.name === name) : null;
    if (screen) {
      $('#screen-title').textContent = screen.title || screen.name;
      $('#screen-description').textContent = screen.description || '';
      $('#screen-expression').textContent = screen.expression;
      $('#screen-meta').textContent = `${screen.name} · version ${screen.version ?? 1}${screen.builtin ? ' · built in' : ''}`;
    } else if (screens.status === 'fulfilled') {
      $('#screen-meta').textContent = 'No saved screen has this name.';
    }
    if (hits.status === 'fulfilled') {
      const found = hitsOf(hits.value);
      $('#hits-title').textContent = `Hits${found.date ? ` on ${found.date}` : ''} (${formatInteger(found.count)})`;
      $('#hits-note').textContent = found.note || '';
      const present = found.rows.length ? Object.keys(found.rows[0]) : ['rank', 'symbol'];
      const names = ['rank', 'symbol', ...HIT_COLUMNS].filter((key) => present.includes(key));
      const catalog = await columnCatalog();
      const columns = tableColumns(names, catalog, found.rows[0] || {});
      columns[0] = { ...columns[0], label: '#', numeric: true, width: 'symbol', format: (v) => (v ?? '') };
      hitsTable.setColumns(columns);
      hitsTable.sortBy('rank', false);
      hitsTable.setRows(found.rows);
    } else {
      $('#hits-title').textContent = `Latest hits: ${hits.reason.message}`;
    }
    if (performance.status === 'fulfilled') {
      const summary = normalizePerformance(performance.value);
      const stats = [];
      if (summary.hits !== null) stats.push([formatInteger(summary.hits), 'hits evaluated']);
      if (summary.sessions !== null) stats.push([formatInteger(summary.sessions), 'sessions']);
      for (const horizon of HORIZONS) {
        const entry = summary.byHorizon[horizon];
        stats.push([signed(entry.excess), `${horizon}d excess`]);
        if (entry.t !== null) stats.push([formatNumber(entry.t, 2), `${horizon}d t-stat`]);
        if (entry.positive !== null) stats.push([share(entry.positive), `${horizon}d positive`]);
      }
      $('#performance-stats').innerHTML = stats
        .map(([value, label]) => `<div class="stat"><b>${escapeHtml(value)}</b><span>${escapeHtml(label)}</span></div>`)
        .join('');
      const any = HORIZONS.some((h) => summary.byHorizon[h].mean !== null);
      if (any) {
        const style = getComputedStyle(document.documentElement);
        chart.setData({
          labels: ["Hits' mean", "Hits' median", 'Universe mean', 'Excess'],
          groups: HORIZONS.map((horizon, i) => {
            const entry = summary.byHorizon[horizon];
            return {
              label: `${horizon} sessions`,
              values: [entry.mean, entry.median, entry.universe, entry.excess],
              color: style.getPropertyValue(i ? '--sma200' : '--accent').trim(),
            };
          }),
          format: signed,
        });
      } else {
        readout.textContent = 'No hits with known forward returns yet.';
      }
    } else {
      readout.textContent = `Performance: ${performance.reason.message}`;
    }
    main.dataset.state = 'ready';
  })();
  return { name, dispose() {} };
}
