// Results: one session's scan results as a table (latest by default), filtered by a screen, with live batches.
//
// Loading: every row of the session that the screen selects, only the shown columns, in pages of PAGE rows
// (several in flight), so 5,000 rows arrive in a few round trips; sorting and the symbol finder then work
// in the page. Live: the session's event stream resumes after the newest seq the partition held when the
// rows were read, so each later batch arrives once; rows are deduplicated by seq all the same. With a
// screen, the stream itself carries it (`?where=`) and sends only the rows of each batch it selects.

import { ApiError, apiKey, download, getJSON, sendJSON, url, whereError } from './api.js';
import { columnCatalog, forget, resultColumnNames, resultSessions, savedScreens } from './data.js';
import { escapeHtml, formatInteger, formatterFor, isNumeric, labelOf } from './format.js';
import { screenErrorBox } from './screen-error.js';
import { LiveStream } from './stream.js';
import { VirtualTable } from './table.js';

export const PAGE = 1000;
const FIRST_WAVE = 5;
const PARALLEL_PAGES = 4;
const COLUMNS_KEY = 'technic.columns';
export const DEFAULT_COLUMNS = ['symbol', 'name', 'sector', 'close', 'change_1d', 'volume', 'rel_volume', 'rsi', 'tech_rating', 'signal'];
const ALWAYS_LOADED = ['symbol', 'seq'];
const DEFAULT_SORT = '-tech_rating';
const NEW_SESSION_POLL_MS = 15000;
const BUY_SIGNALS = new Set(['Buy', 'Strong Buy']);

export function chosenColumns() {
  try {
    const stored = JSON.parse(localStorage.getItem(COLUMNS_KEY) || 'null');
    if (Array.isArray(stored) && stored.length && stored.every((name) => typeof name === 'string')) return stored;
  } catch {
    /* fall back to the defaults */
  }
  return DEFAULT_COLUMNS.slice();
}

function saveColumns(columns) {
  localStorage.setItem(COLUMNS_KEY, JSON.stringify(columns));
}

/** Table column definitions for result column names. */
export function tableColumns(names, catalog, sample = {}) {
  return names.map((name) => {
    const info = catalog.get(name);
    const numeric = isNumeric(name, info, sample[name]);
    const column = {
      key: name,
      label: labelOf(name),
      title: info && info.description ? `${name}: ${info.description}` : name,
      numeric,
      format: formatterFor(name, info),
      width: { symbol: 'symbol', name: 'wide', industry: 'wide', tech_rating: 'wider' }[name],
    };
    if (name === 'symbol') column.link = (row) => `#/symbol/${encodeURIComponent(row.symbol)}`;
    if (name === 'signal' || name === 'consensus_signal') column.badge = true;
    return column;
  });
}

/**
 * Every row of `session` the `where` selects, `columns` only, in pages fetched several at a time. With no
 * screen the session's newest seq (`newest`, a promise) counts its rows, so every page is asked for at once;
 * rows landing later come from the live stream. With a screen: a first wave of FIRST_WAVE pages (a daily
 * scan's ~5,000 rows), then the pages its `total` says are missing (or, from an API without `total`, waves
 * of PARALLEL_PAGES until one comes back short).
 */
export async function fetchAllRows(session, { where, columns, signal, newest }) {
  const params = { where, columns: columns.join(','), order_by: 'seq', limit: PAGE };
  const page = (offset) => getJSON(`/results/${session}`, { ...params, offset }, { signal });
  const wave = (offsets) => Promise.all(offsets.map(page));
  const range = (from, count) => Array.from({ length: count }, (_, i) => from + i * PAGE);
  const pagesFor = (total, offset) => Math.max(0, Math.ceil((total - offset) / PAGE));
  let answers = await wave(range(0, !where && newest ? Math.max(1, pagesFor(await newest, 0)) : FIRST_WAVE));
  const rows = [];
  let offset = 0;
  for (;;) {
    for (const answer of answers) rows.push(...answer.rows);
    offset += answers.length * PAGE;
    const last = answers.at(-1);
    if (answers.some((answer) => answer.rows.length < PAGE) || (!where && newest)) break;
    const count = Number.isInteger(last.total) ? pagesFor(last.total, offset) : PARALLEL_PAGES;
    if (!count) break;
    answers = await wave(range(offset, count));
  }
  return { date: answers[0].date, rows };
}

function parseSort(text) {
  const value = text || DEFAULT_SORT;
  return { key: value.replace(/^-/, ''), descending: value.startsWith('-') };
}

export function render(main, route) {
  main.innerHTML = `
    <section class="results" aria-labelledby="results-title">
      <div class="view-head">
        <h1 id="results-title">Results</h1>
        <label class="inline">Session
          <select id="session-select"><option value="latest">Latest</option></select>
        </label>
      </div>
      <form class="screen-form" id="screen-form">
        <label for="saved-screen" class="visually-hidden">Saved screen</label>
        <select id="saved-screen"><option value="">Saved screens…</option></select>
        <label for="where" class="visually-hidden">Screen expression</label>
        <textarea id="where" rows="1" spellcheck="false" autocomplete="off" autocapitalize="off"
          placeholder="Screen, e.g. rsi < 30 and close > sma_200" aria-describedby="where-error"></textarea>
        <div class="screen-actions">
          <button type="submit">Apply</button>
          <button type="button" class="secondary" id="clear-where">Clear</button>
          <button type="button" class="secondary" id="save-screen" aria-haspopup="dialog">Save…</button>
        </div>
      </form>
      <div id="where-error" class="where-error" role="alert" hidden></div>
      <dialog id="save-dialog" aria-labelledby="save-dialog-title">
        <form method="dialog" id="save-form">
          <h2 id="save-dialog-title">Save screen</h2>
          <label>Name <small>(a–z, 0–9, - and _)</small>
            <input id="save-name" required pattern="[a-z0-9_\\-]{1,64}" maxlength="64" autocomplete="off" spellcheck="false">
          </label>
          <label>Title <small>(optional)</small>
            <input id="save-title" maxlength="120" autocomplete="off">
          </label>
          <p class="save-expression"><code id="save-expression"></code></p>
          <p id="save-note" class="status" aria-live="polite"></p>
          <div id="save-error" class="where-error" role="alert" hidden></div>
          <div class="actions">
            <button value="cancel" class="secondary" formnovalidate>Cancel</button>
            <button value="save" id="save-confirm">Save</button>
          </div>
        </form>
      </dialog>
      <div class="table-tools">
        <label for="find" class="visually-hidden">Find symbol</label>
        <input type="search" id="find" placeholder="Find symbol or name" autocomplete="off" spellcheck="false">
        <button type="button" class="secondary" id="choose-columns" aria-haspopup="dialog">Columns</button>
        <button type="button" class="secondary" id="download-results">CSV</button>
        <span class="status" id="row-count" aria-live="polite"></span>
        <span class="live" id="live-state"></span>
        <progress id="live-progress" aria-label="Scan progress" hidden></progress>
      </div>
      <div id="results-table" class="table-host"></div>
      <dialog id="column-dialog" class="column-dialog" aria-labelledby="column-dialog-title">
        <form method="dialog">
          <h2 id="column-dialog-title">Columns</h2>
          <input type="search" id="column-filter" placeholder="Filter columns" autocomplete="off">
          <div id="column-list" class="column-list"></div>
          <div class="actions">
            <button type="button" class="secondary" id="columns-reset">Defaults</button>
            <button value="cancel" class="secondary">Cancel</button>
            <button value="apply" id="columns-apply">Apply</button>
          </div>
        </form>
      </dialog>
    </section>`;

  const $ = (selector) => main.querySelector(selector);
  const sessionSelect = $('#session-select');
  const savedSelect = $('#saved-screen');
  const whereInput = $('#where');
  const errorBox = $('#where-error');
  const find = $('#find');
  const countLabel = $('#row-count');
  const liveLabel = $('#live-state');
  const progress = $('#live-progress');
  const dialog = $('#column-dialog');

  const state = {
    session: 'latest',
    where: '',
    screen: '',
    sort: parseSort(DEFAULT_SORT),
    columns: chosenColumns(),
    date: null,
    rows: [],
    seen: new Set(),
    catalog: new Map(),
    stream: null,
    controller: null,
    poll: 0,
    loading: 0,
  };

  const table = new VirtualTable($('#results-table'), {
    label: 'Scan results',
    rowKey: (row) => row.seq,
    empty: 'No results match.',
    onOpen: (row) => {
      location.hash = `#/symbol/${encodeURIComponent(row.symbol)}`;
    },
    onSort: (key, descending) => {
      state.sort = { key, descending };
      writeHash(true);
    },
  });

  function hashFor(changes) {
    const { session, where, screen, sort } = { ...state, ...changes };
    const params = new URLSearchParams();
    if (where) params.set('where', where);
    if (screen) params.set('screen', screen);
    const order = `${sort.descending ? '-' : ''}${sort.key}`;
    if (order !== DEFAULT_SORT) params.set('sort', order);
    const query = params.toString();
    return `#/results${session === 'latest' ? '' : `/${session}`}${query ? `?${query}` : ''}`;
  }

  /** Record a change in the URL: replaced for what needs no reload (the sort), pushed otherwise (the
   * route handler then loads what it names). */
  function writeHash(replace, changes = {}) {
    const hash = hashFor(changes);
    if (hash === location.hash) return;
    if (replace) history.replaceState(null, '', hash);
    else location.hash = hash;
  }

  function matchesFind(row) {
    const needle = find.value.trim().toLowerCase();
    if (!needle) return true;
    return String(row.symbol || '').toLowerCase().includes(needle) || String(row.name || '').toLowerCase().includes(needle);
  }

  function showCount() {
    const shown = table.rows.length;
    const total = state.rows.length;
    countLabel.dataset.count = String(total);
    countLabel.textContent =
      shown === total ? `${formatInteger(total)} rows` : `${formatInteger(shown)} of ${formatInteger(total)} rows`;
  }

  const whereErrors = screenErrorBox(errorBox, whereInput, () => applyForm());
  const showError = (problem) => whereErrors.show(problem);
  const clearError = () => whereErrors.clear();

  function setStatus(text, kind = '') {
    liveLabel.textContent = text;
    liveLabel.className = `live ${kind}`;
  }

  function stopLive() {
    state.stream?.close();
    state.stream = null;
    progress.hidden = true;
  }

  function fetchColumns() {
    return [...new Set([...ALWAYS_LOADED, ...state.columns, state.sort.key])].filter((name) => name);
  }

  async function load() {
    const ticket = ++state.loading;
    stopLive();
    state.controller?.abort();
    const controller = new AbortController();
    state.controller = controller;
    main.dataset.state = 'loading';
    countLabel.textContent = 'Loading…';
    setStatus('');
    clearError();
    const columns = fetchColumns();
    try {
      const newest = getJSON(`/results/${state.session}`, { columns: 'seq', order_by: '-seq', limit: 1 }, { signal: controller.signal })
        .then((body) => (body.rows.length ? body.rows[0].seq : 0));
      const [catalog, loaded, lastSeq] = await Promise.all([
        columnCatalog(),
        fetchAllRows(state.session, { where: state.where, columns, signal: controller.signal, newest }),
        newest,
      ]);
      if (ticket !== state.loading) return;
      state.catalog = catalog;
      state.date = loaded.date;
      state.rows = loaded.rows;
      state.seen = new Set(loaded.rows.map((row) => row.seq));
      table.options.empty = state.where ? 'No results match the screen.' : 'No results in this session yet.';
      table.setColumns(tableColumns(state.columns, catalog, loaded.rows[0] || {}));
      table.sortBy(state.sort.key, state.sort.descending);
      table.setRows(state.rows.filter(matchesFind));
      showCount();
      main.dataset.state = 'ready';
      main.dataset.session = state.date;
      performance.mark('technic:results-ready');
      askChoices();
      markSessionOption(state.date);
      startLive(state.date, lastSeq);
    } catch (error) {
      if (error.name === 'AbortError' || ticket !== state.loading) return;
      main.dataset.state = 'error';
      askChoices();
      table.setRows([]);
      state.rows = [];
      const problem = whereError(error);
      table.options.empty = problem ? 'Fix the screen to see rows.' : 'No rows.';
      if (problem) {
        countLabel.textContent = 'The screen has an error.';
        showError(problem);
      } else {
        countLabel.textContent = error instanceof ApiError ? error.message : `Could not load results: ${error.message}`;
      }
    }
  }

  function markSessionOption(date) {
    const latest = sessionSelect.querySelector('option[value="latest"]');
    if (latest) latest.textContent = state.session === 'latest' ? `Latest (${date})` : 'Latest';
  }

  function addLiveRows(rows) {
    const fresh = rows.filter((row) => !state.seen.has(row.seq));
    if (!fresh.length) return;
    for (const row of fresh) state.seen.add(row.seq);
    state.rows.push(...fresh);
    table.addRows(fresh.filter(matchesFind));
    showCount();
    main.dataset.lastSeq = String(Math.max(...fresh.map((row) => row.seq), Number(main.dataset.lastSeq || 0)));
  }

  function startLive(date, after) {
    const ticket = state.loading;
    const counts = { batch: null, results: after, signals: null };
    const describe = () => {
      const parts = [];
      if (counts.batch !== null) parts.push(`batch ${counts.batch + 1}`);
      parts.push(`${formatInteger(counts.results)} results`);
      if (counts.signals !== null) parts.push(`${formatInteger(counts.signals)} signals`);
      return parts.join(' · ');
    };
    state.stream = new LiveStream(
      `/events/results/${date}`,
      {
        onResult: (data) => {
          counts.results = Math.max(counts.results, data.last_seq);
          if (ticket !== state.loading) return;
          // With a screen the server sends only the batch's rows it selects (the stream's `where`).
          const keep = fetchColumns();
          addLiveRows(data.rows.map((row) => Object.fromEntries(keep.map((name) => [name, row[name] ?? null]))));
        },
        onProgress: (data) => {
          counts.batch = data.batch;
          counts.results = data.results;
          counts.signals = data.signals;
          if (Number.isInteger(data.total) && data.total > 0) {
            progress.max = data.total;
            progress.value = data.scanned ?? 0;
          } else {
            progress.removeAttribute('value');
          }
          progress.hidden = false;
          setStatus(`Live · ${describe()}`, 'on');
        },
        onEnd: (data) => {
          progress.hidden = true;
          counts.results = data.results ?? counts.results;
          const reason = data.reason === 'complete' ? 'complete' : `ended: ${data.reason}${data.message ? ` (${data.message})` : ''}`;
          setStatus(`Scan ${reason} · ${formatInteger(counts.results)} results`, data.reason === 'error' ? 'failed' : 'done');
          main.dataset.live = 'ended';
          if (state.session === 'latest') watchForNewSession(date);
        },
        onState: (name, message) => {
          main.dataset.live = name;
          if (name === 'live') setStatus(counts.batch === null ? 'Live · waiting for the next batch' : `Live · ${describe()}`, 'on');
          else if (name === 'reconnecting') setStatus('Reconnecting…', 'warn');
          else if (name === 'failed') setStatus(`Live updates unavailable: ${message}`, 'failed');
        },
      },
      after,
      state.where ? { where: state.where } : {},
    ).start();
  }

  /** On "latest" after its scan ended: look now and then for a newer session and switch to it. */
  function watchForNewSession(date) {
    clearInterval(state.poll);
    state.poll = setInterval(async () => {
      if (document.hidden) return;
      try {
        const health = await getJSON('/health');
        if (health.latest_session && health.latest_session > date && state.session === 'latest') {
          clearInterval(state.poll);
          setStatus(`New session ${health.latest_session}`, 'on');
          load();
        }
      } catch {
        /* try again at the next tick */
      }
    }, NEW_SESSION_POLL_MS);
  }

  function applyForm() {
    const text = whereInput.value.trim();
    const saved = savedSelect.selectedOptions[0];
    const screen = saved && saved.value && saved.dataset.expression === text ? saved.value : '';
    if (!screen) savedSelect.value = '';
    if (text === state.where && screen === state.screen) load();
    else writeHash(false, { where: text, screen });
  }

  $('#screen-form').addEventListener('submit', (event) => {
    event.preventDefault();
    applyForm();
  });
  whereInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey) {
      event.preventDefault();
      applyForm();
    }
  });
  whereInput.addEventListener('input', () => {
    whereInput.style.height = 'auto';
    whereInput.style.height = `${Math.min(160, whereInput.scrollHeight + 2)}px`;
  });
  $('#clear-where').addEventListener('click', () => {
    whereInput.value = '';
    savedSelect.value = '';
    applyForm();
  });
  // ---------------------------------------------------------------- saving the typed screen
  const saveDialog = $('#save-dialog');
  const saveName = $('#save-name');
  const saveError = $('#save-error');
  const saveNote = $('#save-note');
  $('#save-screen').addEventListener('click', () => {
    const expression = whereInput.value.trim();
    if (!expression) {
      setStatus('Type a screen to save first', 'warn');
      whereInput.focus();
      return;
    }
    $('#save-expression').textContent = expression;
    saveError.hidden = true;
    saveNote.textContent = apiKey() ? '' : 'Saving needs an API key (the key button at the top).';
    saveName.value = state.screen || '';
    $('#save-title').value = state.screen ? savedSelect.selectedOptions[0]?.text || '' : '';
    saveDialog.showModal();
    saveName.focus();
  });
  saveName.addEventListener('input', () => {
    const existing = [...savedSelect.options].find((option) => option.value && option.value === saveName.value);
    saveNote.textContent = existing ? `Saving changes "${existing.value}": a new version; its earlier hits keep theirs.` : '';
  });
  $('#save-form').addEventListener('submit', async (event) => {
    if (event.submitter && event.submitter.value !== 'save') return;
    event.preventDefault();
    const name = saveName.value.trim();
    const body = { expression: $('#save-expression').textContent };
    const title = $('#save-title').value.trim();
    if (title) body.title = title;
    try {
      const saved = await sendJSON('PUT', `/screens/${encodeURIComponent(name)}`, body);
      forget('screens');
      let option = [...savedSelect.options].find((o) => o.value === saved.name);
      if (!option) {
        option = new Option(saved.title || saved.name, saved.name);
        savedSelect.add(option);
      }
      option.text = saved.title || saved.name;
      option.dataset.expression = saved.expression;
      saveDialog.close('saved');
      setStatus(`Saved screen "${saved.name}" (version ${saved.version})`, 'done');
      writeHash(false, { where: saved.expression, screen: saved.name });
    } catch (error) {
      saveError.textContent = whereError(error, 'body.expression')?.message || error.message;
      saveError.hidden = false;
    }
  });

  savedSelect.addEventListener('change', () => {
    const option = savedSelect.selectedOptions[0];
    if (!option || !option.value) return;
    whereInput.value = option.dataset.expression;
    applyForm();
  });
  sessionSelect.addEventListener('change', () => writeHash(false, { session: sessionSelect.value }));
  find.addEventListener('input', () => {
    table.setRows(state.rows.filter(matchesFind));
    showCount();
  });

  // The rows as shown (screen, columns, order) as a CSV file: the API answers every row of a download.
  $('#download-results').addEventListener('click', async () => {
    const order = `${state.sort.descending ? '-' : ''}${state.sort.key}`;
    const address = url(`/results/${state.date || state.session}`, {
      where: state.where,
      columns: state.columns.join(','),
      order_by: order,
      format: 'csv',
    });
    try {
      await download(address, `technic-${state.date || state.session}.csv`);
    } catch (error) {
      setStatus(`Download failed: ${error.message}`, 'failed');
    }
  });

  // ---------------------------------------------------------------- column chooser
  $('#choose-columns').addEventListener('click', async () => {
    const names = await resultColumnNames();
    const chosen = new Set(state.columns);
    const groups = new Map();
    for (const name of names) {
      const info = state.catalog.get(name);
      const group = (info && info.group) || 'scan';
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(name);
    }
    $('#column-list').innerHTML = [...groups]
      .map(
        ([group, members]) =>
          `<fieldset><legend>${escapeHtml(group)}</legend>${members
            .map((name) => {
              const info = state.catalog.get(name);
              const description = info && info.description ? info.description : '';
              return `<label class="check" title="${escapeHtml(description)}" data-name="${escapeHtml(name)}"><input type="checkbox" value="${escapeHtml(name)}"${chosen.has(name) ? ' checked' : ''}> ${escapeHtml(name)}${info && info.unit ? ` <small>${escapeHtml(info.unit)}</small>` : ''}</label>`;
            })
            .join('')}</fieldset>`,
      )
      .join('');
    $('#column-filter').value = '';
    dialog.showModal();
  });
  $('#column-filter').addEventListener('input', (event) => {
    const needle = event.target.value.trim().toLowerCase();
    for (const label of dialog.querySelectorAll('label[data-name]')) {
      label.hidden = Boolean(needle) && !label.dataset.name.includes(needle) && !label.title.toLowerCase().includes(needle);
    }
  });
  $('#columns-reset').addEventListener('click', () => {
    for (const box of dialog.querySelectorAll('input[type=checkbox]')) box.checked = DEFAULT_COLUMNS.includes(box.value);
  });
  dialog.addEventListener('close', () => {
    if (dialog.returnValue !== 'apply') return;
    const picked = [...dialog.querySelectorAll('input[type=checkbox]:checked')].map((box) => box.value);
    // Keep the order the user had, new picks appended; the symbol stays first.
    const ordered = [...state.columns.filter((name) => picked.includes(name)), ...picked.filter((name) => !state.columns.includes(name))];
    state.columns = ['symbol', ...ordered.filter((name) => name !== 'symbol')];
    saveColumns(state.columns);
    load();
  });

  // ---------------------------------------------------------------- choices from the API
  // Asked for once the first rows are on screen (or at once when the URL names a saved screen), so they
  // do not compete with the rows for the server.
  let choicesAsked = false;
  function askChoices() {
    if (choicesAsked) return;
    choicesAsked = true;
    resultSessions()
    .then((sessions) => {
      for (const date of sessions) sessionSelect.add(new Option(date, date));
      sessionSelect.value = state.session;
      if (state.date) markSessionOption(state.date);
    })
    .catch(() => {});
  savedScreens()
    .then((screens) => {
      for (const screen of screens) {
        const option = new Option(screen.title || screen.name, screen.name);
        option.dataset.expression = screen.expression;
        option.title = screen.description || screen.expression;
        savedSelect.add(option);
      }
      if (state.screen) savedSelect.value = state.screen;
    })
    .catch(() => {});
  }

  function update(next) {
    const params = next.params;
    const session = next.segments[1] || 'latest';
    const screen = params.get('screen') || '';
    let where = params.get('where') || '';
    const option = screen ? [...savedSelect.options].find((o) => o.value === screen) : null;
    if (!where && option) where = option.dataset.expression;
    const sort = parseSort(params.get('sort'));
    const changed = session !== state.session || where !== state.where || state.date === null;
    state.session = session;
    state.where = where;
    state.screen = screen;
    sessionSelect.value = [...sessionSelect.options].some((o) => o.value === session) ? session : 'latest';
    savedSelect.value = option ? screen : '';
    whereInput.value = where;
    if (sort.key !== state.sort.key || sort.descending !== state.sort.descending) {
      state.sort = sort;
      if (!changed) table.sortBy(sort.key, sort.descending);
    }
    if (changed) load();
  }

  // A screen named without an expression (#/results?screen=golden-cross) needs the list before loading.
  if (route.params.get('screen') && !route.params.get('where')) {
    askChoices();
    savedScreens()
      .then(() => update(route))
      .catch(() => update(route));
  } else {
    update(route);
  }

  return {
    update,
    dispose() {
      state.loading++;
      state.controller?.abort();
      stopLive();
      clearInterval(state.poll);
    },
  };
}
