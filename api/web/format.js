// Formatting of values by the catalog's units (GET /columns): fractions as percentages, prices with cents,
// volumes and dollars compact. Formatters are built once per column, since a table formats thousands of cells.

const plain = (digits) => new Intl.NumberFormat('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
const compact = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 2 });
const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const two = plain(2);
const one = plain(1);
const three = plain(3);
const percent2 = new Intl.NumberFormat('en-US', { style: 'percent', minimumFractionDigits: 2, maximumFractionDigits: 2 });

export const formatInteger = (value) => (value === null || value === undefined ? '' : integer.format(value));
export const formatPercent = (value) => (value === null || value === undefined ? '' : percent2.format(value));
export const formatCompact = (value) => (value === null || value === undefined ? '' : compact.format(value));
export const formatPrice = (value) => (value === null || value === undefined ? '' : two.format(value));
export const formatNumber = (value, digits = 2) =>
  value === null || value === undefined || Number.isNaN(value) ? '' : plain(digits).format(value);

/** Units of the scan's own columns, which the catalog does not describe. */
const OWN_UNITS = {
  date: 'date', symbol: 'text', sector: 'text', industry: 'text', name: 'text', regime: 'text', signal: 'signal',
  consensus_signal: 'signal', priority_tier: 'text', exchange: 'text', close: 'price', open: 'price', high: 'price',
  low: 'price', volume: 'shares', tech_rating: 'rating', trend_score: 'rating', momentum_score: 'rating',
  oscillator_score: 'rating', volume_score: 'rating', alpha_5d: 'alpha', alpha_10d: 'alpha', alpha_score: 'rating',
  priority_score: 'rating', batch: 'count', seq: 'count', history_sessions: 'sessions',
};

const BY_UNIT = {
  fraction: (v) => percent2.format(v),
  percent: (v) => `${two.format(v)}%`,
  points: (v) => one.format(v),
  price: (v) => two.format(v),
  ratio: (v) => two.format(v),
  shares: (v) => compact.format(v),
  dollars: (v) => `$${compact.format(v)}`,
  score: (v) => two.format(v),
  rating: (v) => one.format(v),
  alpha: (v) => three.format(v),
  sessions: (v) => integer.format(v),
  count: (v) => integer.format(v),
  boolean: (v) => (v ? 'yes' : 'no'),
};

export function unitOf(name, info) {
  return (info && info.unit) || OWN_UNITS[name] || null;
}

/** A function value → text for the column `name` (`info`: its /columns entry, if any). */
export function formatterFor(name, info) {
  const unit = unitOf(name, info);
  const byUnit = BY_UNIT[unit];
  if (byUnit) return (value) => (value === null || value === undefined ? '' : byUnit(value));
  return (value) => {
    if (value === null || value === undefined) return '';
    if (typeof value === 'number') return Number.isInteger(value) ? integer.format(value) : two.format(value);
    if (typeof value === 'boolean') return value ? 'yes' : 'no';
    return String(value);
  };
}

/** Whether the column's values line up to the right (numbers) in a table. */
export function isNumeric(name, info, sample) {
  const unit = unitOf(name, info);
  if (unit && ['text', 'date', 'signal', 'boolean'].includes(unit)) return false;
  if (unit) return true;
  if (info && info.type) return /int|float|decimal|number/i.test(info.type);
  return typeof sample === 'number';
}

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

/** A CSS class for a signal band: strong-buy, buy, neutral, sell, strong-sell. */
export const signalClass = (signal) => (signal ? `signal-${String(signal).toLowerCase().replace(/\s+/g, '-')}` : '');

/** A short label for a column name: rsi → RSI, change_1d → Change 1d. */
export function labelOf(name) {
  const special = { rsi: 'RSI', macd: 'MACD', atr: 'ATR', atr_pct: 'ATR %', seq: 'Seq', sma_50: 'SMA 50', sma_200: 'SMA 200',
    tech_rating: 'TechRating', rel_volume: 'Rel. vol.', change_1d: 'Change 1d', adx_14: 'ADX 14', cci_20: 'CCI 20',
    mfi_14: 'MFI 14', bb_pct_b: 'BB %B', mom_21: 'Mom. 21', mom_63: 'Mom. 63', mom_126: 'Mom. 126' };
  if (special[name]) return special[name];
  const words = name.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}
