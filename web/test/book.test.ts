import { describe, expect, it } from 'vitest';
import { applyDelta, bookFromSnapshot, formatBtc, levels, spread } from '../src/lib/book';

const snap = { seq: 10, bids: [[100, 5], [99, 1]] as [number, number][], asks: [[101, 2], [105, 7]] as [number, number][] };

describe('order book from the feed', () => {
  it('orders levels best first', () => {
    const book = bookFromSnapshot(snap);
    expect(levels(book, 'buy')).toEqual([[100, 5], [99, 1]]);
    expect(levels(book, 'sell')).toEqual([[101, 2], [105, 7]]);
    expect(spread(book)).toBe(1);
  });

  it('applies contiguous deltas: set, add and remove levels', () => {
    let { book } = applyDelta(bookFromSnapshot(snap), { seq: 11, changes: [['buy', 100, 0], ['sell', 102, 3]] });
    ({ book } = applyDelta(book, { seq: 12, changes: [['buy', 98, 4]] }));
    expect(book.seq).toBe(12);
    expect(levels(book, 'buy')).toEqual([[99, 1], [98, 4]]);
    expect(levels(book, 'sell', 2)).toEqual([[101, 2], [102, 3]]);
  });

  it('ignores deltas already in the snapshot and reports gaps without changing the book', () => {
    const book = bookFromSnapshot(snap);
    expect(applyDelta(book, { seq: 10, changes: [['buy', 100, 0]] })).toEqual({ book, gap: false });
    const gap = applyDelta(book, { seq: 12, changes: [['buy', 100, 0]] });
    expect(gap.gap).toBe(true);
    expect(gap.book).toBe(book);
    expect(levels(book, 'buy')[0]).toEqual([100, 5]);
  });

  it('formats satoshis exactly', () => {
    expect(formatBtc(123_456_789)).toBe('1.23456789');
    expect(formatBtc(1)).toBe('0.00000001');
    expect(formatBtc(null)).toBe('—');
  });
});
