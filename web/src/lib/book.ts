/**
 * The exchange's order book as the feed describes it: a snapshot (`seq`, bids, asks as [price, quantity])
 * then deltas `{seq, changes: [[side, price, quantity now]]}` numbered contiguously; quantity 0 removes
 * a level. A delta that skips a number means a message was lost: the caller asks for a new snapshot.
 * Pure and immutable.
 */

export type Level = [price: number, quantity: number];

export interface Book {
  seq: number;
  bids: Map<number, number>;
  asks: Map<number, number>;
}

export interface Snapshot {
  seq: number;
  bids: Level[];
  asks: Level[];
}

export interface Delta {
  seq: number;
  changes: [side: 'buy' | 'sell' | string, price: number, quantity: number][];
}

export function bookFromSnapshot(s: Snapshot): Book {
  return { seq: s.seq, bids: new Map(s.bids), asks: new Map(s.asks) };
}

/** The book after `delta`; `gap` when the delta does not follow on (then the book is unchanged). */
export function applyDelta(book: Book, delta: Delta): { book: Book; gap: boolean } {
  if (delta.seq <= book.seq) return { book, gap: false }; // already in the snapshot
  if (delta.seq !== book.seq + 1) return { book, gap: true };
  const bids = new Map(book.bids);
  const asks = new Map(book.asks);
  for (const [side, price, quantity] of delta.changes) {
    const levels = side === 'buy' ? bids : asks;
    if (quantity === 0) levels.delete(price);
    else levels.set(price, quantity);
  }
  return { book: { seq: delta.seq, bids, asks }, gap: false };
}

/** Best first: bids high to low, asks low to high. */
export function levels(book: Book, side: 'buy' | 'sell', depth = 20): Level[] {
  const entries = [...(side === 'buy' ? book.bids : book.asks).entries()];
  entries.sort((a, b) => (side === 'buy' ? b[0] - a[0] : a[0] - b[0]));
  return entries.slice(0, depth);
}

export function spread(book: Book): number | null {
  const bid = levels(book, 'buy', 1)[0];
  const ask = levels(book, 'sell', 1)[0];
  return bid && ask ? ask[0] - bid[0] : null;
}

/** Satoshis → "0.00012345 BTC" (exact). */
export function formatBtc(sats: number | null | undefined): string {
  if (sats == null) return '—';
  const n = BigInt(sats);
  const sign = n < 0n ? '-' : '';
  const abs = n < 0n ? -n : n;
  return `${sign}${abs / 100_000_000n}.${(abs % 100_000_000n).toString().padStart(8, '0')}`;
}
