// Scan: start an ad-hoc scan of the latest data with the user's API key (POST /scan/stream) and watch its
// rows arrive; #/scan/{scan_id} follows a scan already started (its stream replays what it has so far).

import { ApiError, apiKey, getJSON, keyRemembered, localPath, postJSON, setApiKey, whereError } from './api.js';
import { columnCatalog } from './data.js';
import { formatInteger } from './format.js';
import { chosenColumns, tableColumns } from './results.js';
import { screenErrorBox } from './screen-error.js';
import { LiveStream } from './stream.js';
import { VirtualTable } from './table.js';

const BUY = new Set(['Buy', 'Strong Buy']);

function numberOrNull(input) {
  const text = input.value.trim();
  return text === '' ? null : Number(text);
}

export function render(main, route) {
  main.innerHTML = `
    <section aria-labelledby="scan-title">
      <div class="view-head"><h1 id="scan-title">Ad-hoc scan</h1>
        <span class="meta">Scans the latest session's screened universe now, with your settings.</span></div>
      <form class="scan-form panel" id="scan-form" novalidate>
        <label>Max symbols <input type="number" id="max-symbols" min="1" max="20000" value="500"></label>
        <label>Stop after signals <input type="number" id="max-signals" min="1" max="100000" placeholder="no limit"></label>
        <label>Min TechRating <input type="number" id="min-rating" min="0" max="100" step="1" value="0"></label>
        <label>Batch size <input type="number" id="batch-size" min="1" max="20000" value="100"></label>
        <label>Timeout (s) <input type="number" id="timeout" min="1" max="3600" placeholder="none"></label>
        <label class="check"><input type="checkbox" id="prioritize" checked> Most promising first</label>
        <label class="wide">Screen (optional) <textarea id="scan-where" rows="1" spellcheck="false" autocomplete="off"
          autocapitalize="off" placeholder="e.g. rsi < 30 and close > sma_200" aria-describedby="scan-where-error"></textarea></label>
        <label class="wide">Watchlist (optional) <input id="scan-symbols" autocomplete="off" spellcheck="false"
          placeholder="AAPL, MSFT, BRK.B"></label>
        <label id="key-field">API key <input type="password" id="scan-key" autocomplete="off" spellcheck="false"></label>
        <div class="actions">
          <button type="submit" id="start-scan">Start scan</button>
          <button type="button" class="secondary" id="stop-scan" disabled>Stop</button>
        </div>
      </form>
      <div id="scan-where-error" class="where-error" role="alert" hidden></div>
      <p id="scan-error" class="error-note" role="alert" hidden></p>
      <div class="table-tools">
        <span class="status" id="scan-count" aria-live="polite"></span>
        <progress id="scan-progress" aria-label="Scan progress" hidden></progress>
        <span class="live" id="scan-state"></span>
      </div>
      <div id="scan-table" class="table-host"></div>
    </section>`;
  const $ = (selector) => main.querySelector(selector);
  const errorNote = $('#scan-error');
  const count = $('#scan-count');
  const progress = $('#scan-progress');
  const stateLabel = $('#scan-state');
  const stopButton = $('#stop-scan');
  const keyInput = $('#scan-key');
  keyInput.value = apiKey();
  const whereInput = $('#scan-where');
  const whereErrors = screenErrorBox($('#scan-where-error'), whereInput, () => $('#scan-form').requestSubmit());

  const state = { scanId: null, stream: null, rows: [], seen: new Set(), signals: 0, ticket: 0 };
  const table = new VirtualTable($('#scan-table'), {
    label: 'Ad-hoc scan results',
    rowKey: (row) => row.seq,
    empty: 'Rows appear here as the scan finds them.',
    onOpen: (row) => {
      location.hash = `#/symbol/${encodeURIComponent(row.symbol)}`;
    },
  });
  const columns = chosenColumns();
  columnCatalog().then((catalog) => {
    table.setColumns(tableColumns(columns, catalog));
    table.sortBy('seq', false);
  });

  function setError(message) {
    errorNote.textContent = message || '';
    errorNote.hidden = !message;
  }

  function setStatus(text, kind = '') {
    stateLabel.textContent = text;
    stateLabel.className = `live ${kind}`;
  }

  function showCounts(data = {}) {
    const parts = [`${formatInteger(state.rows.length)} results`, `${formatInteger(state.signals)} signals`];
    if (Number.isInteger(data.total)) parts.unshift(`${formatInteger(data.scanned ?? 0)} of ${formatInteger(data.total)} scanned`);
    count.textContent = parts.join(' · ');
    count.dataset.count = String(state.rows.length);
  }

  function follow(scanId, eventsPath) {
    const ticket = ++state.ticket;
    state.stream?.close();
    state.scanId = scanId;
    state.rows = [];
    state.seen = new Set();
    state.signals = 0;
    table.setRows([]);
    showCounts();
    stopButton.disabled = false;
    main.dataset.state = 'running';
    progress.hidden = false;
    progress.removeAttribute('value');
    state.stream = new LiveStream(eventsPath || `/events/results/${encodeURIComponent(scanId)}`, {
      onResult: (data) => {
        if (ticket !== state.ticket) return;
        const fresh = data.rows.filter((row) => !state.seen.has(row.seq));
        for (const row of fresh) {
          state.seen.add(row.seq);
          if (BUY.has(row.signal)) state.signals++;
        }
        state.rows.push(...fresh);
        table.addRows(fresh);
        showCounts();
      },
      onProgress: (data) => {
        if (ticket !== state.ticket) return;
        if (Number.isInteger(data.signals)) state.signals = data.signals;
        if (Number.isInteger(data.total) && data.total > 0) {
          progress.max = data.total;
          progress.value = data.scanned ?? 0;
        }
        showCounts(data);
        setStatus(`Live · batch ${data.batch + 1}${data.elapsed_s ? ` · ${data.elapsed_s.toFixed(1)} s` : ''}`, 'on');
      },
      onEnd: (data) => {
        if (ticket !== state.ticket) return;
        progress.hidden = true;
        stopButton.disabled = true;
        main.dataset.state = 'ended';
        setStatus(`Scan ${data.reason}${data.message ? `: ${data.message}` : ''}`, data.reason === 'error' ? 'failed' : 'done');
      },
      onState: (name, message) => {
        if (ticket !== state.ticket) return;
        if (name === 'reconnecting') setStatus('Reconnecting…', 'warn');
        else if (name === 'failed') {
          setStatus(`Stream unavailable: ${message}`, 'failed');
          progress.hidden = true;
          stopButton.disabled = true;
        }
      },
    }).start();
  }

  $('#scan-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    setError('');
    whereErrors.clear();
    const key = keyInput.value.trim();
    if (!key) {
      setError('Starting a scan needs an API key.');
      keyInput.focus();
      return;
    }
    if (key !== apiKey()) setApiKey(key, keyRemembered());
    const config = {
      max_symbols: numberOrNull($('#max-symbols')),
      max_signals: numberOrNull($('#max-signals')),
      min_tech_rating: numberOrNull($('#min-rating')) ?? 0,
      batch_size: numberOrNull($('#batch-size')) ?? 100,
      timeout_s: numberOrNull($('#timeout')),
      prioritize: $('#prioritize').checked,
    };
    const where = whereInput.value.trim();
    if (where) config.where = where;
    const symbols = $('#scan-symbols').value.split(/[\s,;]+/).filter(Boolean);
    if (symbols.length) config.symbols = symbols;
    const start = $('#start-scan');
    start.disabled = true;
    try {
      const started = await postJSON('/scan/stream', config);
      history.replaceState(null, '', `#/scan/${encodeURIComponent(started.scan_id)}`);
      const predicted = started.predicted ? ` · predicted ${formatInteger(started.predicted.result_count)} results in ${started.predicted.duration_s.toFixed(1)} s` : '';
      setStatus(`Started ${started.scan_id} (${started.ordering})${predicted}`, 'on');
      follow(started.scan_id, localPath(started.events_url));
    } catch (error) {
      const problem = whereError(error, 'body.where');
      if (problem) whereErrors.show(problem);
      else setError(error instanceof ApiError ? error.message : `Could not start the scan: ${error.message}`);
    } finally {
      start.disabled = false;
    }
  });

  stopButton.addEventListener('click', async () => {
    if (!state.scanId) return;
    stopButton.disabled = true;
    try {
      await postJSON(`/scan/stop/${encodeURIComponent(state.scanId)}`, {});
      setStatus('Stopping after this batch…', 'warn');
    } catch (error) {
      setError(error.message);
      stopButton.disabled = false;
    }
  });

  function update(next) {
    const scanId = next.segments[1];
    if (scanId && scanId !== state.scanId) {
      getJSON(`/scan/stats/${encodeURIComponent(scanId)}`)
        .then((stats) => setStatus(`${scanId}: ${stats.status}`, stats.status === 'finished' ? 'done' : 'on'))
        .catch(() => {});
      follow(scanId);
    }
  }
  update(route);

  return {
    update,
    dispose() {
      state.ticket++;
      state.stream?.close();
    },
  };
}
