/**
 * Checking a job receipt in the browser, as aitbc.protocol.receipt: the miner's signature
 * (kind `receipt`, over the receipt without both signatures), the coordinator's countersignature
 * (kind `receipt-cosign`, without its own), the price arithmetic, and the receipt hash that the
 * chain anchors (sha256 of the fully signed receipt's canonical bytes). Pure.
 */
import type { Receipt } from '../api/types';
import { decodeAddress } from './address';
import { hexToBytes } from './bytes';
import { ENCODING_VERSION, Writer } from './codec';
import { sha256Hex, verify } from './signer';

type Omit = 'both' | 'coordinator' | 'none';

export function receiptBytes(r: Receipt, omit: Omit): Uint8Array {
  const w = new Writer().u8(ENCODING_VERSION).str('Receipt');
  w.str(r.chain_id).str(r.job_id).address(r.miner).str(r.client).address(r.coordinator);
  w.str(r.model).str(r.model_digest).raw(hexToBytes(r.input_hash)).raw(hexToBytes(r.output_hash));
  w.u64(r.units.prompt_tokens).u64(r.units.completion_tokens).u64(r.units.compute_ms);
  w.u64(r.unit_price).u64(r.total_price).u64(r.started_at_ms).u64(r.finished_at_ms);
  if (omit !== 'both') w.hex(r.miner_signature);
  if (omit === 'none') w.hex(r.coordinator_signature);
  return w.bytes();
}

export function computeReceiptHash(r: Receipt): string {
  return sha256Hex(receiptBytes(r, 'none'));
}

export interface ReceiptCheck {
  name: string;
  ok: boolean;
  detail: string;
}

/** Every check, each pass or fail (none throws): what the Verification panel shows. */
export function checkReceipt(r: Receipt, expected: { receiptHash?: string; chainReceiptHash?: string; jobId?: string }): ReceiptCheck[] {
  const checks: ReceiptCheck[] = [];
  const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
  let minerOk = false;
  let coordOk = false;
  try {
    minerOk = verify(decodeAddress(r.miner), r.chain_id, 'receipt', receiptBytes(r, 'both'), hexToBytes(r.miner_signature));
    coordOk = verify(
      decodeAddress(r.coordinator),
      r.chain_id,
      'receipt-cosign',
      receiptBytes(r, 'coordinator'),
      hexToBytes(r.coordinator_signature),
    );
  } catch {
    /* a malformed field fails both checks below */
  }
  add('miner signature', minerOk, `Ed25519 by ${r.miner}`);
  add('coordinator countersignature', coordOk, `Ed25519 by ${r.coordinator}`);
  const total = (r.units.prompt_tokens + r.units.completion_tokens) * r.unit_price;
  add('price', total === r.total_price, `(${r.units.prompt_tokens} + ${r.units.completion_tokens} tokens) × ${r.unit_price} = ${total}`);
  if (expected.jobId) add('job', r.job_id === expected.jobId, r.job_id);
  let hash = '';
  try {
    hash = computeReceiptHash(r);
  } catch {
    /* reported below */
  }
  if (expected.receiptHash !== undefined) add('receipt hash', hash === expected.receiptHash, hash || 'not computable');
  if (expected.chainReceiptHash !== undefined) {
    add('anchored on chain', hash !== '' && hash === expected.chainReceiptHash, expected.chainReceiptHash || 'not settled yet');
  }
  return checks;
}
