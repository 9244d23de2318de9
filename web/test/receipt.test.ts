import { describe, expect, it } from 'vitest';
import fixture from '../fixtures/devnet.json';
import type { Receipt } from '../src/api/types';
import { checkReceipt, computeReceiptHash } from '../src/lib/receipt';

// A receipt signed by a real miner and coordinator on a devnet (fixtures/devnet.json).
const recorded = fixture.coordinator.receipt as { receipt_hash: string; receipt: Receipt };
// the job was paid from a deposit (a settle_batch entry) or by its own escrow: the chain anchors the hash either way
const chainHash = (fixture.node.paid_job?.receipt_hash ?? (fixture.node.job as { escrow: { receipt_hash: string } } | null)?.escrow.receipt_hash)!;

describe('receipt verification in the browser', () => {
  it('reproduces the receipt hash the coordinator and the chain hold', () => {
    expect(computeReceiptHash(recorded.receipt)).toBe(recorded.receipt_hash);
    expect(chainHash).toBe(recorded.receipt_hash);
  });

  it('passes every check of the real receipt', () => {
    const checks = checkReceipt(recorded.receipt, { receiptHash: recorded.receipt_hash, chainReceiptHash: chainHash, jobId: fixture.job_id });
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks.map((c) => c.name)).toContain('miner signature');
  });

  it('fails the signatures and the hash when the receipt is altered', () => {
    const forged = { ...recorded.receipt, total_price: recorded.receipt.total_price + 1 };
    const failed = checkReceipt(forged, { receiptHash: recorded.receipt_hash, chainReceiptHash: chainHash })
      .filter((c) => !c.ok)
      .map((c) => c.name);
    expect(failed).toEqual(['miner signature', 'coordinator countersignature', 'price', 'receipt hash', 'anchored on chain']);
  });

  it('fails on a swapped coordinator signature only', () => {
    const swapped = { ...recorded.receipt, coordinator_signature: recorded.receipt.miner_signature };
    const failed = checkReceipt(swapped, {}).filter((c) => !c.ok).map((c) => c.name);
    expect(failed).toEqual(['coordinator countersignature']);
  });

  it('does not throw on malformed fields', () => {
    const broken = { ...recorded.receipt, miner: 'ait1nope', input_hash: 'zz' };
    expect(checkReceipt(broken, { receiptHash: 'x' }).every((c) => c.name === 'price' || !c.ok)).toBe(true);
  });
});
