/** Display formatting: amounts in base units (1 AITBC = 10^6), hashes, durations, rates. Pure. */

export const BASE_UNITS_PER_AITBC = 1_000_000n;

/** Base units (integer) → "12.5" AITBC, exact (no floats), trailing zeros trimmed. */
export function formatAitbc(baseUnits: number | bigint | string): string {
  const n = BigInt(baseUnits);
  const sign = n < 0n ? '-' : '';
  const abs = n < 0n ? -n : n;
  const whole = abs / BASE_UNITS_PER_AITBC;
  const frac = (abs % BASE_UNITS_PER_AITBC).toString().padStart(6, '0').replace(/0+$/, '');
  const grouped = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return sign + grouped + (frac ? '.' + frac : '');
}

/** "12.5" AITBC → base units; throws on more than 6 decimals, signs or junk. */
export function parseAitbc(text: string): bigint {
  const m = /^\s*(\d+)(?:\.(\d{0,6}))?\s*$/.exec(text.replace(/,/g, ''));
  if (!m) throw new Error(`not an AITBC amount (at most 6 decimals): ${JSON.stringify(text)}`);
  return BigInt(m[1]!) * BASE_UNITS_PER_AITBC + BigInt((m[2] ?? '').padEnd(6, '0'));
}

/** A long hash or address shortened for tables: "d44ea1f8…5b6f". */
export function shortHash(value: string | null | undefined, head = 8, tail = 4): string {
  if (!value) return '—';
  return value.length <= head + tail + 1 ? value : `${value.slice(0, head)}…${value.slice(-tail)}`;
}

export function formatDuration(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

/** "3 s ago", "5 min ago" from a unix time in ms. */
export function timeAgo(thenMs: number, nowMs: number = Date.now()): string {
  const s = Math.max(0, Math.round((nowMs - thenMs) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

export function formatRate(value: number | null | undefined, unit: string, digits = 1): string {
  if (value == null || !Number.isFinite(value)) return '—';
  return `${value.toFixed(digits)} ${unit}`;
}

export function formatPercent(fraction: number | null | undefined, digits = 0): string {
  if (fraction == null || !Number.isFinite(fraction)) return '—';
  return `${(fraction * 100).toFixed(digits)} %`;
}
