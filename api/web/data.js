// Answers several views share, fetched once per page load (or per minute): the column catalog, the saved
// screens and the sessions with results.

import { getJSON, listOf } from './api.js';

const cache = new Map();

function remembered(key, ttlMs, load) {
  const hit = cache.get(key);
  if (hit && performance.now() - hit.at < ttlMs) return hit.promise;
  const promise = load().catch((error) => {
    cache.delete(key);
    throw error;
  });
  cache.set(key, { at: performance.now(), promise });
  return promise;
}

export function forget(key) {
  cache.delete(key);
}

/** name → {name, type, unit, description, group, …} from GET /columns; empty if the API has no catalog. */
export function columnCatalog() {
  return remembered('columns', Infinity, async () => {
    try {
      const body = await getJSON('/columns');
      return new Map(listOf(body, 'columns').map((column) => [column.name, column]));
    } catch {
      return new Map();
    }
  });
}

/** Every results column name, in the order result rows carry them (the catalog's alone if none exists). */
export function resultColumnNames() {
  return remembered('column-names', Infinity, async () => {
    const catalog = await columnCatalog();
    let keys = [];
    try {
      const row = listOf(await getJSON('/results/latest', { limit: 1 }), 'rows')[0];
      keys = row ? Object.keys(row) : [];
    } catch {
      keys = [];
    }
    return [...new Set([...keys, ...catalog.keys()])];
  });
}

/** The saved screens: [{name, title, description, expression, version, builtin}]. */
export function savedScreens() {
  return remembered('screens', 60000, async () => listOf(await getJSON('/screens'), 'screens', 'items'));
}

/** Sessions with results, newest first. */
export function resultSessions() {
  return remembered('sessions', 15000, async () => {
    const body = await getJSON('/partitions');
    return [...((body.datasets && body.datasets.results) || [])].reverse();
  });
}
