// HTTP access to the Technic API on this page's origin: JSON requests carrying the user's API key, their
// errors as ApiError (message and detail as the API words them), and the screen-language error of a bad
// `where`. Also small normalizers for answers whose exact shape may still grow (lists or {items}).

const KEY_NAME = 'technic.apiKey';

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || localStorage.getItem(KEY_NAME) || '';
}

export function setApiKey(key, remember) {
  sessionStorage.removeItem(KEY_NAME);
  localStorage.removeItem(KEY_NAME);
  if (key) (remember ? localStorage : sessionStorage).setItem(KEY_NAME, key);
}

export function keyRemembered() {
  return Boolean(localStorage.getItem(KEY_NAME));
}

export class ApiError extends Error {
  constructor(status, message, detail) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.detail = detail;
  }
}

/** `path` with `params` as its query string; null, undefined and '' values are left out. */
export function url(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === '') continue;
    query.set(name, String(value));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

function headers(extra = {}) {
  const all = { Accept: 'application/json', ...extra };
  const key = apiKey();
  if (key) all['X-API-Key'] = key;
  return all;
}

/** The API's own words for a failed response: `message`, else a string `detail`, else the status text. */
async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  let message = response.statusText || `HTTP ${response.status}`;
  if (body && typeof body.message === 'string') message = body.message;
  else if (body && typeof body.detail === 'string') message = body.detail;
  else if (body && body.detail && typeof body.detail.message === 'string') message = body.detail.message;
  else if (body && Array.isArray(body.detail) && body.detail[0] && body.detail[0].msg) {
    message = body.detail.map((item) => `${(item.loc || []).join('.')}: ${item.msg}`).join('; ');
  }
  return new ApiError(response.status, message, body ? body.detail : null);
}

export async function getJSON(path, params = {}, { signal } = {}) {
  const response = await fetch(url(path, params), { headers: headers(), signal });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** `body` as JSON by `method` (POST, PUT); the answer's JSON, or null for 204. */
export async function sendJSON(method, path, body, { signal } = {}) {
  const response = await fetch(path, {
    method,
    headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  return response.status === 204 ? null : response.json();
}

export function postJSON(path, body, options = {}) {
  return sendJSON('POST', path, body, options);
}

/** Fetch `address` with the key and save the answer as `filename` (a plain link could not send the key). */
export async function download(address, filename) {
  const response = await fetch(address, { headers: headers({ Accept: '*/*' }) });
  if (!response.ok) throw await failure(response);
  const link = document.createElement('a');
  link.href = URL.createObjectURL(await response.blob());
  link.download = filename;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

/** A stream URL for EventSource, which cannot send headers: the key rides as `api_key`. */
export function streamUrl(path, params = {}) {
  const key = apiKey();
  return url(path, key ? { ...params, api_key: key } : params);
}

/** Same-origin path and query of a URL the API answered (it answers absolute URLs). */
export function localPath(address) {
  const parsed = new URL(address, location.href);
  return parsed.pathname + parsed.search;
}

/**
 * The screen-language error in an ApiError about `field` (`query.where`, `body.where`), or null: {message, position, line, column,
 * expected, suggestions}. The API puts it in `detail` (an object, or one item of a list).
 */
export function whereError(error, field = 'query.where') {
  if (!(error instanceof ApiError) || error.status !== 422) return null;
  const candidates = Array.isArray(error.detail) ? error.detail : [error.detail];
  for (const item of candidates) {
    if (!item || typeof item !== 'object') continue;
    const named = item.field || (Array.isArray(item.loc) ? item.loc.join('.') : '');
    if (named === field || (named === '' && Number.isInteger(item.position))) {
      return {
        message: item.message || item.msg || error.message,
        position: Number.isInteger(item.position) ? item.position : null,
        line: item.line ?? null,
        column: item.column ?? null,
        expected: Array.isArray(item.expected) ? item.expected : [],
        suggestions: Array.isArray(item.suggestions) ? item.suggestions : [],
      };
    }
  }
  return null;
}

/** The list in an answer that is either a list or an object holding one under one of `keys`. */
export function listOf(body, ...keys) {
  if (Array.isArray(body)) return body;
  for (const key of keys) if (body && Array.isArray(body[key])) return body[key];
  return [];
}

/** Run `task` over `items` with at most `limit` in flight; results in input order. */
export async function pooled(items, limit, task) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index], index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
