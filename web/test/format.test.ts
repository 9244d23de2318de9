import { describe, expect, it } from 'vitest';
import { formatAitbc, formatDuration, formatPercent, parseAitbc, shortHash, timeAgo } from '../src/lib/format';
import { computeDefaultMaxPrice, computeEscrowAmount, computeMaxUnits, computeProtocolFee } from '../src/lib/pricing';
import { metricSum, parsePrometheus } from '../src/lib/prom';

describe('amounts', () => {
  it('formats base units exactly', () => {
    expect(formatAitbc(12_500_000)).toBe('12.5');
    expect(formatAitbc(1)).toBe('0.000001');
    expect(formatAitbc(0)).toBe('0');
    expect(formatAitbc(1_234_567_000_000n)).toBe('1,234,567');
    expect(formatAitbc('18446744073709551615')).toBe('18,446,744,073,709.551615');
    expect(formatAitbc(-2_000_001)).toBe('-2.000001');
  });

  it('parses what it formats and nothing else', () => {
    expect(parseAitbc('12.5')).toBe(12_500_000n);
    expect(parseAitbc('1,234.000001')).toBe(1_234_000_001n);
    expect(parseAitbc('7')).toBe(7_000_000n);
    for (const bad of ['', '-1', '1.0000001', 'abc', '1e6', '0x10']) expect(() => parseAitbc(bad)).toThrow();
    for (const n of [0n, 1n, 999_999n, 123_456_789_012n]) expect(parseAitbc(formatAitbc(n))).toBe(n);
  });
});

describe('text', () => {
  it('shortens hashes and keeps short ones', () => {
    expect(shortHash('d44ea1f8a403054f5ec96937b82d2f0aeafdb3348bcda9463d050b4861e85b6f')).toBe('d44ea1f8…5b6f');
    expect(shortHash('abc')).toBe('abc');
    expect(shortHash(null)).toBe('—');
  });

  it('formats durations and ages', () => {
    expect(formatDuration(250)).toBe('250 ms');
    expect(formatDuration(1500)).toBe('1.50 s');
    expect(formatDuration(125_000)).toBe('2 min 5 s');
    expect(formatDuration(null)).toBe('—');
    expect(timeAgo(1_000, 6_000)).toBe('5 s ago');
    expect(timeAgo(0, 7_200_000)).toBe('2 h ago');
    expect(formatPercent(0.9312, 1)).toBe('93.1 %');
  });
});

describe('pricing (as aitbc.client.payment)', () => {
  it('bounds billable units and the escrow', () => {
    expect(computeMaxUnits({ type: 'inference', inputChars: 10, maxTokens: 48 })).toBe(10 + 64 + 48);
    expect(computeMaxUnits({ type: 'embedding', inputChars: 10, maxTokens: 48 })).toBe(74);
    expect(computeDefaultMaxPrice({ type: 'inference', inputChars: 0, maxTokens: 36 }, [100, 120])).toBe(120 * 100);
    expect(() => computeDefaultMaxPrice({ type: 'inference', inputChars: 0, maxTokens: 1 }, [])).toThrow(/no live miner/);
    expect(computeProtocolFee(12_000, 200)).toBe(240);
    expect(computeProtocolFee(49, 200)).toBe(0);
    expect(computeEscrowAmount(12_000, 200)).toBe(12_240);
  });
});

describe('prometheus text', () => {
  const text = [
    '# HELP aitbc_jobs_finished_total Jobs that reached a final state',
    '# TYPE aitbc_jobs_finished_total counter',
    'aitbc_jobs_finished_total{state="completed"} 12.0',
    'aitbc_jobs_finished_total{state="failed"} 3.0',
    'aitbc_miners_online 2.0',
    'aitbc_label_escape{reason="a \\"quoted\\" one"} 1',
  ].join('\n');

  it('reads samples with labels', () => {
    const samples = parsePrometheus(text);
    expect(metricSum(samples, 'aitbc_jobs_finished_total')).toBe(15);
    expect(metricSum(samples, 'aitbc_jobs_finished_total', { state: 'completed' })).toBe(12);
    expect(metricSum(samples, 'aitbc_miners_online')).toBe(2);
    expect(samples.find((s) => s.name === 'aitbc_label_escape')?.labels.reason).toBe('a "quoted" one');
    expect(metricSum(samples, 'missing')).toBe(0);
  });
});
