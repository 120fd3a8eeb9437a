// The Technic page: a hash router over four views (#/results, #/screens, #/scan, #/symbol/AAPL), the header's
// symbol search and the API key dialog. Views are modules with render(main, route) → {update?, dispose}; a
// route change within the same view is handed to its update, so its state (rows, stream) survives.

import { apiKey, getJSON, keyRemembered, listOf, setApiKey } from './api.js';

const VIEWS = {
  results: () => import('./results.js'),
  screens: () => import('./screens.js'),
  scan: () => import('./scan.js'),
  symbol: () => import('./symbol.js'),
};

const main = document.getElementById('main');
let current = { name: null, view: null };
let navigation = 0;

/** '#/symbol/AAPL?range=1y' → {segments: ['symbol', 'AAPL'], params: URLSearchParams} */
export function parseRoute(hash) {
  const text = hash.replace(/^#\/?/, '');
  const [path, query = ''] = text.split('?');
  const segments = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (!segments.length || !(segments[0] in VIEWS)) segments.splice(0, segments.length, 'results');
  return { segments, params: new URLSearchParams(query) };
}

export function toast(message) {
  const box = document.getElementById('toast');
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => {
    box.hidden = true;
  }, 5000);
}

async function route() {
  const ticket = ++navigation;
  const next = parseRoute(location.hash);
  const name = next.segments[0];
  for (const link of document.querySelectorAll('nav a[data-section]')) {
    if (link.dataset.section === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  if (current.name === name && current.view && current.view.update) {
    current.view.update(next);
    return;
  }
  current.view?.dispose?.();
  current = { name: null, view: null };
  const module = await VIEWS[name]();
  if (ticket !== navigation) return;
  main.dataset.view = name;
  delete main.dataset.state;
  current = { name, view: module.render(main, next) };
  document.title = `Technic · ${name[0].toUpperCase()}${name.slice(1)}${name === 'symbol' ? ` ${next.segments[1] || ''}` : ''}`;
}

// ---------------------------------------------------------------- header: symbol search
const symbolForm = document.getElementById('symbol-search');
const symbolInput = document.getElementById('symbol-input');
symbolForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const symbol = symbolInput.value.trim().toUpperCase();
  if (!symbol) return;
  symbolInput.value = '';
  location.hash = `#/symbol/${encodeURIComponent(symbol)}`;
});
let symbolsListed = false;
symbolInput.addEventListener('focus', async () => {
  if (symbolsListed) return;
  symbolsListed = true;
  try {
    const body = await getJSON('/results/latest', { columns: 'symbol,name', order_by: 'symbol', limit: 1000 });
    const list = document.getElementById('symbol-list');
    for (const row of listOf(body, 'rows')) list.append(new Option(row.name || '', row.symbol));
  } catch {
    symbolsListed = false;
  }
});

// ---------------------------------------------------------------- header: API key
const keyDialog = document.getElementById('key-dialog');
const keyButton = document.getElementById('key-button');
function showKeyState() {
  keyButton.textContent = apiKey() ? 'API key ✓' : 'API key';
}
keyButton.addEventListener('click', () => {
  document.getElementById('key-input').value = apiKey();
  document.getElementById('key-remember').checked = keyRemembered();
  keyDialog.showModal();
});
keyDialog.addEventListener('close', () => {
  if (keyDialog.returnValue === 'save') {
    setApiKey(document.getElementById('key-input').value.trim(), document.getElementById('key-remember').checked);
    toast(apiKey() ? 'API key saved' : 'API key removed');
  } else if (keyDialog.returnValue === 'clear') {
    setApiKey('', false);
    toast('API key removed');
  }
  showKeyState();
  if (keyDialog.returnValue === 'save' || keyDialog.returnValue === 'clear') {
    current.view?.dispose?.();
    current = { name: null, view: null };
    route();
  }
});
showKeyState();

window.addEventListener('hashchange', route);
window.addEventListener('unhandledrejection', (event) => {
  if (event.reason && event.reason.name === 'AbortError') {
    event.preventDefault();
    return;
  }
  toast(`Something went wrong: ${event.reason && event.reason.message ? event.reason.message : event.reason}`);
});
route();
