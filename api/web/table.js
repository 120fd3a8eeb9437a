// A sortable table that renders only the rows in view, so thousands of rows scroll as fast as forty.
//
// Rows are plain objects; columns are {key, label, format(value) → text, numeric, title}. Every row is the
// same height, so the rows in view follow from the scroll offset alone, and spacer rows above and below
// keep the scrollbar honest. Sorting is in the page (nulls last either way); rows added later (a live
// batch) are merged in place and marked fresh for a moment.
//
// Keyboard: the table body takes focus (Tab); ↑/↓, Page Up/Down, Home/End move the active row, Enter opens
// it. Column headers are buttons that sort (again: reverse).

import { escapeHtml, signalClass } from './format.js';

const OVERSCAN = 8;
/** Column widths by kind, in rem: cells cut long text with an ellipsis (the full value is in the row's page). */
const WIDTHS_REM = { symbol: 5.5, num: 6.5, wider: 7.5, text: 8.5, wide: 12 };
const FRESH_MS = 4000;
let tableIds = 0;

function compare(a, b) {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  return String(a).localeCompare(String(b));
}

export class VirtualTable {
  /**
   * @param {HTMLElement} host  an empty element the table fills
   * @param {object} options  {label, rowHeight, rowKey(row), onOpen(row), onSort(key, descending), empty}
   */
  constructor(host, options = {}) {
    this.id = `vt${++tableIds}`;
    this.options = options;
    this.rowHeight = options.rowHeight || 32;
    this.rowKey = options.rowKey || ((row) => row.seq ?? row.symbol);
    this.columns = [];
    this.rows = [];
    this.sortKey = null;
    this.descending = false;
    this.active = -1;
    this.fresh = new Map();
    this.frame = 0;
    this.firstRendered = -1;
    this.lastRendered = -1;

    host.classList.add('vt');
    host.innerHTML = `
      <div class="vt-scroll">
        <table role="grid" tabindex="0" aria-label="${escapeHtml(options.label || 'Rows')}" aria-rowcount="1">
          <colgroup></colgroup>
          <thead><tr></tr></thead>
          <tbody><tr class="vt-pad vt-top" aria-hidden="true"><td></td></tr><tr class="vt-pad vt-bottom" aria-hidden="true"><td></td></tr></tbody>
        </table>
      </div>
      <p class="vt-empty" hidden></p>`;
    this.host = host;
    this.scroller = host.querySelector('.vt-scroll');
    this.table = host.querySelector('table');
    this.colgroup = host.querySelector('colgroup');
    this.headRow = host.querySelector('thead tr');
    this.body = host.querySelector('tbody');
    this.top = host.querySelector('.vt-top');
    this.bottom = host.querySelector('.vt-bottom');
    this.emptyNote = host.querySelector('.vt-empty');

    this.scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
    this.headRow.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-key]');
      if (button) this.sortBy(button.dataset.key);
    });
    this.body.addEventListener('click', (event) => {
      const tr = event.target.closest('tr[data-index]');
      if (!tr) return;
      this.setActive(Number(tr.dataset.index), false);
      if (!event.target.closest('a')) this.table.focus({ preventScroll: true });
    });
    this.body.addEventListener('dblclick', (event) => {
      const tr = event.target.closest('tr[data-index]');
      if (tr) this.open(Number(tr.dataset.index));
    });
    this.table.addEventListener('keydown', (event) => this.key(event));
    this.table.addEventListener('focus', () => {
      if (this.active < 0 && this.rows.length) this.setActive(this.firstVisible(), false);
    });
    new ResizeObserver(() => this.schedule()).observe(this.scroller);
  }

  /** Columns: [{key, label, format, numeric, title, width}]. */
  setColumns(columns) {
    this.columns = columns;
    this.table.setAttribute('aria-colcount', String(columns.length));
    const widths = columns.map((column) => WIDTHS_REM[column.width || (column.numeric ? 'num' : 'text')]);
    this.colgroup.innerHTML = columns.map(() => '<col>').join('');
    [...this.colgroup.children].forEach((col, i) => {
      col.style.width = `${widths[i]}rem`;
    });
    // A fixed layout needs a definite width: the columns' sum (at least the box's, via min-width in CSS).
    this.table.style.width = `${widths.reduce((sum, width) => sum + width, 0)}rem`;
    this.renderHead();
    this.top.firstElementChild.colSpan = columns.length;
    this.bottom.firstElementChild.colSpan = columns.length;
    this.firstRendered = -1;
    this.schedule();
  }

  renderHead() {
    this.headRow.innerHTML = this.columns
      .map((column) => {
        const sorted = column.key === this.sortKey;
        const sort = sorted ? (this.descending ? 'descending' : 'ascending') : 'none';
        const arrow = sorted ? (this.descending ? '▼' : '▲') : '';
        const title = column.title ? ` title="${escapeHtml(column.title)}"` : '';
        return `<th scope="col" aria-sort="${sort}" class="${column.numeric ? 'num' : ''}"><button type="button" data-key="${escapeHtml(column.key)}"${title}>${escapeHtml(column.label)}<span class="arrow" aria-hidden="true">${arrow}</span></button></th>`;
      })
      .join('');
  }

  /** Replace every row; keeps the current sort. */
  setRows(rows) {
    this.rows = rows.slice();
    this.fresh.clear();
    this.active = Math.min(this.active, this.rows.length - 1);
    this.applySort();
    this.firstRendered = -1;
    this.schedule();
  }

  /** Merge rows in (a live batch): they take their place in the current order and show as fresh. */
  addRows(rows) {
    if (!rows.length) return;
    const activeRow = this.rows[this.active];
    const now = performance.now();
    for (const row of rows) this.fresh.set(this.rowKey(row), now);
    this.rows.push(...rows);
    this.applySort();
    if (activeRow) this.active = this.rows.indexOf(activeRow);
    this.firstRendered = -1;
    this.render();
    setTimeout(() => {
      this.firstRendered = -1;
      this.schedule();
    }, FRESH_MS + 50);
  }

  sortBy(key, descending) {
    if (descending === undefined) descending = key === this.sortKey ? !this.descending : this.defaultDescending(key);
    this.sortKey = key;
    this.descending = descending;
    const activeRow = this.rows[this.active];
    this.applySort();
    if (activeRow) this.active = this.rows.indexOf(activeRow);
    this.renderHead();
    this.firstRendered = -1;
    this.schedule();
    this.options.onSort?.(key, descending);
  }

  defaultDescending(key) {
    const column = this.columns.find((c) => c.key === key);
    return Boolean(column && column.numeric);
  }

  applySort() {
    const key = this.sortKey;
    if (!key) return;
    const sign = this.descending ? -1 : 1;
    this.rows.sort((left, right) => {
      const a = left[key];
      const b = right[key];
      const aMissing = a === null || a === undefined || Number.isNaN(a);
      const bMissing = b === null || b === undefined || Number.isNaN(b);
      if (aMissing || bMissing) return aMissing === bMissing ? 0 : aMissing ? 1 : -1;
      return sign * compare(a, b);
    });
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  firstVisible() {
    return Math.min(this.rows.length - 1, Math.floor(this.scroller.scrollTop / this.rowHeight));
  }

  render() {
    const total = this.rows.length;
    this.table.setAttribute('aria-rowcount', String(total + 1));
    this.host.dataset.rows = String(total);
    this.emptyNote.hidden = total > 0;
    if (!total) this.emptyNote.textContent = this.options.empty || 'No rows.';
    const headHeight = this.headRow.offsetHeight || this.rowHeight;
    const view = Math.max(this.scroller.clientHeight - headHeight, this.rowHeight * 10);
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / this.rowHeight) - OVERSCAN);
    const last = Math.min(total, Math.ceil((this.scroller.scrollTop + view) / this.rowHeight) + OVERSCAN);
    if (first === this.firstRendered && last === this.lastRendered) return;
    this.firstRendered = first;
    this.lastRendered = last;
    const now = performance.now();
    const parts = [];
    for (let index = first; index < last; index++) parts.push(this.rowHtml(this.rows[index], index, now));
    this.top.style.height = `${first * this.rowHeight}px`;
    this.bottom.style.height = `${(total - last) * this.rowHeight}px`;
    for (const tr of this.body.querySelectorAll('tr[data-index]')) tr.remove();
    this.top.insertAdjacentHTML('afterend', parts.join(''));
    this.options.onRender?.(first, last);
  }

  rowHtml(row, index, now) {
    const key = this.rowKey(row);
    const freshAt = this.fresh.get(key);
    const classes = [];
    if (freshAt !== undefined && now - freshAt < FRESH_MS) classes.push('fresh');
    if (index === this.active) classes.push('active');
    const cells = this.columns.map((column) => {
      const value = row[column.key];
      let html;
      if (column.link) {
        html = value ? `<a href="${escapeHtml(column.link(row))}" tabindex="-1">${escapeHtml(column.format(value))}</a>` : '';
      } else if (column.badge) {
        html = value ? `<span class="badge ${signalClass(value)}">${escapeHtml(value)}</span>` : '';
      } else {
        html = escapeHtml(column.format(value));
      }
      return `<td${column.numeric ? ' class="num"' : ''}>${html}</td>`;
    });
    const selected = index === this.active ? 'true' : 'false';
    return `<tr id="${this.id}-r${index}" data-index="${index}" data-key="${escapeHtml(key)}" aria-rowindex="${index + 2}" aria-selected="${selected}" class="${classes.join(' ')}">${cells.join('')}</tr>`;
  }

  setActive(index, scroll = true) {
    if (!this.rows.length) return;
    this.active = Math.max(0, Math.min(this.rows.length - 1, index));
    this.table.setAttribute('aria-activedescendant', `${this.id}-r${this.active}`);
    if (scroll) {
      const top = this.active * this.rowHeight;
      const headHeight = this.headRow.offsetHeight;
      const view = this.scroller.clientHeight - headHeight;
      if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
      else if (top + this.rowHeight > this.scroller.scrollTop + view) this.scroller.scrollTop = top + this.rowHeight - view;
    }
    this.firstRendered = -1;
    this.render();
  }

  open(index) {
    const row = this.rows[index];
    if (row) this.options.onOpen?.(row);
  }

  key(event) {
    if (event.target !== this.table) return;
    const page = Math.max(1, Math.floor((this.scroller.clientHeight - this.headRow.offsetHeight) / this.rowHeight) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    if (event.key in moves) this.setActive((this.active < 0 ? this.firstVisible() - 1 : this.active) + moves[event.key]);
    else if (event.key === 'Home') this.setActive(0);
    else if (event.key === 'End') this.setActive(this.rows.length - 1);
    else if (event.key === 'Enter' && this.active >= 0) this.open(this.active);
    else return;
    event.preventDefault();
  }
}
