// Charts drawn on canvas by our own code: price candles with moving averages and volume, indicator lines,
// and horizontal bars. Each chart is a focusable canvas; the pointer or ←/→ (Home/End) move a cursor whose
// values the chart hands to `onCursor`, so the page can show them as text (the canvas itself is an image to
// assistive technology, labelled by `label`).

const css = (name, fallback) => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

function palette() {
  return {
    text: css('--muted', '#5b6470'),
    grid: css('--grid', '#e6e9ee'),
    axis: css('--border', '#cfd5dd'),
    up: css('--up', '#1a7f37'),
    down: css('--down', '#c0392b'),
    cursor: css('--fg', '#1d2330'),
    volume: css('--volume', '#9aa7b8'),
    accent: css('--accent', '#1f6feb'),
    bg: css('--bg', '#ffffff'),
  };
}

/** About `count` round tick values spanning [min, max]. */
export function niceTicks(min, max, count = 5) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  if (min === max) return [min];
  const raw = (max - min) / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) || 10 * magnitude;
  const ticks = [];
  for (let value = Math.ceil(min / step) * step; value <= max + step * 1e-9; value += step) ticks.push(+value.toFixed(10));
  return ticks;
}

/** Simple moving average of `values` over `period` (null until `period` values were seen, or on a gap). */
export function sma(values, period) {
  const out = new Array(values.length).fill(null);
  let sum = 0;
  let run = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value === null || value === undefined) {
      sum = 0;
      run = 0;
      continue;
    }
    sum += value;
    run++;
    if (run > period) sum -= values[i - period];
    if (run >= period) out[i] = sum / period;
  }
  return out;
}

function extent(arrays, from = 0, to = Infinity) {
  let low = Infinity;
  let high = -Infinity;
  for (const values of arrays) {
    if (!values) continue;
    const end = Math.min(values.length, to);
    for (let i = from; i < end; i++) {
      const value = values[i];
      if (value === null || value === undefined || Number.isNaN(value)) continue;
      if (value < low) low = value;
      if (value > high) high = value;
    }
  }
  return [low, high];
}

const shortNumber = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });
const axisNumber = (value, span) => {
  if (Math.abs(value) >= 10000) return shortNumber.format(value);
  const digits = span >= 50 ? 0 : span >= 5 ? 1 : span >= 0.5 ? 2 : 3;
  return value.toFixed(digits);
};
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** A canvas in `host` that redraws on resize and keeps a cursor moved by pointer and keyboard. */
class CanvasChart {
  constructor(host, { height = 320, label = 'Chart', onCursor } = {}) {
    this.host = host;
    this.height = height;
    this.onCursor = onCursor;
    this.cursor = null;
    this.count = 0;
    this.frame = 0;
    this.canvas = document.createElement('canvas');
    this.canvas.tabIndex = 0;
    this.canvas.setAttribute('role', 'img');
    this.canvas.setAttribute('aria-label', label);
    this.canvas.className = 'chart-canvas';
    host.append(this.canvas);
    this.canvas.addEventListener('pointermove', (event) => this.pointer(event));
    this.canvas.addEventListener('pointerleave', () => this.moveCursor(null));
    this.canvas.addEventListener('keydown', (event) => this.key(event));
    this.resizer = new ResizeObserver(() => this.schedule());
    this.resizer.observe(host);
  }

  schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.paint();
    });
  }

  paint() {
    const width = this.host.clientWidth;
    if (!width) return;
    const ratio = window.devicePixelRatio || 1;
    if (this.canvas.width !== Math.round(width * ratio) || this.canvas.height !== Math.round(this.height * ratio)) {
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(this.height * ratio);
      this.canvas.style.height = `${this.height}px`;
    }
    const context = this.canvas.getContext('2d');
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, this.height);
    context.font = '11px system-ui, -apple-system, "Segoe UI", sans-serif';
    this.draw(context, width, this.height, palette());
    this.canvas.dataset.drawn = String(this.count);
  }

  /** Index under a pointer x; subclasses set this.plot = {left, width} and this.count. */
  indexAt(x) {
    if (!this.plot || !this.count) return null;
    const index = Math.floor(((x - this.plot.left) / this.plot.width) * this.count);
    return index < 0 || index >= this.count ? null : index;
  }

  pointer(event) {
    const box = this.canvas.getBoundingClientRect();
    this.moveCursor(this.indexAt(event.clientX - box.left));
  }

  key(event) {
    if (!this.count) return;
    const current = this.cursor ?? this.count - 1;
    const step = event.shiftKey ? 10 : 1;
    const moves = { ArrowLeft: current - step, ArrowRight: current + step, Home: 0, End: this.count - 1 };
    if (!(event.key in moves)) {
      if (event.key === 'Escape') this.moveCursor(null);
      return;
    }
    event.preventDefault();
    this.moveCursor(Math.max(0, Math.min(this.count - 1, moves[event.key])));
  }

  moveCursor(index) {
    if (index === this.cursor) return;
    this.cursor = index;
    this.onCursor?.(index);
    this.schedule();
  }

  xOf(index) {
    return this.plot.left + ((index + 0.5) / this.count) * this.plot.width;
  }

  drawDates(context, dates, top, colors) {
    context.fillStyle = colors.text;
    context.textAlign = 'center';
    context.textBaseline = 'top';
    let lastX = -Infinity;
    let lastMonth = null;
    const long = dates.length > 300;
    for (let i = 0; i < dates.length; i++) {
      const [year, month] = dates[i].split('-');
      const key = long ? year + (Number(month) <= 6 ? 'a' : 'b') : year + month;
      if (key === lastMonth) continue;
      lastMonth = key;
      const x = this.xOf(i);
      if (x - lastX < 56) continue;
      const label = Number(month) === 1 || i === 0 ? `${MONTHS[Number(month) - 1]} ${year}` : MONTHS[Number(month) - 1];
      const half = context.measureText(label).width / 2;
      if (x - half < 0 || x + half > this.plot.left + this.plot.width + 40) continue;
      lastX = x;
      context.fillText(label, x, top);
      context.strokeStyle = colors.grid;
      context.beginPath();
      context.moveTo(Math.round(x) + 0.5, this.plot.top);
      context.lineTo(Math.round(x) + 0.5, top - 4);
      context.stroke();
    }
  }

  drawAxis(context, low, high, top, height, colors, right) {
    const ticks = niceTicks(low, high, Math.max(2, Math.floor(height / 48)));
    const scale = (value) => top + height - ((value - low) / (high - low || 1)) * height;
    context.textAlign = 'left';
    context.textBaseline = 'middle';
    for (const tick of ticks) {
      const y = Math.round(scale(tick)) + 0.5;
      context.strokeStyle = colors.grid;
      context.beginPath();
      context.moveTo(this.plot.left, y);
      context.lineTo(this.plot.left + this.plot.width, y);
      context.stroke();
      context.fillStyle = colors.text;
      context.fillText(axisNumber(tick, high - low), right + 6, y);
    }
    return scale;
  }

  drawCursor(context, colors) {
    if (this.cursor === null) return;
    const x = Math.round(this.xOf(this.cursor)) + 0.5;
    context.strokeStyle = colors.cursor;
    context.setLineDash([3, 3]);
    context.beginPath();
    context.moveTo(x, this.plot.top);
    context.lineTo(x, this.plot.bottom);
    context.stroke();
    context.setLineDash([]);
  }
}

function drawLine(context, values, xOf, scale, color, width = 1.5) {
  context.strokeStyle = color;
  context.fillStyle = color;
  context.lineWidth = width;
  context.beginPath();
  let drawing = false;
  let points = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value === null || value === undefined || Number.isNaN(value)) {
      drawing = false;
      continue;
    }
    points++;
    const x = xOf(i);
    const y = scale(value);
    if (drawing) context.lineTo(x, y);
    else context.moveTo(x, y);
    drawing = true;
  }
  context.stroke();
  context.lineWidth = 1;
  // Isolated values (sessions scanned only now and then) would vanish as lines: mark each with a dot.
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value === null || value === undefined) continue;
    const before = i > 0 ? values[i - 1] : null;
    const after = i + 1 < values.length ? values[i + 1] : null;
    if ((before === null || before === undefined) && (after === null || after === undefined)) {
      context.beginPath();
      context.arc(xOf(i), scale(value), 2.5, 0, Math.PI * 2);
      context.fill();
    }
  }
  return points;
}

/**
 * Candles (or OHLC bars when narrow), moving-average overlays and a volume pane.
 * data: {dates, open, high, low, close, volume, overlays: [{label, values, color}]}
 */
export class PriceChart extends CanvasChart {
  constructor(host, options = {}) {
    super(host, { height: 360, ...options });
    this.data = null;
  }

  setData(data) {
    this.data = data;
    this.count = data.dates.length;
    this.cursor = null;
    this.schedule();
  }

  draw(context, width, height, colors) {
    const data = this.data;
    if (!data || !this.count) return;
    const axisWidth = 56;
    this.plot = { left: 8, top: 8, width: width - 8 - axisWidth, bottom: height - 22 };
    const priceHeight = Math.round((this.plot.bottom - this.plot.top) * 0.76);
    const volumeTop = this.plot.top + priceHeight + 10;
    const volumeHeight = this.plot.bottom - volumeTop;
    const right = this.plot.left + this.plot.width;
    const overlays = data.overlays || [];
    const [low, high] = extent([data.low, data.high, ...overlays.map((o) => o.values)]);
    const pad = (high - low) * 0.04 || 1;
    const scale = this.drawAxis(context, low - pad, high + pad, this.plot.top, priceHeight, colors, right);
    const [, maxVolume] = extent([data.volume]);
    this.drawDates(context, data.dates, this.plot.bottom + 6, colors);

    const slot = this.plot.width / this.count;
    const body = Math.max(1, Math.floor(slot * 0.7));
    for (let i = 0; i < this.count; i++) {
      const open = data.open[i];
      const close = data.close[i];
      if (close === null || close === undefined) continue;
      const rising = close >= (open ?? close);
      const color = rising ? colors.up : colors.down;
      const x = this.xOf(i);
      context.strokeStyle = color;
      context.fillStyle = color;
      const highY = scale(data.high[i] ?? close);
      const lowY = scale(data.low[i] ?? close);
      context.beginPath();
      context.moveTo(Math.round(x) + 0.5, highY);
      context.lineTo(Math.round(x) + 0.5, lowY);
      context.stroke();
      if (body >= 3) {
        const top = scale(Math.max(open ?? close, close));
        const bottom = scale(Math.min(open ?? close, close));
        context.fillRect(Math.round(x - body / 2), top, body, Math.max(1, bottom - top));
      }
      const volume = data.volume[i];
      if (volume && maxVolume > 0) {
        const h = (volume / maxVolume) * volumeHeight;
        context.globalAlpha = 0.45;
        context.fillRect(Math.round(x - body / 2), volumeTop + volumeHeight - h, body, h);
        context.globalAlpha = 1;
      }
    }
    for (const overlay of overlays) drawLine(context, overlay.values, (i) => this.xOf(i), scale, overlay.color, 1.6);
    context.fillStyle = colors.text;
    context.textAlign = 'left';
    context.textBaseline = 'top';
    if (maxVolume > 0) context.fillText(`Volume (max ${shortNumber.format(maxVolume)})`, this.plot.left + 4, volumeTop);
    this.plot.bottom = volumeTop + volumeHeight;
    this.drawCursor(context, colors);
  }
}

/**
 * Lines (and histogram bars) over dates; nulls leave gaps, isolated values show as dots.
 * data: {dates, series: [{label, values, color, bars}], guides: [values], range: [low, high] | null}
 */
export class LineChart extends CanvasChart {
  constructor(host, options = {}) {
    super(host, { height: 180, ...options });
    this.data = null;
  }

  setData(data) {
    this.data = data;
    this.count = data.dates.length;
    this.cursor = null;
    this.schedule();
  }

  draw(context, width, height, colors) {
    const data = this.data;
    if (!data || !this.count) return;
    const axisWidth = 56;
    this.plot = { left: 8, top: 8, width: width - 8 - axisWidth, bottom: height - 22 };
    const plotHeight = this.plot.bottom - this.plot.top;
    let [low, high] = data.range || extent([...data.series.map((s) => s.values), data.guides || []]);
    if (!Number.isFinite(low)) {
      context.fillStyle = colors.text;
      context.textAlign = 'center';
      context.fillText('No stored values in this range', width / 2, height / 2);
      return;
    }
    if (data.series.some((s) => s.bars)) {
      low = Math.min(low, 0);
      high = Math.max(high, 0);
    }
    const pad = data.range ? 0 : (high - low) * 0.06 || 1;
    const right = this.plot.left + this.plot.width;
    const scale = this.drawAxis(context, low - pad, high + pad, this.plot.top, plotHeight, colors, right);
    this.drawDates(context, data.dates, this.plot.bottom + 6, colors);
    for (const guide of data.guides || []) {
      const y = Math.round(scale(guide)) + 0.5;
      context.strokeStyle = colors.axis;
      context.setLineDash([4, 4]);
      context.beginPath();
      context.moveTo(this.plot.left, y);
      context.lineTo(right, y);
      context.stroke();
      context.setLineDash([]);
    }
    const slot = this.plot.width / this.count;
    for (const series of data.series) {
      if (series.bars) {
        const zero = scale(0);
        const body = Math.max(1, Math.floor(slot * 0.7));
        for (let i = 0; i < this.count; i++) {
          const value = series.values[i];
          if (value === null || value === undefined) continue;
          context.fillStyle = value >= 0 ? colors.up : colors.down;
          const y = scale(value);
          context.fillRect(Math.round(this.xOf(i) - body / 2), Math.min(y, zero), body, Math.max(1, Math.abs(zero - y)));
        }
      } else {
        drawLine(context, series.values, (i) => this.xOf(i), scale, series.color || colors.accent);
      }
    }
    this.drawCursor(context, colors);
  }
}

/**
 * Horizontal bars, one row per label and one bar per group within it, around a zero line.
 * data: {labels, groups: [{label, values, color}], format(value) → text}
 */
export class BarChart extends CanvasChart {
  constructor(host, options = {}) {
    super(host, { height: 200, ...options });
    this.data = null;
  }

  setData(data) {
    this.data = data;
    this.count = data.labels.length;
    this.height = Math.max(120, 34 + this.count * (10 + 9 * data.groups.length));
    this.cursor = null;
    this.schedule();
  }

  indexAt(x, y) {
    if (!this.plot || !this.count || y === undefined) return null;
    const index = Math.floor((y - this.plot.top) / this.rowHeight);
    return index < 0 || index >= this.count ? null : index;
  }

  pointer(event) {
    const box = this.canvas.getBoundingClientRect();
    this.moveCursor(this.indexAt(event.clientX - box.left, event.clientY - box.top));
  }

  key(event) {
    const translated = { ArrowUp: 'ArrowLeft', ArrowDown: 'ArrowRight' }[event.key];
    if (translated) {
      event.preventDefault();
      super.key(new KeyboardEvent('keydown', { key: translated, shiftKey: event.shiftKey }));
    } else {
      super.key(event);
    }
  }

  draw(context, width, height, colors) {
    const data = this.data;
    if (!data || !this.count) return;
    const labelWidth = Math.min(220, Math.max(90, width * 0.34));
    const [low, high] = extent(data.groups.map((g) => g.values));
    const valueRoom = 60; // value labels beside the bars' ends
    const leftRoom = Number.isFinite(low) && low < 0 ? valueRoom : 8;
    this.plot = { left: labelWidth + leftRoom, top: 8, width: width - labelWidth - leftRoom - valueRoom, bottom: height - 26 };
    this.rowHeight = (this.plot.bottom - this.plot.top) / this.count;
    const min = Math.min(0, Number.isFinite(low) ? low : 0);
    const max = Math.max(0, Number.isFinite(high) ? high : 0);
    const span = max - min || 1;
    const xOf = (value) => this.plot.left + ((value - min) / span) * this.plot.width;
    const format = data.format || ((value) => value.toFixed(3));
    context.textBaseline = 'middle';
    for (let i = 0; i < this.count; i++) {
      const top = this.plot.top + i * this.rowHeight;
      if (i === this.cursor) {
        context.fillStyle = colors.grid;
        context.fillRect(0, top, width, this.rowHeight);
      }
      context.fillStyle = colors.cursor;
      context.textAlign = 'right';
      let label = data.labels[i];
      while (context.measureText(label).width > labelWidth - 12 && label.length > 4) label = `${label.slice(0, -2)}…`;
      context.fillText(label, labelWidth - 8, top + this.rowHeight / 2);
      const barHeight = Math.max(4, (this.rowHeight - 6) / data.groups.length - 2);
      data.groups.forEach((group, g) => {
        const value = group.values[i];
        if (value === null || value === undefined) return;
        const y = top + 3 + g * (barHeight + 2);
        const x0 = xOf(0);
        const x1 = xOf(value);
        context.fillStyle = group.color || (value >= 0 ? colors.up : colors.down);
        context.fillRect(Math.min(x0, x1), y, Math.max(1, Math.abs(x1 - x0)), barHeight);
        context.fillStyle = colors.text;
        context.textAlign = value >= 0 ? 'left' : 'right';
        if (barHeight >= 8) context.fillText(format(value), value >= 0 ? x1 + 4 : x1 - 4, y + barHeight / 2);
      });
    }
    const zero = Math.round(xOf(0)) + 0.5;
    context.strokeStyle = colors.axis;
    context.beginPath();
    context.moveTo(zero, this.plot.top);
    context.lineTo(zero, this.plot.bottom);
    context.stroke();
    context.fillStyle = colors.text;
    context.textAlign = 'left';
    context.textBaseline = 'top';
    let x = this.plot.left;
    for (const group of data.groups) {
      context.fillStyle = group.color || colors.up;
      context.fillRect(x, this.plot.bottom + 8, 10, 10);
      context.fillStyle = colors.text;
      context.fillText(group.label, x + 14, this.plot.bottom + 8);
      x += context.measureText(group.label).width + 34;
    }
  }
}
