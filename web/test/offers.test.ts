import { describe, expect, it } from 'vitest';
import fixture from '../fixtures/devnet.json';
import type { LeaderboardEntry, PoolMiner } from '../src/api/types';
import { auditText, offersOf, sortOffers } from '../src/lib/offers';

// the pool hub's real answers recorded from a devnet (fixtures/devnet.json)
const miners = fixture.poolhub!.miners.miners as unknown as PoolMiner[];
const board = fixture.poolhub!.leaderboard.leaderboard as unknown as LeaderboardEntry[];

describe('marketplace offers', () => {
  it('makes one offer per miner and model, with the score of that pair', () => {
    const offers = offersOf(miners, board);
    expect(offers).toHaveLength(miners.reduce((n, m) => n + m.models.length, 0));
    for (const o of offers) {
      const entry = board.find((b) => b.miner === o.miner && b.model === o.model);
      expect(o.score).toBe(entry ? entry.score : null);
    }
    expect(offers.every((o) => o.hardware.length > 0)).toBe(true);
  });

  it('sorts best first, unknown values last', () => {
    const base = offersOf(miners, board)[0]!;
    const a = { ...base, model: 'a', price: 300, score: 0.2, tps: null, reliability: 0.9 };
    const b = { ...base, model: 'b', price: 100, score: null, tps: 50, reliability: 0.5 };
    const c = { ...base, model: 'c', price: 200, score: 0.8, tps: 20, reliability: 0.7 };
    const order = (key: Parameters<typeof sortOffers>[1]) => sortOffers([a, b, c], key).map((o) => o.model).join('');
    expect(order('price')).toBe('bca');
    expect(order('score')).toBe('cab');
    expect(order('tps')).toBe('bca');
    expect(order('reliability')).toBe('acb');
  });

  it('words the audit record', () => {
    expect(auditText(null)).toBe('—');
    expect(auditText({ bond: 5, eligible: true, audited: 0, passed: 0, failed: 0 })).toBe('none yet');
    expect(auditText({ bond: 5, eligible: true, audited: 4, passed: 3, failed: 1 })).toBe('3 of 4 (1 slashed)');
  });
});
