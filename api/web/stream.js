// A result stream (SSE, GET /events/results/{id}) that survives dropped connections.
//
// EventSource reconnects by itself after a network drop and sends Last-Event-ID, so the server resumes
// after the last seq it delivered. When the browser gives up (the server refused or closed for good), the
// stream asks once with fetch why — a 4xx with a message ends it — and otherwise reconnects with
// `?after=<last seq>` after a growing pause. A `lagging` event is a request to resume from its seq. The
// caller still dedupes rows by seq: a resumed stream never repeats a row, but a caller mixing a REST page
// with a stream may see a row twice.

import { apiKey, streamUrl } from './api.js';

const MAX_PAUSE_MS = 15000;

export class LiveStream {
  /**
   * @param {string} path  e.g. /events/results/2024-06-28
   * @param {object} handlers  onResult(data), onProgress(data), onEnd(data), onState(state, message)
   * @param {number|null} after  the seq already held (rows up to it are not sent)
   * @param {object} params  more query parameters of the stream (e.g. its `where`)
   */
  constructor(path, handlers, after = null, params = {}) {
    this.path = path;
    this.params = params;
    this.handlers = handlers;
    this.lastSeq = after;
    this.source = null;
    this.closed = false;
    this.pause = 1000;
    this.timer = null;
  }

  start() {
    this.closed = false;
    this.open();
    return this;
  }

  open() {
    const params = this.lastSeq === null ? { ...this.params } : { ...this.params, after: this.lastSeq };
    const source = new EventSource(streamUrl(this.path, params));
    this.source = source;
    this.state('connecting');
    source.addEventListener('open', () => {
      this.pause = 1000;
      this.state('live');
    });
    source.addEventListener('result', (event) => {
      const data = JSON.parse(event.data);
      this.track(event);
      this.handlers.onResult?.(data);
    });
    source.addEventListener('progress', (event) => {
      this.track(event);
      this.handlers.onProgress?.(JSON.parse(event.data));
    });
    source.addEventListener('heartbeat', () => this.handlers.onHeartbeat?.());
    source.addEventListener('end', (event) => {
      this.track(event);
      this.close();
      this.handlers.onEnd?.(JSON.parse(event.data));
    });
    source.addEventListener('lagging', (event) => {
      const data = JSON.parse(event.data);
      this.lastSeq = data.last_seq;
      this.reopenLater(0);
    });
    source.addEventListener('error', () => {
      if (this.closed || source !== this.source) return;
      if (source.readyState === EventSource.CONNECTING) {
        this.state('reconnecting');
        return; // the browser retries with Last-Event-ID
      }
      this.diagnose();
    });
  }

  track(event) {
    if (event.lastEventId !== '') {
      const seq = Number(event.lastEventId);
      if (Number.isFinite(seq)) this.lastSeq = seq;
    }
  }

  state(name, message = '') {
    this.handlers.onState?.(name, message);
  }

  /** The browser closed the stream: find out whether the server refuses it (stop) or was away (retry). */
  async diagnose() {
    this.source?.close();
    const params = this.lastSeq === null ? { ...this.params } : { ...this.params, after: this.lastSeq };
    const controller = new AbortController();
    try {
      const headers = { Accept: 'text/event-stream' };
      if (apiKey()) headers['X-API-Key'] = apiKey();
      const response = await fetch(streamUrl(this.path, params), { headers, signal: controller.signal });
      if (response.status >= 400 && response.status < 500 && response.status !== 429) {
        let message = `HTTP ${response.status}`;
        try {
          const body = await response.json();
          message = body.message || (typeof body.detail === 'string' ? body.detail : message);
        } catch {
          /* the status is all there is */
        }
        this.closed = true;
        this.state('failed', message);
        return;
      }
      controller.abort(); // it answered a stream: the server is back, reconnect properly below
    } catch {
      /* unreachable server: retry below */
    }
    this.reopenLater(this.pause);
    this.pause = Math.min(this.pause * 2, MAX_PAUSE_MS);
  }

  reopenLater(delay) {
    this.source?.close();
    if (this.closed) return;
    this.state('reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (!this.closed) this.open();
    }, delay);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.source?.close();
  }
}
